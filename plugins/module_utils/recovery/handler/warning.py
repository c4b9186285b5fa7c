# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Spot interruption warning, and the hand-off of the data it starts.

On a ``terminate`` warning for the holder of a lineage's data: publish the warning; mark the instance Unhealthy in
its group so the replacement starts now; stop the application through SSM within the notice (``notice``), then
``sync`` and unmount the data; snapshot the data volumes as one consistent set (and start an AMI when configured);
release the data volume **early**, as soon as the application is known stopped, so the replacement can take it
before the old instance dies. A failed or late stop still gets its snapshot, recorded crash-consistent, and the
volume stays where it is (the fence). A ``stop`` or ``hibernate`` warning keeps the instance and its data
(``pause``); a warning for an instance already going away gets the protective steps still possible
(``termination.protect``).

The hand-off is also what a planned interruption does when it is due (``planned``). Each step is recorded
(``progress``) and skipped when present, so a redelivered warning resumes where the last one stopped.
"""

from __future__ import annotations

from .. import progress
from .. import tags as t
from ..aws import call
from ..backups import backup_instance
from ..errors import AwsApiError
from ..instances import describe_instance
from ..volumes import attached_volumes, release_volume
from ..config import MAKE_BEFORE_BREAK
from . import cutover, pause, termination
from .holder import AWAY_STATES, holds_current_data, not_holder
from .notice import NOTICE_LEAD, stop_application


def on_warning(handler, event, instance, service):
    """A Spot interruption warning for an instance of ``service``."""
    ec2, instance_id = handler.clients["ec2"], event.instance_id
    deadline = event.time + NOTICE_LEAD
    done = progress.read(instance)
    state = instance["State"]["Name"]
    if "warned" not in done and not holds_current_data(ec2, service, instance):
        return not_holder(event, service)
    if "warned" not in done and state in AWAY_STATES:
        # Too late to stop anything: nothing answers SSM, the group has let it go. The missed-warning path, once.
        return f"warning for {instance_id}, already {state}: " + termination.protect(
            handler, instance_id, instance, service, reason=f"the interruption warning came when it was already {state}"
        )
    action = event.detail.get("instance-action", "terminate")
    if action in ("stop", "hibernate"):
        return pause.on_pause_warning(handler, event, instance, service, action, deadline)
    if "warned" not in done:
        handler.publish(
            service,
            f"Spot interruption warning for {instance_id}",
            {
                "event": "interruption-warning",
                "service": service.name,
                "lineage": service.lineage,
                "instance_id": instance_id,
                "interruption_at": deadline.isoformat(),
                "summary": f"{service.name}: {instance_id} will be interrupted at {deadline:%H:%M:%S}Z; "
                "recovery started",
            },
        )
        done["warned"] = progress.record(ec2, instance_id, "warned", handler.clock.now())
        handler.metric(service, "SpotInterruptions", 1, "Count")
    if service.cutover == MAKE_BEFORE_BREAK and ("armed" in done or "stopped" not in done):
        # Make-before-break: the application keeps serving until the replacement is up (cutover). A warning handled
        # before this setting was on, and already stopped, finishes the way it began.
        return f"warning handled for {instance_id}: " + cutover.arm(handler, event, instance, service, done)
    outcome = hand_off(handler, instance_id, service, deadline, done)
    return f"warning handled for {instance_id}: {outcome}"


def mark_unhealthy(handler, instance_id, service, done):
    """Unhealthy in its group, once: the group launches the replacement now (the fleet's launch-before-terminate
    maintenance policy keeps this instance until the replacement is in service)."""
    ec2, clock = handler.clients["ec2"], handler.clock
    if not service.group or "unhealthy" in done:
        return
    try:
        call(
            handler.clients["autoscaling"],
            "set_instance_health",
            InstanceId=instance_id,
            HealthStatus="Unhealthy",
            ShouldRespectGracePeriod=False,
        )
        done["unhealthy"] = progress.record(ec2, instance_id, "unhealthy", clock.now())
    except AwsApiError as exc:  # not (or no longer) in the group: the warning path goes on
        done["unhealthy"] = progress.record(ec2, instance_id, "unhealthy", clock.now(), f"skipped: {exc.aws_code}")


def hand_off(handler, instance_id, service, deadline, done):
    """The terminate hand-off, each step once (``done``: the instance's progress, updated): Unhealthy (the group
    starts the replacement now), the application stopped before ``deadline``, one consistent snapshot set, the data
    volume released early."""
    ec2, clock = handler.clients["ec2"], handler.clock
    mark_unhealthy(handler, instance_id, service, done)
    if "stopped" not in done:
        # When the service stops serving: the drill's downtime starts here, not when the stop is confirmed.
        if "stopping" not in done:
            done["stopping"] = progress.record(ec2, instance_id, "stopping", clock.now())
        done["stopped"] = progress.record(
            ec2, instance_id, "stopped", clock.now(), stop_application(handler, instance_id, service, deadline)
        )
    stop = progress.outcome_of(done["stopped"])
    app_stopped = stop == "ok"
    if "snapshot" not in done:
        backup = backup_instance(
            ec2,
            instance_id,
            f"{service.name}-interruption",
            create_image=service.create_image,
            extra_tags={t.LINEAGE: service.lineage},
            clock=clock,
        )
        done["snapshot"] = progress.record(
            ec2, instance_id, "snapshot", clock.now(), progress.SnapshotSet(backup.backup_set, consistent=app_stopped)
        )
        if not app_stopped:
            handler.publish(
                service,
                f"Crash-consistent snapshot of {instance_id}",
                {
                    "event": "crash-consistent-snapshot",
                    "service": service.name,
                    "instance_id": instance_id,
                    "stop": done["stopped"],
                    "summary": f"{service.name}: the application on {instance_id} was not confirmed stopped "
                    f"({stop}); its snapshot is crash-consistent and the volume stays attached until the instance is "
                    f"gone",
                },
            )
    if app_stopped and "released" not in done:
        holder = describe_instance(ec2, instance_id)
        released = [
            volume
            for volume in attached_volumes(ec2, holder)
            if t.holds_lineage_data(t.as_dict(volume.get("Tags")), service.lineage)
        ]
        for volume in released:
            release_volume(ec2, volume, holder, app_stopped=True, force=False, timeout=60, clock=clock)
        done["released"] = progress.record(
            ec2, instance_id, "released", clock.now(), " ".join(v["VolumeId"] for v in released) or "none"
        )
    handler.metric(service, "WarningHandled", 1, "Count")
    return f"stop {stop}"
