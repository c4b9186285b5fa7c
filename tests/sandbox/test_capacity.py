"""Launches refused for lack of capacity, and Auto Scaling's failed launches (sandbox/rules/capacity.py).

The capacity a test takes away is given back when it ends (the server is shared by the session).
"""

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.control import SandboxError
from sandbox.rules.capacity import RETRY_SECONDS, SPOT_MESSAGE

from .conftest import error_code

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
UNSUCCESSFUL = "EC2 Instance Launch Unsuccessful"


def shortage(zone, instance_type="t3.micro"):
    """EC2's message for a launch of ``instance_type`` into ``zone`` while only ``zone`` lacks it."""
    others = ", ".join(
        z for z in ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f") if z != zone
    )
    return (
        f"We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested ({zone}). "
        f"Our system will be working on provisioning additional capacity. You can currently get {instance_type} capacity by "
        f"not specifying an Availability Zone in your request or choosing {others}."
    )


@pytest.fixture
def no_capacity(box):
    """``no_capacity(zone, instance_type=None)`` takes capacity away; all of it comes back after the test."""
    yield lambda zone, instance_type=None: box.call(
        "ec2/capacity", zone=zone, instance_type=instance_type, available=False
    )
    box.call("ec2/capacity", reset=True)


@pytest.fixture(scope="module")
def strict_ec2(endpoint, session):
    """An EC2 client that does not retry: InsufficientInstanceCapacity is a 500, which botocore would retry."""
    return session.client("ec2", endpoint_url=endpoint, config=Config(retries={"total_max_attempts": 1}))


def zones_of_instances(autoscaling, name):
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return sorted(instance["AvailabilityZone"] for instance in described["Instances"])


def activities(autoscaling, name):
    """[(StatusCode, zone)] newest first."""
    found = autoscaling.describe_scaling_activities(AutoScalingGroupName=name)["Activities"]
    return [(activity["StatusCode"], json.loads(activity["Details"])["Availability Zone"]) for activity in found]


def failures(box, name):
    return [record for record in box.records("failed_launches") if record["group"] == name]


# ---- RunInstances ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "refused_type, launched_type, refused",
    [
        (None, "t3.micro", True),  # the whole zone
        ("t3.micro", "t3.micro", True),  # that type in the zone
        ("m5.large", "t3.micro", False),  # another type still launches
    ],
)
def test_run_instances_without_capacity_is_a_500_insufficient_instance_capacity(
    box, strict_ec2, seeded, no_capacity, refused_type, launched_type, refused
):
    """moto 5.2.5 launches anything anywhere; AWS answers InsufficientInstanceCapacity (a server error) with its message."""
    no_capacity("us-east-1a", refused_type)
    launch = dict(
        ImageId=seeded["image_id"],
        MinCount=1,
        MaxCount=1,
        InstanceType=launched_type,
        SubnetId=seeded["subnets"]["us-east-1a"],
    )
    if not refused:
        assert strict_ec2.run_instances(**launch)["Instances"][0]["Placement"]["AvailabilityZone"] == "us-east-1a"
        return
    with pytest.raises(ClientError) as refusal:
        strict_ec2.run_instances(**launch)
    assert error_code(refusal) == "InsufficientInstanceCapacity"
    assert refusal.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert refusal.value.response["Error"]["Message"] == shortage("us-east-1a")
    [record] = box.records("failed_launches")
    assert (record["group"], record["zone"], record["instance_type"], record["market"]) == (
        None,
        "us-east-1a",
        "t3.micro",
        "on-demand",
    )


def spot_launch(client, seeded, zone):
    """One Spot t3.micro into ``zone``: its id, or the ClientError of a refused launch."""
    return client.run_instances(
        ImageId=seeded["image_id"],
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        SubnetId=seeded["subnets"][zone],
        InstanceMarketOptions={"MarketType": "spot"},
    )["Instances"][0]["InstanceId"]


def test_a_spot_launch_without_capacity_has_the_spot_message(box, strict_ec2, seeded, no_capacity):
    no_capacity("us-east-1b")
    with pytest.raises(ClientError) as refusal:
        spot_launch(strict_ec2, seeded, "us-east-1b")
    assert (error_code(refusal), refusal.value.response["Error"]["Message"]) == (
        "InsufficientInstanceCapacity",
        SPOT_MESSAGE,
    )


def test_a_launch_naming_no_zone_goes_where_there_is_capacity(strict_ec2, seeded, no_capacity):
    """ "You can currently get ... capacity by not specifying an Availability Zone in your request"."""
    no_capacity("us-east-1a")
    launched = strict_ec2.run_instances(ImageId=seeded["image_id"], MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"
    ][0]
    assert launched["Placement"]["AvailabilityZone"] == "us-east-1b"


