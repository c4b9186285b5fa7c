"""AWS FIS send-spot-instance-interruptions (sandbox/rules/fis.py): an experiment interrupts its Spot targets."""

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT

from .conftest import unique

SPOT = {
    "MarketType": "spot",
    "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
}


def tagged(launch, lineage, spot=True, zone="us-east-1a"):
    extra = {"InstanceMarketOptions": SPOT} if spot else {}
    return launch(
        zone,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "ec2spot:lineage", "Value": lineage}]}],
        **extra,
    )


def template(fis, lineage, duration="PT2M", selection="COUNT(1)", role="arn:aws:iam::123456789012:role/fis", arns=None):
    """A drill's template: the Spot instances of ``lineage`` (or exactly ``arns``), interrupted as ``role``."""
    chosen = {"resourceArns": arns} if arns else {"resourceTags": {"ec2spot:lineage": lineage}}
    return fis.create_experiment_template(
        clientToken=str(uuid.uuid4()),
        description=f"interrupt {lineage}",
        roleArn=role,
        stopConditions=[{"source": "none"}],
        targets={
            "SpotInstances": {
                "resourceType": "aws:ec2:spot-instance",
                **chosen,
                "filters": [{"path": "State.Name", "values": ["running"]}],
                "selectionMode": selection,
            }
        },
        actions={
            "interrupt": {
                "actionId": "aws:ec2:send-spot-instance-interruptions",
                "parameters": {"durationBeforeInterruption": duration},
                "targets": {"SpotInstances": "SpotInstances"},
            }
        },
    )["experimentTemplate"]["id"]


def state(ec2, instance_id):
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_an_experiment_interrupts_the_spot_instances_its_tags_select(aws, ec2, launch, box):
    fis = aws("fis")
    lineage = unique("fis")
    spot = tagged(launch, lineage)
    on_demand = tagged(launch, lineage, spot=False)
    other = tagged(launch, "someone-else")
    experiment = fis.start_experiment(clientToken=str(uuid.uuid4()), experimentTemplateId=template(fis, lineage))[
        "experiment"
    ]

    resolved = fis.list_experiment_resolved_targets(experimentId=experiment["id"])["resolvedTargets"]
    assert [r["targetInformation"]["arn"].rsplit("/", 1)[1] for r in resolved] == [spot]
    warnings = box.events("EC2 Spot Instance Interruption Warning")
    assert [w["detail"]["instance-id"] for w in warnings] == [spot]
    notice = json.loads(CONTEXT.imds[spot]["spot/instance-action"])
    assert notice["action"] == "terminate"
    box.advance(119)
    assert state(ec2, spot) == "running"
    box.advance(1)
    assert state(ec2, spot) == "terminated"
    assert state(ec2, on_demand) == "running" and state(ec2, other) == "running"


def test_a_longer_duration_sends_the_rebalance_recommendation_first(aws, ec2, launch, box):
    fis = aws("fis")
    lineage = unique("fis")
    spot = tagged(launch, lineage)
    fis.start_experiment(clientToken=str(uuid.uuid4()), experimentTemplateId=template(fis, lineage, duration="PT5M"))
    assert [e["detail"]["instance-id"] for e in box.events("EC2 Instance Rebalance Recommendation")] == [spot]
    assert box.events("EC2 Spot Instance Interruption Warning") == []
    box.advance(180)
    assert [e["detail"]["instance-id"] for e in box.events("EC2 Spot Instance Interruption Warning")] == [spot]
    box.advance(120)
    assert state(ec2, spot) == "terminated"


def test_nothing_to_interrupt_fails_the_experiment(aws, box):
    fis = aws("fis")
    experiment = fis.start_experiment(
        clientToken=str(uuid.uuid4()), experimentTemplateId=template(fis, unique("none"))
    )["experiment"]
    assert fis.get_experiment(id=experiment["id"])["experiment"]["state"]["status"] == "failed"
    assert box.events("EC2 Spot Instance Interruption Warning") == []


