"""Which zone the replacements come from: a fleet of Spot pools reclaimed one after another, steered and not.

A fleet of ``GROUPS`` make-before-break services, each a group of one over three zones (``ZONES``, the same subnets
in the same order for every group, as a fleet is usually deployed) with a mixed instances policy of three Spot types
(``TYPES``): nine pools. The lineages' data are spread over the zones (a third in each: each group was first placed
in its own zone, then given all three). Then ``ROUNDS`` times, a pool holding some of the fleet is reclaimed, seeded
(``spot/reclaim-pool``: its capacity taken away for ``AVOID_SECONDS``, its instances warned one after another over the
three minutes co-interruptions take), and every interruption is recovered by the handler as the control plane runs
it: the warning (steering, pre-snapshot, deadline, Unhealthy), the replacement's launch (held), its agent's readiness
``os_boot`` later, the cut-over. Counted: the
interruptions whose replacement launched in the data's zone, so that the very volume moved (no snapshot waited for).

Four runs, the same seed: zone steering on (``keep_data_zone``, the default) and off, under both readings of how
Auto Scaling balances a group while it replaces an instance launch-first (sandbox/rules/capacity.py: the instance
being replaced no longer counts in its zone, the sandbox's default; or it still does, ``asg_balance_counts_replaced``).
AWS publishes neither that nor how it breaks ties; steering makes the outcome depend on neither. Every run avoids the
interrupted pool (``avoid_interrupted_pool``, 300 s) and sweeps after each round, as the control plane does.

Two more runs, steered, where a reclaim leaves its pool capacity (it comes back at once): with the pool avoided and
without. Counted too: the replacements launched into the very pool being reclaimed (the overrides are tried in their
order in the sandbox, so without avoidance the group takes a reclaimed first type again).

IAM is enforced while the handler runs, as in ``benchmarks/recovery.py``: it signs as the function role rendered for
these services.
"""

from __future__ import annotations

import random

import boto3
from moto import mock_aws

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from sandbox import scenario as scenario_module, world
from sandbox.clock import CONTEXT, CoreClock
from sandbox.iam import enforce
from sandbox.scenario import SERVICES, warning

from . import iam as bench_iam
from .recovery import as_function_role, ready_event

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
TYPES = ("m6i.large", "m5.large", "m6a.large")
GROUPS = 9
ROUNDS = 8
AVOID_SECONDS = 300.0  # how long a reclaimed pool stays without capacity (co-interruptions: > 92 % within 3 min)
CO_INTERRUPTION_SPREAD = 180.0  # the pool's warnings over 3 minutes (sandbox/rules/spot_pools.py)
# The handler runs one invocation at a time here (the manual clock), where Lambda would run a pool's recoveries side
# by side: a pool's warnings are spaced at least this long apart, the modeled time one recovery takes here, so that
# each is handled before its reclaim (a restore in another zone waits for the final snapshot). Where a replacement
# launches does not depend on the spacing.
RECOVERY_SECONDS = 90.0
CONTROL_PLANE = "bench-zones"
SEED = "zones"


