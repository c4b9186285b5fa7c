"""The handler acts only on what AWS's events mean: the envelope, strict parsing, one table of cases.

Each case names the rule it pins. ``parse`` is given the function's own account and region, as the
Lambda entry point takes them from its context.
"""

import json

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import events

ACCOUNT, REGION = "123456789012", "us-east-1"
INSTANCE = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"
TOKEN = "c613620e-07e2-4ed2-a9e2-ef8258911ade"


def body(source="aws.ec2", detail_type="EC2 Spot Instance Interruption Warning", detail=None, **envelope):
    document = {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2026-12-07T01:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:ec2:us-east-1b:{ACCOUNT}:instance/{INSTANCE}"],
        "detail": {"instance-id": INSTANCE, "instance-action": "terminate"} if detail is None else detail,
    }
    for key, value in envelope.items():
        key = key.replace("_", "-")
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return json.dumps(document)


def lifecycle(transition="terminate", **detail):
    name = (
        "EC2 Instance-terminate Lifecycle Action"
        if transition == "terminate"
        else "EC2 Instance-launch Lifecycle Action"
    )
    fields = {
        "LifecycleActionToken": TOKEN,
        "AutoScalingGroupName": "pg-fleet",
        "LifecycleHookName": transition,
        "EC2InstanceId": INSTANCE,
        "LifecycleTransition": f"autoscaling:EC2_INSTANCE_{transition.upper()}ING",
    }
    fields.update(detail)
    return body(
        "aws.autoscaling",
        name,
        fields,
        resources=[
            f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:59fe4fd4-1f4e-4e9f-b9e5-2a4a3a1f5f9b:"
            f"autoScalingGroupName/pg-fleet"
        ],
    )


ACCEPTED = [
    ("a Spot warning as AWS sends it", body(), events.SPOT_WARNING),
    ("resources may be absent", body(resources=None), events.SPOT_WARNING),
    ("resources may be empty (the agent's boot report)", body(resources=[]), events.SPOT_WARNING),
    (
        "stop and hibernate are interruption behaviours",
        body(detail={"instance-id": INSTANCE, "instance-action": "stop"}),
        events.SPOT_WARNING,
    ),
    (
        "the agent's readiness (no resources, its own source)",
        body(
            "ec2spot.autorecover",
            "EC2Spot Replacement Ready",
            {"instance-id": INSTANCE, "lineage": "pgdata", "waiting-since": "2026-11-24T10:00:00Z"},
            resources=[],
        ),
        events.REPLACEMENT_READY,
    ),
    ("a terminate lifecycle action names its group", lifecycle(), events.TERMINATE_ACTION),
    ("a warm-pool destination", lifecycle(Destination="WarmPool", Origin="AutoScalingGroup"), events.TERMINATE_ACTION),
    (
        "a launch from the warm pool",
        lifecycle("launch", Origin="WarmPool", Destination="AutoScalingGroup"),
        events.LAUNCH_ACTION,
    ),
]