@pytest.mark.parametrize("duration", ["PT1M", "PT16M", "two minutes"])
def test_a_duration_outside_two_to_fifteen_minutes_is_refused(aws, duration):
    with pytest.raises(ClientError, match="durationBeforeInterruption") as refused:
        template(aws("fis"), "any", duration=duration)
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_describe_instances_filters_by_instance_lifecycle(ec2, launch):
    lineage = unique("fis")
    spot, on_demand = tagged(launch, lineage), tagged(launch, lineage, spot=False)
    found = ec2.describe_instances(
        Filters=[
            {"Name": "tag:ec2spot:lineage", "Values": [lineage]},
            {"Name": "instance-lifecycle", "Values": ["spot"]},
        ]
    )["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [spot] and on_demand != spot


# ---- FIS acts as the template's role (IAM enforced) -----------------------------------------------------------------
FIS_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "fis.amazonaws.com"}, "Action": "sts:AssumeRole"}]}  # fmt: skip


@pytest.fixture(scope="module")
def drill_role(aws):
    """The drill's FIS role as deploy.yml makes it: playbooks/templates/fis-policy.json.j2 rendered for the example's
    service in the sandbox's region (interrupt only the instances of its lineage); ``(arn, lineage)``."""
    from sandbox.iam.project_policies import rendered_policies

    rendered = rendered_policies()["fis/sandbox"]
    name = unique("pg-fis")
    iam = aws("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(FIS_TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="spot-interruptions", PolicyDocument=json.dumps(rendered["document"]))
    return arn, rendered["facts"]["lineage"]


def instance_arn(instance_id):
    return f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"


def test_the_experiment_role_interrupts_its_own_lineage(aws, ec2, launch, drill_role, enforcing):
    role, lineage = drill_role
    fis = aws("fis")
    spot = tagged(launch, lineage)
    chosen = template(fis, lineage, role=role, arns=[instance_arn(spot)])
    experiment = fis.start_experiment(clientToken=str(uuid.uuid4()), experimentTemplateId=chosen)["experiment"]
    assert fis.get_experiment(id=experiment["id"])["experiment"]["state"]["status"] != "failed"
    assert [w["detail"]["instance-id"] for w in enforcing.events("EC2 Spot Instance Interruption Warning")] == [spot]
    assert CONTEXT.records["fis_experiments"][-1]["refused"] is None
    enforcing.advance(120)
    assert state(ec2, spot) == "terminated"


def test_the_experiment_role_cannot_interrupt_another_lineage(aws, ec2, launch, drill_role, enforcing):
    role, _lineage = drill_role
    fis = aws("fis")
    other = unique("other")
    theirs = tagged(launch, other)
    experiment = fis.start_experiment(
        clientToken=str(uuid.uuid4()), experimentTemplateId=template(fis, other, role=role)
    )["experiment"]
    described = fis.get_experiment(id=experiment["id"])["experiment"]
    assert described["state"]["status"] == "failed"
    session = f"arn:aws:sts::123456789012:assumed-role/{role.rsplit('/', 1)[1]}/{experiment['id']}"
    assert described["state"]["reason"] == (
        f"You are not authorized to perform this operation. User: {session} is not authorized to perform: "
        f"ec2:SendSpotInstanceInterruptions on resource: {instance_arn(theirs)} because no identity-based policy "
        "allows the ec2:SendSpotInstanceInterruptions action"
    )
    assert enforcing.events("EC2 Spot Instance Interruption Warning") == []
    assert "spot/instance-action" not in CONTEXT.imds.get(theirs, {})
    enforcing.advance(300)
    assert state(ec2, theirs) == "running"


def test_a_role_that_may_not_describe_instances_fails_the_experiment(aws, launch, enforcing):
    iam, name = aws("iam"), unique("blind-fis")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(FIS_TRUST))["Role"]["Arn"]
    lineage = unique("fis")
    tagged(launch, lineage)
    fis = aws("fis")
    experiment = fis.start_experiment(
        clientToken=str(uuid.uuid4()), experimentTemplateId=template(fis, lineage, role=role)
    )["experiment"]
    described = fis.get_experiment(id=experiment["id"])["experiment"]
    assert described["state"]["status"] == "failed"
    assert "is not authorized to perform: ec2:DescribeInstances on resource: *" in described["state"]["reason"]
    assert enforcing.events("EC2 Spot Instance Interruption Warning") == []


def test_without_enforcement_fis_acts_unrestricted(aws, launch, box):
    lineage = unique("fis")
    spot = tagged(launch, lineage)
    fis = aws("fis")
    fis.start_experiment(
        clientToken=str(uuid.uuid4()),
        experimentTemplateId=template(fis, lineage, role="arn:aws:iam::123456789012:role/none"),
    )
    assert [w["detail"]["instance-id"] for w in box.events("EC2 Spot Instance Interruption Warning")] == [spot]