def test_the_control_lists_gives_back_and_refuses_nonsense(box, no_capacity):
    no_capacity("us-east-1a")
    no_capacity("us-east-1b", "m5.large")
    assert box.call("ec2/capacity")["without_capacity"] == [
        {"zone": "us-east-1a", "instance_type": None},
        {"zone": "us-east-1b", "instance_type": "m5.large"},
    ]
    assert box.call("ec2/capacity", zone="us-east-1b", available=True)["without_capacity"] == [
        {"zone": "us-east-1a", "instance_type": None}
    ]
    with pytest.raises(SandboxError):
        box.call("ec2/capacity", available=False)


# ---- Auto Scaling -------------------------------------------------------------------------------------------


def test_a_group_fails_in_its_first_zone_then_launches_in_the_next(autoscaling, box, group, no_capacity):
    """moto 5.2.5 launches regardless and lists no activity; AWS records a Failed activity, emits Launch Unsuccessful
    and (balanced-best-effort, the default) launches in another zone of the group."""
    no_capacity("us-east-1a")
    name = group(zones=ZONES)
    assert zones_of_instances(autoscaling, name) == ["us-east-1b"]
    assert activities(autoscaling, name) == [("Successful", "us-east-1b"), ("Failed", "us-east-1a")]
    failed = autoscaling.describe_scaling_activities(AutoScalingGroupName=name)["Activities"][1]
    assert failed["StatusMessage"] == shortage("us-east-1a") + " Launching EC2 instance failed."
    assert failed["Description"] == "Launching a new EC2 instance.  Status Reason: " + failed["StatusMessage"]
    assert failed["Cause"].endswith(
        "in response to a difference between desired and actual capacity, increasing the capacity from 0 to 1."
    )
    [event] = [e for e in box.events(UNSUCCESSFUL) if e["detail"]["AutoScalingGroupName"] == name]
    assert (event["source"], event["detail"]["StatusCode"], event["detail"]["ActivityId"]) == (
        "aws.autoscaling",
        "Failed",
        failed["ActivityId"],
    )
    [record] = failures(box, name)
    assert (record["zone"], record["code"], record["activity_id"]) == (
        "us-east-1a",
        "InsufficientInstanceCapacity",
        failed["ActivityId"],
    )


@pytest.mark.parametrize(
    "strategy, zones_tried, returning",
    [
        (
            "balanced-best-effort",
            ["us-east-1a", "us-east-1b"],
            "us-east-1b",
        ),  # every zone, then the first with capacity back
        ("balanced-only", ["us-east-1a"], "us-east-1a"),  # its own zone only, even with b back
    ],
)
def test_without_capacity_anywhere_the_group_retries_until_it_returns(
    autoscaling, box, group, no_capacity, strategy, zones_tried, returning
):
    """AWS keeps trying: every retry fails the same way until capacity returns, then the missing instance launches."""
    no_capacity("us-east-1a")
    no_capacity("us-east-1b")
    name = group(
        zones=("us-east-1a", "us-east-1b"), AvailabilityZoneDistribution={"CapacityDistributionStrategy": strategy}
    )
    assert zones_of_instances(autoscaling, name) == [] and [r["zone"] for r in failures(box, name)] == zones_tried
    box.advance(RETRY_SECONDS - 1)
    assert len(failures(box, name)) == len(zones_tried)
    box.advance(1)
    assert [r["zone"] for r in failures(box, name)] == zones_tried * 2
    box.call("ec2/capacity", zone="us-east-1b", available=True)
    box.advance(RETRY_SECONDS)
    if strategy == "balanced-only":
        assert zones_of_instances(autoscaling, name) == [] and len(failures(box, name)) == 3
        box.call("ec2/capacity", zone="us-east-1a", available=True)
        box.advance(RETRY_SECONDS)
    assert zones_of_instances(autoscaling, name) == [returning]
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    assert described["AvailabilityZoneDistribution"] == {"CapacityDistributionStrategy": strategy}
    settled = len(failures(box, name))
    box.advance(10 * RETRY_SECONDS)
    assert len(failures(box, name)) == settled  # nothing missing: no more tries


def test_a_suspended_launch_process_launches_nothing_when_capacity_returns(autoscaling, box, group, no_capacity):
    """The Launch process suspended: the retry finds the group's launches suppressed; resumed, it launches."""
    no_capacity("us-east-1a")
    name = group(zones=("us-east-1a",))
    autoscaling.suspend_processes(AutoScalingGroupName=name, ScalingProcesses=["Launch"])
    box.call("ec2/capacity", zone="us-east-1a", available=True)
    box.advance(RETRY_SECONDS)
    assert zones_of_instances(autoscaling, name) == [] and len(failures(box, name)) == 1
    assert [r for r in box.records("suppressed_launches") if r["group"] == name]
    autoscaling.resume_processes(AutoScalingGroupName=name, ScalingProcesses=["Launch"])
    assert zones_of_instances(autoscaling, name) == ["us-east-1a"]


