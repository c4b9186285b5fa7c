"""Target groups during a cut-over (issue 20): the instance's right to join its fleet's target groups, and the
sandbox's model of target health (sandbox/rules/target_health.py), table-driven from the ALB user guide's rules."""

import json

import pytest

from sandbox.iam.project_policies import rendered_policies
from sandbox.rules import target_health as th
from sandbox.iam.requests import AuthorizationRequest, Resource, decide


# ---- IAM: the instance joins (and leaves) only its fleet's target groups ------------------------------------------
@pytest.fixture(scope="module")
def web_policy():
    """The fleet scenario's ``web`` fleet, the one with a target group, as roles/fleet renders its instance policy."""
    return rendered_policies()["instance/molecule-web"]


def target_group_call(entry, action, name, group_id):
    facts = entry["facts"]
    resource = Resource.of(
        "elasticloadbalancing", "targetgroup", facts["partition"], facts["region"], facts["account"], name, group_id
    )
    return AuthorizationRequest(action, (resource,))


def test_the_instance_may_register_in_its_fleets_target_group_and_no_other(web_policy):
    (join,) = [s for s in web_policy["document"]["Statement"] if s["Sid"] == "JoinTheFleetsTargetGroups"]
    assert join["Action"] == "elasticloadbalancing:RegisterTargets"
    (arn,) = join["Resource"]
    name, group_id = arn.rsplit(":", 1)[1].split("/")[1:]
    mine = target_group_call(web_policy, "elasticloadbalancing:RegisterTargets", name, group_id)
    assert decide([web_policy["document"]], mine).allowed
    other = target_group_call(web_policy, "elasticloadbalancing:RegisterTargets", "other", group_id)
    assert not decide([web_policy["document"]], other).allowed
    leave = target_group_call(web_policy, "elasticloadbalancing:DeregisterTargets", name, group_id)
    assert decide([web_policy["document"]], leave).allowed


def test_a_fleet_without_target_groups_may_register_nowhere():
    entry = rendered_policies()["instance/molecule-pg"]
    sids = {s["Sid"] for s in entry["document"]["Statement"]}
    assert not {"JoinTheFleetsTargetGroups", "LeaveTheFleetsTargetGroups"} & sids
    call = target_group_call(entry, "elasticloadbalancing:RegisterTargets", "molecule-web", "0123456789abcdef")
    assert not decide([entry["document"]], call).allowed


# ---- the model's rules, on plain modeled seconds ------------------------------------------------------------------
DEFAULT = th.Settings()  # interval 30 s, healthy 5, unhealthy 2, deregistration delay 300 s
FAST = th.Settings(interval=10, healthy_threshold=3, unhealthy_threshold=3, deregistration_delay=20)
L = th.REGISTRATION_LATENCY  # the first check comes 10 s after the registration


@pytest.mark.parametrize(
    "why, settings, serving, moment, deregistered_at, expected",
    [
        ("before the first check", DEFAULT, [(0, None)], L - 1, None, ("initial", "Elb.RegistrationInProgress")),
        ("one passing check is enough after a registration", DEFAULT, [(0, None)], L, None, ("healthy", None)),
        ("one failure is below the unhealthy threshold", DEFAULT, [], L, None, ("initial", "Elb.InitialHealthChecking")),
        ("then one pass makes it healthy", DEFAULT, [(L + 1, None)], L + 30, None, ("healthy", None)),
        ("two failures: unhealthy", DEFAULT, [], L + 30, None, ("unhealthy", "Target.FailedHealthChecks")),
        ("unhealthy needs five passes: four are not enough", DEFAULT, [(L + 31, None)], L + 5 * 30, None,
         ("unhealthy", "Target.FailedHealthChecks")),
        ("the fifth pass", DEFAULT, [(L + 31, None)], L + 6 * 30, None, ("healthy", None)),
        ("a pass resets the failures", DEFAULT, [(L + 1, L + 31)], L + 60, None, ("healthy", None)),
        ("healthy, then two failures", DEFAULT, [(0, L + 1)], L + 60, None, ("unhealthy", "Target.FailedHealthChecks")),
        ("thresholds and interval come from the group", FAST, [], L + 10, None, ("initial", "Elb.InitialHealthChecking")),
        ("the group's third failure", FAST, [], L + 20, None, ("unhealthy", "Target.FailedHealthChecks")),
        ("the group's three passes", FAST, [(L + 21, None)], L + 50, None, ("healthy", None)),
        ("deregistered: draining for the delay", FAST, [(0, None)], 25, 10, ("draining", "Target.DeregistrationInProgress")),
        ("then unused", FAST, [(0, None)], 30, 10, ("unused", "Target.NotRegistered")),
    ],
)  # fmt: skip
def test_target_states(why, settings, serving, moment, deregistered_at, expected):
    assert th.state_at(moment, 0.0, settings, serving, L, deregistered_at) == expected, why


