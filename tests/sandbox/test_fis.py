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


def template(fis, lineage, duration="PT2M", selection="COUNT(1)"):
    return fis.create_experiment_template(
        clientToken=str(uuid.uuid4()),
        description=f"interrupt {lineage}",
        roleArn="arn:aws:iam::123456789012:role/fis",
        stopConditions=[{"source": "none"}],
        targets={
            "SpotInstances": {
                "resourceType": "aws:ec2:spot-instance",
                "resourceTags": {"ec2spot:lineage": lineage},
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