def _build(clients, keep_data_zone, enforced, avoid=300):
    """The fleet, its data volumes, the function's queue and role; answers (handler, {lineage: group})."""
    ec2, autoscaling, sqs = clients["ec2"], clients["autoscaling"], clients["sqs"]
    seeded = world.seed(ec2)
    world.managed_instance_profile(clients["iam"], f"{CONTROL_PLANE}-instance")
    ec2.create_launch_template(
        LaunchTemplateName=CONTROL_PLANE,
        LaunchTemplateData={
            "ImageId": seeded["image_id"],
            "InstanceType": TYPES[0],
            "IamInstanceProfile": {"Name": f"{CONTROL_PLANE}-instance"},
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )
    topic = clients["sns"].create_topic(Name=CONTROL_PLANE)["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{CONTROL_PLANE}-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    every_subnet = ",".join(seeded["subnets"][zone] for zone in ZONES)
    services = []
    for index in range(GROUPS):
        lineage = group = f"zones-{index}"
        data_zone = ZONES[index % len(ZONES)]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=group,
            MinSize=1,
            MaxSize=2,
            DesiredCapacity=1,
            # First placed in its data's zone; given every zone since (the groups are then all alike).
            VPCZoneIdentifier=seeded["subnets"][data_zone],
            MixedInstancesPolicy={
                "LaunchTemplate": {
                    "LaunchTemplateSpecification": {"LaunchTemplateName": CONTROL_PLANE},
                    "Overrides": [{"InstanceType": kind} for kind in TYPES],
                },
                "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0},
            },
            InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
            Tags=[{"Key": t.LINEAGE, "Value": lineage, "PropagateAtLaunch": True}],
            LifecycleHookSpecificationList=scenario_module.LIFECYCLE_HOOKS,
        )
        [action] = scenario_module.pending_launches(group)
        first = action["instance_id"]
        autoscaling.complete_lifecycle_action(
            AutoScalingGroupName=group, LifecycleHookName="launch", InstanceId=first, LifecycleActionResult="CONTINUE"
        )
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=group, VPCZoneIdentifier=every_subnet)
        volume = world.lineage_volume(ec2, lineage, data_zone, 20, {t.DEVICE: "/dev/sdf", t.HOLDER: first})
        ec2.attach_volume(VolumeId=volume, InstanceId=first, Device="/dev/sdf")
        services.append(
            {
                "name": lineage,
                "lineage": lineage,
                "group": group,
                "stop_commands": ["echo stopped > app.state"],
                "device_name": "/dev/sdf",
                "cutover": "make-before-break",
                "keep_data_zone": keep_data_zone,
                "avoid_interrupted_pool": avoid,
            }
        )
    CONTEXT.advance(5)
    config = handler_config.parse({"topic_arn": topic, "queue_arn": queue_arn, "services": services})
    role = bench_iam.create_function_role(clients["iam"], CONTROL_PLANE, services)
    with as_function_role(enforced):
        session = bench_iam.handler_session(role, CONTROL_PLANE)
    handler_clients = {name: bench_iam.handler_client(session, name) for name in SERVICES}
    return scenario_module.handler(config, handler_clients, CoreClock())


def _holders(ec2):
    """{lineage: (instance id, zone, type)} of the fleet's running instances holding their lineage's data."""
    found = {}
    volumes = ec2.describe_volumes(Filters=[{"Name": "tag-key", "Values": [t.LINEAGE]}])["Volumes"]
    for volume in volumes:
        attached = [a["InstanceId"] for a in volume.get("Attachments", []) if a["State"] == "attached"]
        if not attached:
            continue
        instance = ec2.describe_instances(InstanceIds=attached)["Reservations"][0]["Instances"][0]
        if instance["State"]["Name"] == "running":
            lineage = t.as_dict(volume["Tags"])[t.LINEAGE]
            found[lineage] = (
                instance["InstanceId"],
                instance["Placement"]["AvailabilityZone"],
                instance["InstanceType"],
            )
    return found


