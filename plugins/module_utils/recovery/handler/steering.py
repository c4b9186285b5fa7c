# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Zone steering: a make-before-break replacement launches in the data's zone, so the very volume moves.

An EBS volume lives in one Availability Zone. A replacement there takes the volume itself in the time of a detach and
an attach; a replacement anywhere else waits for the final snapshot and a volume restored from it (36 s against 8 s
in ``make bench``). Left to itself, the group chooses the zone: it keeps "an equal number of instances across enabled
Availability Zones" (EC2 Auto Scaling user guide, "Auto Scaling group Availability Zone distribution"), AWS publishes
neither how it breaks a tie nor whether the instance being replaced still counts, and a group of one spread over
two zones may well launch its replacement in the other one.

So, at the warning and before the holder is marked Unhealthy (which is what makes the group launch), ``narrow`` sets
the group's ``VPCZoneIdentifier`` to its subnets in the data's zone, recording first what to give back (``steered``:
the zone, and the subnets as they were). Within that zone the group's allocation strategy still chooses among its
overrides' Spot pools, so the replacement comes from another pool of the zone when the interrupted one has no
capacity left. ``restore`` gives the subnets back (``unsteered``) once the data has moved, or at the deadline's
fallback (the bound: a zone with no capacity by then must not hold the replacement back; widened, the group's next
try goes to any zone and the replacement restores the data from the final snapshot).

