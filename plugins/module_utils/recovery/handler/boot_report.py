# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replacement's boot report: how a recovery ends.

The instance agent reports once it mounted the data and started the application (or that it refused the data, or
timed out waiting for it). A success ends the recovery with one true message: ``recovered`` or
``recovered-with-loss`` and what was lost (``outcomes.judge``, from where the data came from, ``progress.Origin``,
and the previous holder's steps), the per-phase timeline and the data's age (RPO), and the phases as metrics. A
first start or a reboot (nothing was recovered) is reported as ``started``. A failed boot is a ``failed`` message
at once, with the agent's reason. Each is said once per instance. The agent cannot write EC2 tags, so the control
plane clears ``ec2spot:fresh`` from the volume it formatted.
"""

from __future__ import annotations

import logging

from .. import events
from .. import outcomes
from .. import progress
from .. import tags as t
from ..aws import call
from ..errors import AwsApiError
from . import launch

LOG = logging.getLogger("ec2spot.autorecover.handler")
# The recovery's phases, each ending at a progress step: published as PhaseSeconds{Service, Phase}.
PHASES = (
    ("ready", "old.warned", "new.ready"),
    # From the stop sent (at the warning, or at a make-before-break cut-over); a handler older than the ``stopping``
    # step sent it at the warning.
    ("stop", ("old.stopping", "old.warned"), "old.stopped"),
    ("snapshot", "old.stopped", "old.snapshot"),
    ("release", "old.snapshot", "old.released"),
    ("attach", "old.released", "new.attached"),
    ("address", "new.attached", "new.address"),
    ("hook", "new.attached", "new.continued"),
)


def on_boot_report(handler, event, instance, service):
    """The agent's report about ``instance``: success, or a refused or timed-out boot."""
    # Whatever it says, the agent is done starting: a launch action kept for it (a group behind target groups) ends.
    released = launch.release_start_hold(handler, instance, service, "its agent reported")
    outcome = _report(handler, event, instance, service)
    return outcome + (f"; {released}" if released else "")


def _report(handler, event, instance, service):
    ec2, replacement = handler.clients["ec2"], event.instance_id
    if event.detail.get("status", "ok") != "ok":
        return _boot_failed(handler, event, instance, service)
    initialised = _clear_fresh(ec2, event.detail.get("volume-id"), replacement, service)
    done = progress.read(instance)
    if "reported" in done:
        return f"duplicate: success of {replacement} already reported"
    progress.record_boot(ec2, replacement, event.detail.get("phases"))
    attached = progress.outcome_of(done.get("attached", ""))
    origin = progress.read_outcome(done, "attached")
    if "replaces" not in done and not (origin is not None and origin.restored):
        # The service's first instance (deploy; its launch hook attached the volume) or a reboot: nothing was
        # recovered, but the operator wants to know.
        handler.publish(
            service,
            f"{service.name} started on {replacement}",
            {
                "event": "started",
                "service": service.name,
                "lineage": service.lineage,
                "instance_id": replacement,
                "initialised": initialised,
                "boot": event.detail.get("phases") if isinstance(event.detail.get("phases"), dict) else {},
                "summary": f"{service.name} is up on {replacement}"
                + ("; its new data volume was formatted" if initialised else ""),
            },
        )
        progress.record(ec2, replacement, "reported", handler.clock.now())
        return f"start of {replacement} reported"
    previous_id = progress.outcome_of(done.get("replaces", "")) or None
    previous = handler.describe(previous_id) if previous_id else None
    old_done = progress.read(previous or {})
    timeline = {f"old.{step}": progress.stamp_of(value) for step, value in old_done.items()}
    timeline.update({f"new.{step}": progress.stamp_of(value) for step, value in done.items()})
    phases = event.detail.get("phases") if isinstance(event.detail.get("phases"), dict) else {}
    timeline.update({f"boot.{name}": str(value)[:40] for name, value in list(phases.items())[:20]})
    verdict, losses = outcomes.judge(origin, previous_id, old_done, _backup_set_of(ec2, origin))
    data_age = origin.data_age_seconds if origin else 0.0
    old_warned = old_done.get("warned")
    recovery_seconds = (event.time - progress.time_of(old_warned)).total_seconds() if old_warned else None
    handler.publish(
        service,
        f"{service.name} {verdict.replace('-', ' ')} on {replacement}",
        {
            "event": verdict,
            "service": service.name,
            "lineage": service.lineage,
            "instance_id": replacement,
            "replaced": previous_id,
            "data": attached,
            "data_age_seconds": data_age,
            "losses": losses,
            "recovery_seconds": recovery_seconds,
            "timeline": dict(sorted(timeline.items(), key=lambda item: item[1])),
            "summary": f"{service.name} is back on {replacement}"
            + (f" after {recovery_seconds:.0f}s" if recovery_seconds else "")
            + (f" from {previous_id}" if previous_id else "")
            + f"; data age {data_age:.0f}s"
            + ("".join(f"; LOST: {loss}" for loss in losses) if losses else "; nothing lost"),
        },
    )
    if losses:
        handler.metric(service, "RecoveriesWithLoss", 1, "Count")
    if recovery_seconds is not None:
        handler.metric(service, "RecoverySeconds", recovery_seconds, "Seconds")
    for phase, starts, end in PHASES:
        start = next((key for key in ((starts,) if isinstance(starts, str) else starts) if key in timeline), None)
        if start is not None and end in timeline:
            seconds = (progress.time_of(timeline[end]) - progress.time_of(timeline[start])).total_seconds()
            handler.metric(service, "PhaseSeconds", max(0.0, seconds), "Seconds", phase=phase)
    progress.record(ec2, replacement, "reported", handler.clock.now())
    return f"success of {replacement} reported"


def _backup_set_of(ec2, origin):
    """The backup set of the snapshot ``origin`` restored, or None (a moved volume; a snapshot deleted since)."""
    if origin is None or origin.snapshot_id is None:
        return None
    try:
        snapshot = call(ec2, "describe_snapshots", SnapshotIds=[origin.snapshot_id])["Snapshots"][0]
    except (AwsApiError, IndexError):
        return None
    return t.as_dict(snapshot.get("Tags")).get(t.BACKUP_SET)


def _boot_failed(handler, event, instance, service):
    """The agent refused the data or timed out waiting for it: the operator hears it at once, with the agent's
    reason, what is safe and what to do. Once per instance (``boot-failed``)."""
    ec2, instance_id = handler.clients["ec2"], event.instance_id
    if "boot-failed" in progress.read(instance):
        return f"duplicate: the failed boot of {instance_id} was already reported"
    status, reason = event.detail["status"], events.printable(event.detail.get("reason", "no reason given"), 1500)
    volume = event.detail.get("volume-id") if isinstance(event.detail.get("volume-id"), str) else None
    safe = (
        "the agent wrote nothing to the device it refused and did not start the application"
        if status == "refused"
        else "no data volume was mounted and the application was not started"
    )
    handler.publish(
        service,
        f"Recovery failed for {service.name}: the data was {status} on {instance_id}",
        {
            "event": "failed",
            "step": "boot",
            "status": status,
            "service": service.name,
            "lineage": service.lineage,
            "instance_id": instance_id,
            "volume_id": volume,
            "device": event.detail.get("device"),
            "reason": reason,
            "safe": safe,
            "summary": f"{service.name}: the agent on {instance_id} {status} the data"
            + (f" ({volume})" if volume else "")
            + f": {reason}. {safe.capitalize()}. Read the reason, then restore the "
            f"lineage's current data (lineage_info lists every copy; restore.yml)",
        },
    )
    handler.metric(service, "RecoveryFailures", 1, "Count")
    progress.record(ec2, instance_id, "boot-failed", handler.clock.now(), status)
    return f"failed boot of {instance_id} reported: {status}"


def _clear_fresh(ec2, volume_id, instance_id, service):
    """The agent formatted a brand-new volume: it is no longer blank, so it must never be formatted again.

    The instance has no EC2 write permission, so the control plane clears ``ec2spot:fresh``. Only on the
    volume the report names, attached to the reporting instance, in the service's lineage.
    """
    if not isinstance(volume_id, str) or not volume_id.startswith("vol-"):
        return False
    try:
        volume = call(ec2, "describe_volumes", VolumeIds=[volume_id])["Volumes"][0]
    except (AwsApiError, IndexError):
        LOG.info("boot report names volume %s, which is not there", volume_id[:40])
        return False
    volume_tags = t.as_dict(volume.get("Tags"))
    attached_here = any(a.get("InstanceId") == instance_id for a in volume.get("Attachments", []))
    if (
        volume_tags.get(t.FRESH) != "true"
        or not attached_here
        or not t.holds_lineage_data(volume_tags, service.lineage)
    ):
        return False
    call(ec2, "delete_tags", Resources=[volume_id], Tags=[{"Key": t.FRESH}])
    LOG.info("%s was initialised on %s: cleared %s", volume_id, instance_id, t.FRESH)
    return True