def one_fleet(keep_data_zone, counts_replaced, enforced, avoid=300, pool_keeps_capacity=False):
    """The rounds of reclaims, recovered; answers the run's counts. ``pool_keeps_capacity``: the reclaimed pool's
    capacity comes back at once (a reclaim that leaves some), so only the handler's pool avoidance (``avoid``
    seconds, 0: none) keeps a replacement out of it."""
    random.seed(SEED)
    with mock_aws():
        CONTEXT.reset()
        CONTEXT.latency["asg_balance_counts_replaced"] = 1.0 if counts_replaced else 0.0
        clients = {name: boto3.client(name, region_name="us-east-1", config=RETRY_CONFIG) for name in SERVICES}
        handler = _build(clients, keep_data_zone, enforced, avoid)
        ec2 = clients["ec2"]
        kept = moved = restored = unrecovered = same_pool = 0
        for unused_round in range(ROUNDS):
            holders = _holders(ec2)
            pools = sorted({(zone, kind) for unused_id, zone, kind in holders.values()})
            zone, kind = random.choice(pools)
            by_instance = {
                instance_id: (lineage, data_zone) for lineage, (instance_id, data_zone, unused_kind) in holders.items()
            }
            # The pool's instances are warned one after another over the co-interruption spread (180 s), each
            # recovered from its own warning: the handler's invocations for one instance run in sequence here, as
            # the manual clock has them, and an interruption's recovery ends before the next warning.
            members = sum(
                1 for unused_id, pool_zone, pool_kind in holders.values() if (pool_zone, pool_kind) == (zone, kind)
            )
            spread = max(CO_INTERRUPTION_SPREAD, RECOVERY_SECONDS * (members - 1))
            reclaim = CONTEXT.call_control(
                "spot/reclaim-pool",
                {
                    "zone": zone,
                    "instance_type": kind,
                    "spread": spread,
                    "capacity_for": 0.0 if pool_keeps_capacity else max(AVOID_SECONDS, spread),
                },
            )
            began = CONTEXT.clock.elapsed()
            for struck in reclaim["interruptions"]:
                if struck["instance_id"] not in by_instance:
                    continue  # not a holder of the fleet's data
                lineage, data_zone = by_instance[struck["instance_id"]]
                CONTEXT.advance(max(0.0, began + struck["after"] - CONTEXT.clock.elapsed()))
                with as_function_role(enforced):
                    handler.handle(warning(struck["instance_id"]))
                actions = scenario_module.pending_launches(lineage)
                if not actions:
                    unrecovered += 1
                    continue
                replacement = actions[0]["instance_id"]
                with as_function_role(enforced):
                    handler.handle(scenario_module.launch_event(lineage, actions[0]))
                CONTEXT.advance(CONTEXT.latency["os_boot"])
                with as_function_role(enforced):
                    handler.handle(ready_event(replacement, lineage, lineage))
                launched_in = ec2.describe_instances(InstanceIds=[replacement])["Reservations"][0]["Instances"][0]
                kept += launched_in["Placement"]["AvailabilityZone"] == data_zone
                # the very pool being reclaimed (its co-interruptions are still to come)
                same_pool += (launched_in["Placement"]["AvailabilityZone"], launched_in["InstanceType"]) == (zone, kind)
                origin = progress.read_outcome(progress.read(launched_in), "attached")
                moved += bool(origin and not origin.restored)
                restored += bool(origin and origin.restored)
            # The reclaims happen, the old instances go, the pool's capacity comes back; the control plane's sweep
            # (every 5 minutes) puts the types left out of the groups' overrides back (avoid_interrupted_pool).
            CONTEXT.advance(max(0.0, began + AVOID_SECONDS + 1 - CONTEXT.clock.elapsed()))
            with as_function_role(enforced):
                handler.handle(scenario_module.envelope("ec2spot.autorecover", "EC2Spot Sweep", {}))
        interruptions = moved + restored + unrecovered
        return {
            "interruptions": interruptions,
            "data_zone_kept": kept,
            "data_zone_kept_percent": round(100.0 * kept / interruptions, 1) if interruptions else None,
            "very_volume_moved": moved,
            "replacement_in_the_interrupted_pool": same_pool,
            "restored_from_snapshot": restored,
            "not_recovered": unrecovered,
            "iam": bench_iam.summary() | {"enforced": enforced},
        }


def run():
    from sandbox import rules as sandbox_rules

    sandbox_rules.install()
    enforce.install()
    enforced = bench_iam.enforced_by_default()
    CONTEXT.clock.set_scale(0.0)
    runs = {}
    for counts_replaced in (False, True):
        reading = "replaced instance counts" if counts_replaced else "replaced instance does not count"
        for keep_data_zone in (True, False):
            runs[f"{'steered' if keep_data_zone else 'not steered'}, {reading}"] = one_fleet(
                keep_data_zone, counts_replaced, enforced
            )
    # A reclaim that leaves the pool capacity: the group's allocation alone may take it again.
    for avoid in (300, 0):
        runs[f"steered, the reclaimed pool keeps capacity, {'avoided 300 s' if avoid else 'not avoided'}"] = one_fleet(
            True, False, enforced, avoid=avoid, pool_keeps_capacity=True
        )
    return {
        "groups": GROUPS,
        "zones": list(ZONES),
        "types": list(TYPES),
        "rounds": ROUNDS,
        "avoid_seconds": AVOID_SECONDS,
        "runs": runs,
        "iam": {
            "enforced": enforced,
            "refusals": sum(found["iam"]["refusals"] for found in runs.values()),
            "refused": [line for found in runs.values() for line in found["iam"]["refused"]][:5],
        },
    }
