# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A replacement's launch lifecycle action: the lineage's data and address move to it, then the launch continues.

Move the lineage's data (same zone: the very volume; another zone: restored from the newest completed snapshot,
after waiting for a newer one still in progress), move the Elastic IP, complete the action with CONTINUE, and let
the CPU watchdog's alarm follow. A move that cannot happen yet (the old holder still running and not known
stopped) heartbeats the hook and retries (``retries.Retry``). One that can never happen (no snapshot, data too
old, a forked lineage) is abandoned once (``abandon``): the group's launches are suspended so that no replacement
loop follows, and the operator is told where the data is and how to resume. Where the data came from
(``progress.Origin``) and whose it was (``replaces``) are recorded before the launch continues: the boot report's
verdict reads them.
"""

from __future__ import annotations

import logging

from .. import lineage as lineages
from .. import progress
from .. import watchdog as watchdogs
from ..addresses import find_address, move_address
from ..aws import call, wait_until
from ..errors import AwsApiError, Conflict, FenceViolation, RecoveryError, WaitTimeout
from ..instances import GONE_STATES, describe_group
from ..lineage import current_volume
from ..lineage import snapshots as lineage_snapshots
from ..volumes import move_lineage_volume, staged_from
from ..config import MAKE_BEFORE_BREAK
from . import cutover, lifecycle, readiness
from .retries import TRANSIENT, Retry

LOG = logging.getLogger("ec2spot.autorecover.handler")
SNAPSHOT_WAIT = 600  # seconds a launch action waits in-process for the interruption snapshot
HEARTBEAT_EVERY = 60  # seconds between lifecycle heartbeats while waiting
# The progress steps of one launch lifecycle (forgotten when the instance starts another, back from a warm pool).
LAUNCH_STEPS = (
    readiness.READY,
    "held",
    "attached",
    "replaces",
    "address",
    "awaiting-start",
    "continued",
    "abandoned",
    "reported",
)
# A group behind target groups: its replacement's launch action, once the data is attached, is held until its agent
# reports the application started (hold_for_start), at most this long; the sweep (every control_plane_sweep_minutes,
# 5) heartbeats a younger hold and completes an older one, so the action never reaches its own timeout (the fleet's
# 600 s, whose default result ABANDON would terminate an instance that holds the data).
START_HOLD_LIMIT = 240


def on_launch(handler, event, instance, service):
    """A launch lifecycle action of the service's group: give the replacement the lineage's data and address."""
    replacement = event.instance_id
    if instance is None or instance["State"]["Name"] in GONE_STATES:
        return f"ignored: replacement {replacement} is gone"
    done = progress.read(instance)
    hook = lifecycle.hook_of(event)
    completed = [step for step in ("continued", "abandoned") if step in done]
    if completed and progress.read_outcome(done, completed[0]).is_for(event.token):
        return f"duplicate: launch action for {replacement} already completed"
    if completed:
        # Another lifecycle of the same instance (back from a warm pool): the last one's steps say nothing about
        # where the data is now.
        done = _forget_launch(handler, instance, done)
    lifecycle.heartbeat(handler, hook)
    if service.cutover == MAKE_BEFORE_BREAK:
        held = cutover.hold(handler, event, instance, service, done)
        if held is not None:
            return held
    return take_data(handler, hook, instance, service, done)


def take_data(handler, hook, instance, service, done):
    """Give ``instance`` (a replacement held by the launch action ``hook``) the lineage's data and address, then
    continue the action; ``done``: its progress. The launch workflow and the cut-over (``cutover``) end here."""
    ec2, replacement, clock = handler.clients["ec2"], instance["InstanceId"], handler.clock
    try:
        if "attached" not in done:
            _await_newest_snapshot(handler, service, instance, hook)
            # The fence: the old holder's app counts as stopped only if this handler stopped it (progress tag).
            current = current_volume(ec2, service.lineage)
            attachments = (current or {}).get("Attachments") or []
            holder_id = attachments[0]["InstanceId"] if attachments else None
            holder_stopped = (
                bool(holder_id)
                and holder_id != replacement
                and progress.outcome_of(progress.read(handler.describe(holder_id) or {}).get("stopped", "")) == "ok"
            )
            # Whose data this is, recorded before anything moves: a redelivery after the attach finds the volume
            # already on the replacement, and only this says where it came from.
            prior = lineages.holder_id(current) if current else None
            if prior and prior != replacement and "replaces" not in done:
                done["replaces"] = progress.record(ec2, replacement, "replaces", clock.now(), prior)
            moved = move_lineage_volume(
                ec2,
                service.lineage,
                replacement,
                device_name=service.device_name,
                app_stopped=holder_stopped,
                max_data_age=service.max_data_age,
                timeout=handler.move_timeout,
                clock=clock,
            )
            origin = (
                progress.Origin(moved.volume_id)
                if not moved.from_snapshot
                else progress.Origin(
                    moved.volume_id,
                    moved.snapshot_id,
                    moved.data_age_seconds or 0.0,
                    staged=staged_from(current, moved.snapshot_id),
                )
            )
            done["attached"] = progress.record(ec2, replacement, "attached", clock.now(), origin)
            if moved.previous_instance_id and moved.previous_instance_id != replacement and "replaces" not in done:
                done["replaces"] = progress.record(
                    ec2, replacement, "replaces", clock.now(), moved.previous_instance_id
                )
            handler.metric(service, "DataAge", moved.data_age_seconds or 0.0, "Seconds")
        if service.address and "address" not in done:
            done["address"] = move_service_address(handler, service, replacement)
    except FenceViolation as exc:
        if "max_data_age" in exc.message:
            return abandon(handler, hook, service, replacement, exc)
        raise Retry(f"launch of {replacement} waits for the data: {exc.message}") from exc
    except TRANSIENT:
        raise
    except RecoveryError as exc:  # no snapshot, forked lineage, bad address...: waiting will not help
        return abandon(handler, hook, service, replacement, exc)
    outcome = f"replacement {replacement} has the data ({progress.outcome_of(done['attached'])}) and the address"
    held = hold_for_start(handler, hook, replacement, service, done)
    if not held:
        lifecycle.complete_and_record(handler, hook, "CONTINUE", replacement, "continued")
    watched = _watch_replacement(handler, service, progress.outcome_of(done.get("replaces", "")), replacement)
    return outcome + (f"; {held}" if held else "") + (f"; {watched}" if watched else "")


def hold_for_start(handler, hook, replacement, service, done):
    """A group behind target groups: keep the replacement's launch action, with the data attached, until its agent
    reports the application started (``release_start_hold``). Returns what is said, or None (nothing to wait for).

    Why: EC2 Auto Scaling registers an instance in the group's target groups when it goes ``InService``, i.e. when
    this action completes (EC2 Auto Scaling user guide, "How lifecycle hooks work"). Completed at the attach, the
    load balancer's first checks meet an application not yet started; ``UnhealthyThresholdCount`` failures make the
    target unhealthy, and it then needs ``HealthyThresholdCount`` passes at the interval (5 x 30 s at the defaults)
    to be healthy again (Application Load Balancers user guide, "Health checks for target groups"). The agent
    registers its instance the moment the application has started, so its first check passes: held until then, the
    replacement is healthy one check after it serves (the fleet README's "Target groups during a cut-over")."""
    if "awaiting-start" in done:
        return f"its launch action waits for the application's start since {progress.stamp_of(done['awaiting-start'])}"
    try:
        group = describe_group(handler.clients["autoscaling"], service.group)
    except AwsApiError as exc:  # not knowing, complete as before: traffic may come later, the data is never held up
        LOG.warning("could not read the target groups of %s: %s", service.group, exc.message)
        return None
    target_groups = group.get("TargetGroupARNs") or []
    if not target_groups:
        return None
    lifecycle.heartbeat(handler, hook)  # a whole timeout from now
    done["awaiting-start"] = progress.record(
        handler.clients["ec2"],
        replacement,
        "awaiting-start",
        handler.clock.now(),
        progress.HeldLaunch(hook["LifecycleHookName"], hook["LifecycleActionToken"]),
    )
    return (
        f"its launch action completes when its agent reports the application started ({len(target_groups)} target "
        f"group(s): the agent registers it first), at the latest {START_HOLD_LIMIT} s from now"
    )


def _start_hold(instance, service):
    """``(the held action's hook, when it was held)`` of a launch action ``hold_for_start`` kept and nothing has
    completed since, or None."""
    done = progress.read(instance)
    held = progress.read_outcome(done, "awaiting-start")
    if held is None or "continued" in done or "abandoned" in done:
        return None
    return lifecycle.held_hook(service.group, held), progress.time_of(done["awaiting-start"])


def release_start_hold(handler, instance, service, why):
    """Complete the launch action ``hold_for_start`` kept, once (``continued``); returns what was done, or None
    (no hold, or released already)."""
    kept = _start_hold(instance, service)
    if kept is None:
        return None
    lifecycle.complete_and_record(handler, kept[0], "CONTINUE", instance["InstanceId"], "continued")
    return f"launch action of {instance['InstanceId']} completed ({why})"


def sweep_start_hold(handler, instance, service):
    """The sweep's part: a hold older than ``START_HOLD_LIMIT`` is released (the agent did not report in time: the
    group registers the instance now); a younger one is kept alive. Returns what was done, or None."""
    kept = _start_hold(instance, service)
    if kept is None:
        return None
    hook, since = kept
    waited = (handler.clock.now() - since).total_seconds()
    if waited >= START_HOLD_LIMIT:
        lifecycle.complete_and_record(handler, hook, "CONTINUE", instance["InstanceId"], "continued")
        why = f"no report of the application's start in {waited:.0f} s"
        return f"launch action of {instance['InstanceId']} completed ({why})"
    lifecycle.heartbeat(handler, hook)
    return f"launch action of {instance['InstanceId']} kept for its application's start ({waited:.0f} s so far)"


def move_service_address(handler, service, replacement):
    """The service's Elastic IP to the replacement, taken only from an instance of the lineage (or unassociated)
    unless the service says ``address_take_from_any``. Refused: the data stays with the replacement (abandoning
    it would only churn) and the operator is told who holds the address."""
    ec2 = handler.clients["ec2"]
    address = find_address(
        ec2,
        allocation_id=service.address.get("allocation_id"),
        public_ip=service.address.get("public_ip"),
        address_tags=service.address.get("tags"),
    )
    try:
        moved = move_address(
            ec2,
            address,
            replacement,
            allow_reassociation=True,
            only_from_lineage=None if service.address_take_from_any else service.lineage,
        )
    except Conflict as exc:
        handler.publish(
            service,
            f"Elastic IP of {service.name} not moved to {replacement}",
            {
                "event": "failed",
                "step": "address",
                "service": service.name,
                "lineage": service.lineage,
                "instance_id": replacement,
                "address": address["PublicIp"],
                "holder": exc.details.get("holder"),
                "safe": f"the data is on {replacement}",
                "summary": f"{service.name}: {exc.message}. The data is on "
                f"{replacement}, which is running without the service's address",
            },
        )
        handler.metric(service, "RecoveryFailures", 1, "Count")
        return progress.record(
            ec2, replacement, "address", handler.clock.now(), f"refused: held by {exc.details.get('holder')}"
        )
    return progress.record(ec2, replacement, "address", handler.clock.now(), moved.public_ip)


def _watch_replacement(handler, service, old_instance_id, replacement):
    """The CPU watchdog's alarm follows the data to the replacement (after the launch completed: the service
    comes first, and a failure here only loses the alarm, which the report says)."""
    if not service.watchdog or not service.watchdog.alarm_prefix or not old_instance_id:
        return None
    try:
        return watchdogs.follow_replacement(
            handler.clients["cloudwatch"], service.watchdog.alarm_prefix, old_instance_id, replacement
        )
    except (AwsApiError, RecoveryError) as exc:
        LOG.error("watchdog alarm of %s not moved to %s: %s", old_instance_id, replacement, exc)
        return f"watchdog alarm NOT moved to {replacement}: {exc}"


def _await_newest_snapshot(handler, service, replacement, hook):
    """Before a restore into another zone, wait for a snapshot still in progress that is newer
    than the newest completed one (the interruption snapshot): restoring the older one would
    lose the writes in between, and abandoning would lose the replacement."""
    ec2, clock = handler.clients["ec2"], handler.clock
    current = current_volume(ec2, service.lineage)
    if current is None or current["AvailabilityZone"] == replacement["Placement"]["AvailabilityZone"]:
        return
    pending = lineage_snapshots(ec2, service.lineage, states=("pending",))
    completed = lineage_snapshots(ec2, service.lineage)
    if not pending or (completed and completed[0]["StartTime"] >= pending[0]["StartTime"]):
        return
    newest = pending[0]["SnapshotId"]
    beats = {"last": clock.monotonic()}

    def state():
        if clock.monotonic() - beats["last"] >= HEARTBEAT_EVERY:
            lifecycle.heartbeat(handler, hook)
            beats["last"] = clock.monotonic()
        return call(ec2, "describe_snapshots", SnapshotIds=[newest])["Snapshots"][0]["State"]

    try:
        # A snapshot that ends in ``error`` is nothing to wait for: the move then decides on what is complete (an
        # older snapshot within max_data_age, reported as a loss; none: abandoned, launches suspended).
        if (
            wait_until(
                state,
                lambda found: found in ("completed", "error"),
                f"snapshot {newest} to complete",
                SNAPSHOT_WAIT,
                clock,
            )
            == "error"
        ):
            LOG.error("the newest snapshot of %s, %s, failed", service.lineage, newest)
    except WaitTimeout as exc:
        raise Retry(f"the newest snapshot of {service.lineage}, {newest}, is still in progress") from exc


def _forget_launch(handler, instance, done):
    """Delete the steps of the instance's last launch lifecycle; returns ``done`` without them."""
    steps = [step for step in LAUNCH_STEPS if step in done]
    call(
        handler.clients["ec2"],
        "delete_tags",
        Resources=[instance["InstanceId"]],
        Tags=[{"Key": progress.PROGRESS + step} for step in steps],
    )
    return {step: value for step, value in done.items() if step not in steps}


def abandon(handler, hook, service, replacement, error):
    """A launch that can never get the data (no snapshot to restore, data too old, a forked lineage, the volume
    gone...): a new instance would fail the same way, so the group's ``Launch`` process is suspended after this
    first ABANDON (not desired capacity 0: the group keeps its size, and resuming launches exactly what is
    missing). Nothing is lost by waiting: the data stays where it is. Resuming is the operator's explicit step."""
    # Suspended before the ABANDON: the group replaces an abandoned instance at once, and that launch would fail
    # the same way.
    suspended = lifecycle.suspend_launches(handler, hook["AutoScalingGroupName"])
    lifecycle.complete_and_record(handler, hook, "ABANDON", replacement, "abandoned", error.code)
    resume = (
        f"aws autoscaling resume-processes --auto-scaling-group-name {hook['AutoScalingGroupName']} "
        f"--scaling-processes Launch"
    )
    safe = _where_the_data_is(handler, service)
    handler.publish(
        service,
        f"Recovery failed for {service.name}",
        {
            "event": "failed",
            "step": "launch",
            "service": service.name,
            "lineage": service.lineage,
            "instance_id": replacement,
            "error": error.to_dict(),
            "launches_suspended": suspended,
            "safe": safe,
            "resume": resume,
            "summary": f"{service.name}: replacement {replacement} abandoned: {error.message}. {safe.capitalize()}. "
            + (
                f"Launches of {hook['AutoScalingGroupName']} are suspended so that no replacement loop follows; "
                f"fix the cause (restore.yml restores a backup into the group), then `{resume}`"
                if suspended
                else "Launches could not be suspended: the group may try again"
            ),
        },
    )
    handler.metric(service, "RecoveryFailures", 1, "Count")
    return f"abandoned {replacement}: {error.message}" + ("; launches suspended" if suspended else "")


def _where_the_data_is(handler, service):
    """For a failed message: the lineage's current volume (where, in what state) and a newer snapshot that failed."""
    ec2 = handler.clients["ec2"]
    try:
        volume = current_volume(ec2, service.lineage)
        completed, failed = (
            lineage_snapshots(ec2, service.lineage),
            lineage_snapshots(ec2, service.lineage, states=("error",)),
        )
    except (AwsApiError, RecoveryError) as exc:
        return f"the lineage's data was not moved or changed (where it is could not be read: {exc.message})"
    where = (
        f"the data is on {volume['VolumeId']} in {volume['AvailabilityZone']} ({volume['State']}), not moved or changed"
        if volume
        else "the lineage has no volume: its data is only in its snapshots"
    )
    if failed and (not completed or failed[0]["StartTime"] > completed[0]["StartTime"]):
        where += f"; its newest snapshot, {failed[0]['SnapshotId']}, failed (state error)"
    return where