Why the subnets and nothing else (fleet role README, "Zone steering"): ``UpdateAutoScalingGroup`` with
``VPCZoneIdentifier`` alone changes where the group launches and nothing of what it launches, so the function needs
neither ``ec2:RunInstances`` nor ``iam:PassRole`` on the instance role, which a change of the group's launch template
or mixed instances policy would (EC2 Auto Scaling user guide, "Launch template support": permissions to use a
launch template are checked when a group is created or updated with one); launching the replacement ourselves
would need both, and would lose the group's lifecycle hooks and health checks. A group with an instance outside the
data's zone is not steered: removing that instance's zone would make Auto Scaling replace it ("rebalancing
activities" in the user guide); a lineage's group of one has only the holder, in the data's zone by definition.

``avoid_pool`` and ``end_avoidance`` (below) keep the interrupted instance type out of the group's overrides for a
few minutes, and put it back.

A crash between ``steered`` recorded and the group updated leaves the group as it was: the replacement may land in
another zone (the data is restored there), and ``restore`` then finds the subnets unchanged and records so. Subnets
someone changed meanwhile (a deploy) are never overwritten: ``restore`` acts only on a group still narrowed to a
part of what it recorded.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from .. import progress
from ..aws import AwsApiError, call
from ..instances import describe_group

LOG = logging.getLogger("ec2spot.autorecover.handler")


def _subnets_of(group):
    """The group's ``VPCZoneIdentifier`` as a list in its order (empty: no group, or a group placed by zone names)."""
    return [subnet for subnet in (group.get("VPCZoneIdentifier") or "").split(",") if subnet]


def _group_subnets(autoscaling, group_name):
    return _subnets_of(describe_group(autoscaling, group_name))


def narrow(handler, holder, service, done):
    """Narrow the holder's group to its subnets in the data's zone (the holder's), once, when the group spans other
    zones too. ``done``: the holder's progress (updated). Never fails the warning: a replacement in another zone
    still gets the data."""
    if not service.keep_data_zone or not service.group or "steered" in done:
        return
    autoscaling, ec2, holder_id = handler.clients["autoscaling"], handler.clients["ec2"], holder["InstanceId"]
    zone = holder["Placement"]["AvailabilityZone"]
    try:
        group = describe_group(autoscaling, service.group)
        subnets = _subnets_of(group)
        if len(subnets) < 2:
            return  # one subnet (or none): the group has one zone to launch in already
        elsewhere = sorted(
            member["InstanceId"] for member in group.get("Instances", []) if member.get("AvailabilityZone") != zone
        )
        if elsewhere:
            # Auto Scaling rebalances a group whose zones are removed: it would replace these instances.
            LOG.warning("zone steering of %s skipped: %s run outside %s", service.group, ", ".join(elsewhere), zone)
            return
        zones = {
            subnet["SubnetId"]: subnet["AvailabilityZone"]
            for subnet in call(ec2, "describe_subnets", SubnetIds=subnets).get("Subnets", [])
        }
    except AwsApiError as exc:
        LOG.warning("zone steering of %s skipped: %s", service.group, exc)
        return
    kept = [subnet for subnet in subnets if zones.get(subnet) == zone]
    if not kept or len(kept) == len(subnets):
        return  # the group launches only in the data's zone already, or never there: nothing to steer
    steering = progress.ZoneSteering(zone, tuple(subnets))
    if not progress.fits(steering) or progress.ZoneSteering.parse(steering.describe()) != steering:
        # Recorded only when read back whole: a narrowing nothing could undo would keep the group in one zone.
        LOG.warning(
            "zone steering of %s skipped: %d subnets in %s cannot be recorded", service.group, len(subnets), zone
        )
        return
    done["steered"] = progress.record(ec2, holder_id, "steered", handler.clock.now(), steering)
    try:
        call(
            autoscaling,
            "update_auto_scaling_group",
            AutoScalingGroupName=service.group,
            VPCZoneIdentifier=",".join(kept),
        )
    except AwsApiError as exc:
        LOG.warning("zone steering of %s failed: %s; the replacement may launch in another zone", service.group, exc)


def restore(handler, holder_id, service, steps):
    """Give the group back the subnets ``narrow`` recorded on ``holder_id`` (``steps``: its progress, updated), once.
    A group whose subnets are no longer a part of those (changed since, or never narrowed) is left as it is."""
    steering = progress.read_outcome(steps, "steered")
    if steering is None or "unsteered" in steps:
        return
    # A failure here (after the core's retries) fails the invocation: its redelivery resumes the cut-over, whose
    # steps are all recorded, and comes back here. A group left narrowed would launch in one zone for good.
    current = _group_subnets(handler.clients["autoscaling"], service.group)
    if current and set(current) < set(steering.restore):
        call(
            handler.clients["autoscaling"],
            "update_auto_scaling_group",
            AutoScalingGroupName=service.group,
            VPCZoneIdentifier=",".join(steering.restore),
        )
        outcome = "restored"
    elif set(current) == set(steering.restore):
        outcome = "restored: the group had them"
    elif not current:
        outcome = "skipped: the group is gone"
    else:
        outcome = "skipped: the group's subnets changed since"
    steps["unsteered"] = progress.record(handler.clients["ec2"], holder_id, "unsteered", handler.clock.now(), outcome)


# Pool avoidance: the replacement comes from another Spot pool than the one being reclaimed.
#
# A Spot interruption reclaims one pool (instance type x zone), and its co-interruptions cluster within minutes
# (> 92 % within 3 minutes, ../shared/FIGURES.md). EC2 Fleet's allocation strategies prefer pools with capacity
# (EC2 Auto Scaling user guide, "Allocation strategies for multiple instance types"), but a pool being reclaimed may
# still offer some, and an instance launched there is among the next to go. So ``avoid_pool`` leaves the holder's
# instance type out of the group's overrides for ``avoid_interrupted_pool`` seconds (with zone steering, that is the
# interrupted pool exactly; without, the type in every zone for those minutes), and the sweep (``end_avoidance``)
# puts it back after that. The update names no launch template: ``UpdateAutoScalingGroup`` takes a mixed instances
# policy's ``Overrides`` alone (API reference, ``LaunchTemplate``: ``LaunchTemplateSpecification`` "Required: No";
# "When you update the launch template or overrides ... existing Amazon EC2 instances continue to run"), so, as for
# the subnets, neither ec2:RunInstances nor iam:PassRole is asked. Overrides with a launch template or instance
# requirements of their own are left alone: rewriting them would name a template, or mean something else.


def _overrides_of(group):
    """The group's overrides as ``[(instance type, weighted capacity or None)]``, or None when it has none, or any
    override is more than a type and a weight."""
    overrides = (((group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}).get("Overrides")) or []
    if not overrides or any(
        set(o) - {"InstanceType", "WeightedCapacity"} or "InstanceType" not in o for o in overrides
    ):
        return None
    return [(o["InstanceType"], o.get("WeightedCapacity")) for o in overrides]


def _as_overrides(entries):
    return [{"InstanceType": kind, **({"WeightedCapacity": weight} if weight else {})} for kind, weight in entries]


def avoid_pool(handler, holder, service, done):
    """Leave the holder's instance type out of its group's overrides until ``avoid_interrupted_pool`` seconds from
    now, once per interruption, when another type remains. ``done``: the holder's progress (updated). Never fails the
    warning: a replacement from the same pool still gets the data."""
    if not service.avoid_interrupted_pool or not service.group or "avoided" in done:
        return
    autoscaling, kind = handler.clients["autoscaling"], holder.get("InstanceType")
    try:
        overrides = _overrides_of(describe_group(autoscaling, service.group))
    except AwsApiError as exc:
        LOG.warning("pool avoidance of %s skipped: %s", service.group, exc)
        return
    if not overrides:
        return
    kept = [entry for entry in overrides if entry[0] != kind]
    if not kept or len(kept) == len(overrides):
        return  # the type is the group's only one, or not one of its overrides: nothing to leave out
    # to the second, as the record keeps it
    until = (handler.clock.now() + timedelta(seconds=service.avoid_interrupted_pool)).replace(microsecond=0)
    avoidance = progress.PoolAvoidance(kind, until, tuple(overrides))
    if not progress.fits(avoidance) or progress.PoolAvoidance.parse(avoidance.describe()) != avoidance:
        LOG.warning("pool avoidance of %s skipped: %d overrides cannot be recorded", service.group, len(overrides))
        return
    done["avoided"] = progress.record(
        handler.clients["ec2"], holder["InstanceId"], "avoided", handler.clock.now(), avoidance
    )
    try:
        call(
            autoscaling,
            "update_auto_scaling_group",
            AutoScalingGroupName=service.group,
            MixedInstancesPolicy={"LaunchTemplate": {"Overrides": _as_overrides(kept)}},
        )
    except AwsApiError as exc:
        LOG.warning("pool avoidance of %s failed: %s; the replacement may come from the same pool", service.group, exc)


def end_avoidance(handler, instance, service):
    """The sweep's part: once its time is up, put the type ``avoid_pool`` left out back into the group's overrides,
    where it was, once (``unavoided``). Another avoidance since (another type left out), or a deploy, may have
    changed the list: only the avoided type's own entries are put back, and only when the type is absent. Returns
    what was done, or None (nothing due)."""
    steps = progress.read(instance)
    avoidance = progress.read_outcome(steps, "avoided")
    if avoidance is None or "unavoided" in steps or handler.clock.now() < avoidance.until:
        return None
    group = describe_group(handler.clients["autoscaling"], service.group)
    current = _overrides_of(group)
    if not group:
        outcome = "skipped: the group is gone"
    elif current is None:
        outcome = "skipped: the group's overrides changed since"
    elif any(kind == avoidance.instance_type for kind, unused_weight in current):
        outcome = "restored: the group had it"
    else:
        # Each entry of the type goes back after the entries that preceded it and are still there.
        restored = list(current)
        for index, entry in enumerate(avoidance.restore):
            if entry[0] == avoidance.instance_type:
                before = [e for e in avoidance.restore[:index] if e in restored]
                restored.insert(restored.index(before[-1]) + 1 if before else 0, entry)
        call(
            handler.clients["autoscaling"],
            "update_auto_scaling_group",
            AutoScalingGroupName=service.group,
            MixedInstancesPolicy={"LaunchTemplate": {"Overrides": _as_overrides(restored)}},
        )
        outcome = "restored"
    progress.record(handler.clients["ec2"], instance["InstanceId"], "unavoided", handler.clock.now(), outcome)
    return f"{avoidance.instance_type} back in the overrides of {service.group} ({instance['InstanceId']}): {outcome}"