@pytest.mark.parametrize(
    "shape, prefix, message",
    [
        ("spot-template", "", SPOT_MESSAGE),
        (
            "mixed-on-demand",
            "Could not launch On-Demand Instances. InsufficientInstanceCapacity - ",
            shortage("us-east-1a", "m5.large"),
        ),
        ("mixed-spot", "Could not launch Spot Instances. InsufficientInstanceCapacity - ", SPOT_MESSAGE),
    ],
)
def test_the_status_message_says_how_the_group_launches(autoscaling, group, no_capacity, shape, prefix, message):
    """A Spot template gets EC2's Spot message; a mixed instances group launches through EC2 Fleet, whose message names
    the market and the error code, for its override's type."""
    no_capacity("us-east-1a")
    if shape == "spot-template":
        name = group(zones=("us-east-1a",), template_data={"InstanceMarketOptions": {"MarketType": "spot"}})
    else:
        base = 1 if shape == "mixed-on-demand" else 0
        name = group(
            zones=("us-east-1a",),
            MixedInstancesPolicy={
                "LaunchTemplate": {"Overrides": [{"InstanceType": "m5.large"}]},
                "InstancesDistribution": {"OnDemandBaseCapacity": base, "OnDemandPercentageAboveBaseCapacity": 0},
            },
        )
    [failed] = autoscaling.describe_scaling_activities(AutoScalingGroupName=name)["Activities"]
    assert failed["StatusMessage"] == f"{prefix}{message} Launching EC2 instance failed."


def test_scaling_activities_page_and_keep_a_deleted_groups_history(autoscaling, box, group):
    name = group(desired=2, zones=ZONES)
    first = autoscaling.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=1)
    assert len(first["Activities"]) == 1 and first["NextToken"]
    rest = autoscaling.describe_scaling_activities(
        AutoScalingGroupName=name, MaxRecords=1, NextToken=first["NextToken"]
    )
    assert [a["StatusCode"] for a in first["Activities"] + rest["Activities"]] == ["Successful", "Successful"]
    with pytest.raises(ClientError) as refused:
        autoscaling.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=101)
    assert error_code(refused) == "ValidationError"
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
    assert autoscaling.describe_scaling_activities(AutoScalingGroupName=name)["Activities"] == []
    kept = autoscaling.describe_scaling_activities(AutoScalingGroupName=name, IncludeDeletedGroups=True)["Activities"]
    assert kept and {a["AutoScalingGroupState"] for a in kept} == {"Deleted"}


# ---- a Spot pool reclaimed (sandbox/rules/spot_pools.py) -------------------------------------------------------


