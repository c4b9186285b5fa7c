# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Describing, starting and waiting for instances, and finding a group's healthy instance."""

from __future__ import annotations

from .aws import SYSTEM_CLOCK, call, paginate, wait_until
from .errors import InvalidInput, NotFound, exactly_one, missing_as_not_found
from .tags import filters

GONE_STATES = frozenset({"shutting-down", "terminated"})


def describe_instance(ec2, instance_id):
    """The instance's description; ``NotFound`` with the id when AWS does not know it."""
    if not instance_id or not str(instance_id).startswith("i-"):
        raise InvalidInput(f"{instance_id!r} is not an EC2 instance id (expected i-...)")
    with missing_as_not_found(
        ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"),
        f"instance {instance_id} does not exist",
        instance_id=instance_id,
    ):
        reservations = call(ec2, "describe_instances", InstanceIds=[instance_id])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    if not instances:
        raise NotFound(f"instance {instance_id} does not exist", instance_id=instance_id)
    return instances[0]


def state_of(instance):
    return instance["State"]["Name"]


LIVE_STATES = ("pending", "running", "stopping", "stopped")


def find_instances(ec2, tag_filter, states=LIVE_STATES, spot_only=False):
    """Instances carrying every tag in ``tag_filter`` (in the given states; only Spot ones if ``spot_only``), oldest
    first."""
    found = [
        instance
        for reservation in paginate(
            ec2,
            "describe_instances",
            "Reservations",
            Filters=filters(tag_filter)
            + [{"Name": "instance-state-name", "Values": list(states)}]
            + ([{"Name": "instance-lifecycle", "Values": ["spot"]}] if spot_only else []),
        )
        for instance in reservation["Instances"]
    ]
    return sorted(found, key=lambda i: (i["LaunchTime"], i["InstanceId"]))


def wait_for_state(ec2, instance_id, wanted, timeout, clock=SYSTEM_CLOCK):
    def failed(instance):
        if state_of(instance) in GONE_STATES and wanted not in GONE_STATES:
            return f"instance {instance_id} is {state_of(instance)}"
        return None

    return wait_until(
        lambda: describe_instance(ec2, instance_id),
        lambda instance: state_of(instance) == wanted,
        f"instance {instance_id} to be {wanted}",
        timeout,
        clock,
        is_failed=failed,
    )


def ensure_running(ec2, instance_id, dry_run, timeout, clock=SYSTEM_CLOCK):
    """Start a stopped (standby) instance and wait until it runs. Returns (instance, started)."""
    instance = describe_instance(ec2, instance_id)
    state = state_of(instance)
    if state == "running":
        return instance, False
    if state in GONE_STATES:
        raise InvalidInput(f"instance {instance_id} is {state}; it cannot be started", instance_id=instance_id)
    if dry_run:
        return instance, state != "pending"
    if state == "stopping":
        wait_for_state(ec2, instance_id, "stopped", timeout, clock)
        state = "stopped"
    if state == "stopped":
        call(ec2, "start_instances", InstanceIds=[instance_id])
    return wait_for_state(ec2, instance_id, "running", timeout, clock), state == "stopped"


def describe_group(autoscaling, group_name):
    """The Auto Scaling group ``group_name`` as DescribeAutoScalingGroups gives it, or ``{}`` when there is none."""
    groups = call(autoscaling, "describe_auto_scaling_groups", AutoScalingGroupNames=[group_name])
    found = groups.get("AutoScalingGroups") or []
    return found[0] if found else {}


def healthy_group_instance(autoscaling, group_name):
    """The one InService, Healthy instance of an Auto Scaling group; refuses zero or several."""
    group = describe_group(autoscaling, group_name)
    if not group:
        raise NotFound(f"Auto Scaling group {group_name} does not exist", group=group_name)
    members = group.get("Instances", [])
    healthy = [
        m["InstanceId"] for m in members if m["LifecycleState"] == "InService" and m["HealthStatus"] == "Healthy"
    ]
    seen = ", ".join(f"{m['InstanceId']} {m['LifecycleState']}/{m['HealthStatus']}" for m in members) or "none"
    return exactly_one(
        sorted(healthy),
        f"Auto Scaling group {group_name} has no healthy InService instance (instances: {seen})",
        lambda several: (
            f"Auto Scaling group {group_name} has {len(several)} healthy InService instances "
            f"({', '.join(several)}); name the target instance instead"
        ),
        group=group_name,
    )