@pytest.mark.parametrize(
    "states, expected",
    [
        ({"a": "healthy", "b": "unhealthy"}, {"a"}),
        ({"a": "unhealthy", "b": "unhealthy"}, {"a", "b"}),  # fails open
        ({"a": "unhealthy", "b": "draining"}, {"a"}),  # a draining target is not registered
        ({"a": "unhealthy", "b": "initial"}, set()),  # not "only unhealthy targets"
        ({"a": "initial"}, set()),
        ({}, set()),
    ],
)
def test_routing_sends_to_healthy_targets_and_fails_open(states, expected):
    assert th.routed(states) == expected


@pytest.mark.parametrize(
    "why, registered_at, app_started, alone, expected",
    [
        ("registered once the app started: its first check", 100.0, 100.0, True, 100.0 + L),
        ("registered before, the app up before the first check", 0.0, 5.0, True, L),
        ("the app up between the first and second checks: the second", 0.0, 20.0, True, L + 30),
        ("the app up after two failures: the group fails open at once", 0.0, 45.0, True, 45.0),
        ("with another healthy target, five passes", 0.0, 45.0, False, L + 60 + 4 * 30),
    ],
)
def test_when_requests_reach_the_application(why, registered_at, app_started, alone, expected):
    assert th.served_from(registered_at, DEFAULT, app_started, L, alone=alone) == expected, why


# ---- the sandbox answers DescribeTargetHealth with the model --------------------------------------------------------
@pytest.fixture
def elb(aws):
    return aws("elbv2")


def test_a_registered_instance_is_checked_over_modeled_time(elb, ec2, events, seeded, launch, box):
    instance_id = launch()
    arn = elb.create_target_group(
        Name="health-model", Protocol="HTTP", Port=80, VpcId=seeded["vpc_id"], HealthCheckIntervalSeconds=10,
        HealthyThresholdCount=3, UnhealthyThresholdCount=2,
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    elb.modify_target_group_attributes(
        TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "20"}]
    )

    def health():
        (found,) = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        return found["TargetHealth"]["State"], found["TargetHealth"].get("Reason")

    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
    assert health() == ("initial", "Elb.RegistrationInProgress")
    box.advance(L)
    assert health() == ("initial", "Elb.InitialHealthChecking")  # nothing serves yet: one failure
    box.advance(10)
    assert health() == ("unhealthy", "Target.FailedHealthChecks")
    box.advance(1)
    box.call("elbv2/serving", instance_id=instance_id, serving=True)
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])  # registered again: changes nothing
    box.advance(20)
    assert health()[0] == "unhealthy"  # two passes of three
    box.advance(10)
    assert health() == ("healthy", None)

    elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
    elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])  # AWS: a no-op, not InvalidTarget
    (draining,) = elb.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": instance_id}])[
        "TargetHealthDescriptions"
    ]
    assert draining["TargetHealth"]["State"] == "draining"
    box.advance(20)
    (gone,) = elb.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": instance_id}])["TargetHealthDescriptions"]
    assert gone["TargetHealth"]["State"] == "unused"


def test_the_agents_boot_report_is_when_its_application_serves(elb, events, seeded, launch, box):
    instance_id = launch()
    arn = elb.create_target_group(Name="health-report", Protocol="HTTP", Port=80, VpcId=seeded["vpc_id"])[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])
    started = box.clock()["now"].replace("+00:00", "Z")
    detail = {"instance-id": instance_id, "lineage": "l", "service": "s", "phases": {"app_started": started}}
    events.put_events(
        Entries=[{"Source": "ec2spot.autorecover", "DetailType": th.BOOT_REPORT, "Detail": json.dumps(detail)}]
    )
    box.advance(L)
    (found,) = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    assert found["TargetHealth"]["State"] == "healthy"  # its first check passed