REFUSED = [
    ("another account", body(account="210987654321"), "account 210987654321 is not this function's"),
    ("another region", body(region="eu-west-1"), "region eu-west-1 is not this function's"),
    ("no account", body(account=None), "account"),
    ("an unknown envelope version", body(version="1"), "version"),
    (
        "resources naming another instance",
        body(resources=[f"arn:aws:ec2:us-east-1b:{ACCOUNT}:instance/{OTHER}"]),
        f"name instance {OTHER}",
    ),
    (
        "resources naming the instance in another account",
        body(resources=[f"arn:aws:ec2:us-east-1b:210987654321:instance/{INSTANCE}"]),
        "account",
    ),
    ("resources that are not a list", body(resources="arn"), "resources"),
    (
        "a lifecycle action whose resources name another group",
        body(
            "aws.autoscaling",
            "EC2 Instance-terminate Lifecycle Action",
            {
                "LifecycleActionToken": TOKEN,
                "AutoScalingGroupName": "pg-fleet",
                "LifecycleHookName": "terminate",
                "EC2InstanceId": INSTANCE,
            },
            resources=[f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:x:autoScalingGroupName/billing"],
        ),
        "name group billing",
    ),
    (
        "an id with a trailing newline",
        body(detail={"instance-id": INSTANCE + "\n", "instance-action": "terminate"}),
        "instance-id",
    ),
    ("a token with a trailing newline", lifecycle(LifecycleActionToken=TOKEN + "\n"), "LifecycleActionToken"),
    (
        "duplicate keys",
        body().replace('"source": "aws.ec2"', '"source": "ec2spot.autorecover", "source": "aws.ec2"'),
        "duplicate key",
    ),
    (
        "duplicate keys inside detail",
        body(detail={"instance-id": INSTANCE, "instance-action": "terminate"}).replace(
            '"instance-action": "terminate"', '"instance-action": "stop", "instance-action": "terminate"'
        ),
        "duplicate key",
    ),
    ("NaN is not JSON", body().replace('"version": "0"', '"version": NaN'), "not JSON"),
    ("a body that is not UTF-8", b'{"version": "0", "source": "\xff\xfe"}', "UTF-8"),
    ("a body with a lone surrogate", '{"version": "0", "source": "\ud800"}', "UTF-8"),
    (
        "an unknown instance-action",
        body(detail={"instance-id": INSTANCE, "instance-action": "reboot"}),
        "instance-action",
    ),
    ("an unknown warm-pool destination", lifecycle(Destination="Elsewhere"), "Destination"),
]


@pytest.mark.parametrize("rule, message, kind", ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_accepted(rule, message, kind):
    assert events.parse(message, account=ACCOUNT, region=REGION).kind == kind


@pytest.mark.parametrize("rule, message, reason", REFUSED, ids=[case[0] for case in REFUSED])
def test_refused_with_the_reason(rule, message, reason):
    with pytest.raises(events.InvalidEvent, match=reason):
        events.parse(message, account=ACCOUNT, region=REGION)


def test_the_envelope_is_checked_only_against_a_known_identity():
    """The function's own account and region are required: an event is never trusted by default."""
    with pytest.raises(TypeError):
        events.parse(body())  # pylint: disable=missing-kwoa


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("pg\x1b[31m\nERROR fake line", "pg\\x1b[31m\\nERROR fake line"),
        ("tab\there\r", "tab\\there\\r"),
        ("caf\u00e9 \u2028", "caf\u00e9 \\u2028"),
    ],
)
def test_log_text_never_carries_control_characters(raw, shown):
    assert events.printable(raw) == shown


def health(code="AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED", entities=(INSTANCE,), **detail):
    fields = {
        "eventArn": f"arn:aws:health:{REGION}::event/EC2/{code}/{code}_1",
        "service": "EC2",
        "eventTypeCode": code,
        "eventTypeCategory": "scheduledChange",
        "startTime": "Mon, 21 Dec 2026 09:00:00 GMT",
        "statusCode": "upcoming",
        "affectedAccount": ACCOUNT,
        "affectedEntities": [{"entityValue": entity} for entity in entities],
    }
    fields.update(detail)
    return body("aws.health", "AWS Health Event", fields, resources=list(entities))


@pytest.mark.parametrize(
    "message, code, entities",
    [
        (health(), "instance-retirement", (INSTANCE,)),
        (health("AWS_EC2_INSTANCE_STOP_SCHEDULED"), "instance-stop", (INSTANCE,)),
        (
            health("AWS_EBS_VOLUME_LOST", ("vol-0123456789abcdef0",), service="EBS"),
            "volume-lost",
            ("vol-0123456789abcdef0",),
        ),
        (health("AWS_EC2_OPERATIONAL_NOTIFICATION"), None, (INSTANCE,)),  # parsed, not acted on
        (health(entities=(INSTANCE, "not-an-id", OTHER)), "instance-retirement", (INSTANCE, OTHER)),
    ],
)
def test_health_events_name_their_planned_interruption(message, code, entities):
    event = events.parse(message, account=ACCOUNT, region=REGION)
    assert (event.kind, event.code, event.entities) == (events.HEALTH, code, entities)
    if code and code != "volume-lost":
        assert event.start.isoformat() == "2026-12-21T09:00:00+00:00"


@pytest.mark.parametrize(
    "message, reason",
    [
        (health(affectedAccount="210987654321"), "affectedAccount"),
        (health(startTime="soon"), "startTime"),
        (health(eventTypeCode="aws_ec2\n"), "eventTypeCode"),
        (
            body(
                "ec2spot.autorecover",
                "EC2Spot Scheduled Maintenance",
                {"instance-id": INSTANCE, "code": "instance-melt", "not-before": "2026-12-21T09:00:00Z"},
            ),
            "scheduled event code",
        ),
    ],
)
def test_planned_events_that_do_not_hold_together_are_refused(message, reason):
    with pytest.raises(events.InvalidEvent, match=reason):
        events.parse(message, account=ACCOUNT, region=REGION)