def test_a_reclaimed_pool_interrupts_its_spot_instances_over_three_minutes_and_has_no_capacity(
    box, ec2, strict_ec2, seeded, launch, catch
):
    """AWS takes a pool's capacity back by interrupting its Spot instances, each with its own notice, most within
    3 minutes of each other; meanwhile a launch into the pool finds no Spot capacity. Other pools are untouched."""
    warnings = catch({"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]})
    spot = {"InstanceMarketOptions": {"MarketType": "spot"}}
    pool = sorted(launch("us-east-1a", **spot) for unused_index in range(3))
    other_type = launch("us-east-1a", instance_type="m5.large", **spot)
    other_zone = launch("us-east-1b", **spot)
    on_demand = launch("us-east-1a")
    try:
        reclaim = box.call("spot/reclaim-pool", zone="us-east-1a", instance_type="t3.micro")
        assert reclaim["interruptions"] == [
            {"instance_id": pool[0], "after": 0.0},
            {"instance_id": pool[1], "after": 90.0},
            {"instance_id": pool[2], "after": 180.0},
        ]

        def warned():
            return sorted(e["detail"]["instance-id"] for e in warnings.drain())

        assert warned() == [pool[0]]
        with pytest.raises(ClientError) as refused:
            spot_launch(strict_ec2, seeded, "us-east-1a")
        assert error_code(refused) == "InsufficientInstanceCapacity" and SPOT_MESSAGE in str(refused.value)
        box.advance(90)
        assert warned() == [pool[1]]
        box.advance(90)
        assert warned() == [pool[2]]
        box.advance(121)
        states = {
            i["InstanceId"]: i["State"]["Name"]
            for r in ec2.describe_instances(InstanceIds=[*pool, other_type, other_zone, on_demand])["Reservations"]
            for i in r["Instances"]
        }
        assert states == {
            pool[0]: "terminated",
            pool[1]: "terminated",
            pool[2]: "terminated",
            other_type: "running",
            other_zone: "running",
            on_demand: "running",
        }
        assert [r["instance_id"] for r in box.records("spot_interruptions")] == pool
    finally:
        box.call("ec2/capacity", reset=True)


def test_a_pool_instance_gone_before_its_turn_is_passed_over_and_capacity_returns_when_told(
    box, ec2, strict_ec2, seeded, launch
):
    spot = {"InstanceMarketOptions": {"MarketType": "spot"}}
    first, second = sorted(launch("us-east-1c", **spot) for unused_index in range(2))
    try:
        box.call("spot/reclaim-pool", zone="us-east-1c", instance_type="t3.micro", spread=60, capacity_for=300)
        ec2.terminate_instances(InstanceIds=[second])
        box.advance(60)
        assert box.records("pool_reclaim_passed_over") == [{"instance_id": second}]
        assert [r["instance_id"] for r in box.records("spot_interruptions")] == [first]
        box.advance(240)
        assert spot_launch(strict_ec2, seeded, "us-east-1c").startswith("i-")  # the capacity came back
        for bad in ({"zone": "us-east-1a"}, {"zone": "us-east-1a", "instance_type": "t3.micro", "spread": -1}):
            with pytest.raises(SandboxError, match="zone and instance_type|must not be negative"):
                box.call("spot/reclaim-pool", **bad)
    finally:
        box.call("ec2/capacity", reset=True)


# ---- Where a group's launch goes: the balance of its zones, the pools of its overrides ---------------------------


def mixed(*types):
    """A mixed instances policy of Spot ``types`` (EC2 Fleet's way of launching)."""
    return {
        "LaunchTemplate": {"Overrides": [{"InstanceType": kind} for kind in types]},
        "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0},
    }


def types_of_instances(autoscaling, ec2, name):
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    ids = [instance["InstanceId"] for instance in described["Instances"]]
    found = ec2.describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    return sorted((i["Placement"]["AvailabilityZone"], i["InstanceType"]) for r in found for i in r["Instances"])


def test_a_mixed_group_takes_another_overrides_pool_in_the_zone_before_another_zone(
    autoscaling, ec2, box, group, no_capacity
):
    """EC2 Fleet chooses among the overrides' pools with capacity: the reclaimed pool (m5.large in a) is passed over
    for m5a.large in the same zone, with no failed activity; only a zone with no override's capacity is failed."""
    no_capacity("us-east-1a", "m5.large")
    name = group(zones=ZONES[:2], MixedInstancesPolicy=mixed("m5.large", "m5a.large"))
    assert types_of_instances(autoscaling, ec2, name) == [("us-east-1a", "m5a.large")]
    assert failures(box, name) == []
    no_capacity("us-east-1a", "m5a.large")
    other = group(zones=ZONES[:2], MixedInstancesPolicy=mixed("m5.large", "m5a.large"))
    assert types_of_instances(autoscaling, ec2, other) == [("us-east-1b", "m5.large")]
    assert [(r["zone"], r["instance_type"]) for r in failures(box, other)] == [("us-east-1a", "m5.large")]


@pytest.mark.parametrize("counts_replaced, replacement_zone", [(0.0, "us-east-1a"), (1.0, "us-east-1b")])
def test_a_group_launches_into_its_zone_with_fewest_instances(
    autoscaling, ec2, box, group, counts_replaced, replacement_zone
):
    """Two instances of a group spread over two zones (one each); the replacement of an Unhealthy one, launched before
    it terminates (launch-before-terminate), goes where the group has fewest instances: its own zone when the one
    being replaced no longer counts there (the sandbox's default), the other zone when it does."""
    box.call("latency", asg_balance_counts_replaced=counts_replaced)
    try:
        name = group(
            desired=1,
            zones=ZONES[:2],
            InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
        )
        [(zone, _type)] = types_of_instances(autoscaling, ec2, name)
        assert zone == "us-east-1a"  # a tie: VPCZoneIdentifier's order
        [first] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
            "Instances"
        ]
        autoscaling.set_instance_health(InstanceId=first["InstanceId"], HealthStatus="Unhealthy")
        box.settle()
        described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        [replacement] = [i for i in described["Instances"] if i["InstanceId"] != first["InstanceId"]]
        assert replacement["AvailabilityZone"] == replacement_zone
    finally:
        box.call("latency", asg_balance_counts_replaced=0.0)
