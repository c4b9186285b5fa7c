# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planned interruptions: AWS Health events and the scheduled events the instance agent sees.

A retirement, a scheduled stop or reboot, a maintenance, a lost volume: AWS announces them days or minutes ahead.
For the holder of a configured lineage: a fresh snapshot at once (once per notice, ``progress.PlannedNotice``),
then the same hand-off as a Spot interruption (``warning.hand_off``) at the event's start less the service's
``planned_lead``: at once when that is past, never after the start. The sweep (``sweep``) hands off when it is due,
and finds the scheduled events no event announced. An agent's report is only a prompt: what is acted on is what EC2
itself lists. A lost volume is reported, never moved: which copy is now the newest is a human's decision.
"""

from __future__ import annotations

from datetime import timedelta

from .. import events
from .. import lineage as lineages
from .. import progress
from .. import tags as t
from ..aws import call
from ..backups import backup_instance
from ..errors import AwsApiError
from ..lineage import snapshots as lineage_snapshots
from . import termination
from .holder import AWAY_STATES, holds_current_data
from .warning import hand_off


def on_health(handler, event):
    """An AWS Health event. EC2 scheduled events name instances; an EBS event names volumes, whose holder is the
    instance concerned. Types this handler does not act on, and closed events, are ignored."""
    if event.code is None:
        return f"ignored: AWS Health {printable_code(event)} is not a planned interruption"
    if event.state == "closed":
        return f"ignored: AWS Health {event.detail.get('eventTypeCode')} is closed"
    if event.code == "volume-lost":
        return _volume_lost(handler, event)
    outcomes = []
    for entity in event.entities:
        instance_id = entity
        if entity.startswith("vol-"):
            instance_id = _holder_of_volume(handler, entity)
            if instance_id is None:
                outcomes.append(f"{entity}: no instance holds it")
                continue
        outcomes.append(f"{instance_id}: {on_planned(handler, instance_id, event.code, event.start, 'AWS Health')}")
    return "; ".join(outcomes) or "ignored: the AWS Health event names no instance or volume"


def printable_code(event):
    return events.printable(event.detail.get("eventTypeCode"), 100)


def _volume_lost(handler, event):
    """``AWS_EBS_VOLUME_LOST``: a volume's data is gone. Nothing is moved automatically: which copy is now the
    lineage's newest (a snapshot, an older volume) is a human's decision, and guessing could bring back stale
    data as current. The alert names the volume, its holder and the newest completed snapshot."""
    ec2, outcomes = handler.clients["ec2"], []
    for volume_id in (e for e in event.entities if e.startswith("vol-")):
        try:
            volume = call(ec2, "describe_volumes", VolumeIds=[volume_id])["Volumes"][0]
        except (AwsApiError, IndexError):
            outcomes.append(f"{volume_id}: not found")
            continue
        tags = t.as_dict(volume.get("Tags"))
        service = handler.config.service_for(tags.get(t.LINEAGE)) if t.GENERATION in tags else None
        if service is None:
            outcomes.append(f"{volume_id}: not a lineage's data")
            continue
        newest = lineage_snapshots(ec2, service.lineage)
        newest_id = newest[0]["SnapshotId"] if newest else None
        handler.publish(
            service,
            f"Data volume {volume_id} of {service.name} is lost",
            {
                "event": "volume-lost",
                "service": service.name,
                "lineage": service.lineage,
                "volume_id": volume_id,
                "holder": _holder_of_volume(handler, volume_id),
                "newest_snapshot": newest_id,
                "summary": f"{service.name}: AWS reports {volume_id} (generation {tags.get(t.GENERATION)}) lost. "
                f"Nothing was moved automatically; restore the lineage from {newest_id or 'a backup'} with restore.yml "
                f"after checking which copy is the newest",
            },
        )
        handler.metric(service, "VolumesLost", 1, "Count")
        outcomes.append(f"{volume_id}: lost; alert sent, nothing moved (restore.yml from {newest_id})")
    return "; ".join(outcomes) or "ignored: the AWS Health event names no volume"


def on_maintenance(handler, event, instance, service):
    """The agent saw a scheduled event in its metadata. Instances may send this event, so it is only a prompt:
    what is acted on is what EC2 itself lists for the instance (DescribeInstanceStatus)."""
    listed = [e for e in scheduled_events(handler, event.instance_id) if e["Code"] == event.code]
    if not listed:
        return f"ignored: EC2 lists no {event.code} for {event.instance_id} (the agent's report is not acted on alone)"
    return on_planned(handler, event.instance_id, event.code, listed[0]["NotBefore"], "the instance's metadata")


def scheduled_events(handler, instance_id):
    """The scheduled events EC2 lists for ``instance_id`` that are still to come (not completed or canceled)."""
    statuses = call(
        handler.clients["ec2"], "describe_instance_status", InstanceIds=[instance_id], IncludeAllInstances=True
    ).get("InstanceStatuses", [])
    return [
        e
        for status in statuses
        for e in status.get("Events", [])
        if e.get("Code") in events.SCHEDULED_EVENT_CODES
        and e.get("NotBefore")
        and not str(e.get("Description", "")).startswith(("[Completed]", "[Canceled]"))
    ]


def _holder_of_volume(handler, volume_id):
    try:
        volume = call(handler.clients["ec2"], "describe_volumes", VolumeIds=[volume_id])["Volumes"][0]
    except (AwsApiError, IndexError):
        return None
    return lineages.holder_id(volume)


def on_planned(handler, instance_id, code, start, via):
    """A planned interruption of ``instance_id`` at ``start`` (retirement, scheduled stop or reboot, maintenance,
    a lost volume). For the holder of a configured lineage: a fresh snapshot at once (once per event), then the
    same hand-off as a Spot interruption at ``start`` less the service's ``planned_lead`` (at once when that is
    past, never after ``start``: the sweep, which runs every few minutes, does it when it is due)."""
    instance = handler.describe(instance_id)
    if instance is None:
        return "ignored: not found"
    service = handler.config.service_for(t.as_dict(instance.get("Tags")).get(t.LINEAGE))
    if service is None:
        return f"ignored: {instance_id} is not a managed instance"
    done = progress.read(instance)
    if "warned" in done:
        return "already handed off"
    ec2 = handler.clients["ec2"]
    if not holds_current_data(ec2, service, instance):
        return f"ignored: not the holder of the current generation of {service.lineage}"
    state = instance["State"]["Name"]
    if state in ("stopping", "stopped") and "paused" in done:
        return "ignored: stopped by a Spot interruption with its data; handled when EC2 starts it again"
    if state in AWAY_STATES:
        return termination.protect(
            handler, instance_id, instance, service, reason=f"{code} was announced ({via}) and it is {state}"
        )
    now = handler.clock.now()
    handoff_at = start - timedelta(seconds=service.planned_lead)
    recorded = progress.read_outcome(done, "planned")
    if recorded is None or not recorded.is_notice(code, start):
        backup = backup_instance(
            ec2,
            instance_id,
            f"{service.name}-planned-{start:%Y%m%d%H%M}",
            extra_tags={t.LINEAGE: service.lineage},
            clock=handler.clock,
        )
        progress.record(
            ec2, instance_id, "planned", now, progress.PlannedNotice(code, start, handoff_at, backup.backup_set)
        )
        handler.publish(
            service,
            f"Planned interruption of {instance_id}: {code}",
            {
                "event": "planned-interruption",
                "service": service.name,
                "lineage": service.lineage,
                "instance_id": instance_id,
                "code": code,
                "via": via,
                "starts_at": start.isoformat(),
                "handoff_at": max(handoff_at, now).isoformat(),
                "snapshot": backup.backup_set,
                "summary": f"{service.name}: {code} of {instance_id} at {start:%Y-%m-%d %H:%M}Z ({via}); snapshot "
                f"{backup.backup_set} taken now; the data moves to a replacement at "
                f"{max(handoff_at, now):%Y-%m-%d %H:%M}Z",
            },
        )
        handler.metric(service, "PlannedInterruptions", 1, "Count")
    if now < handoff_at:
        return f"{code} at {start:%Y-%m-%d %H:%M}Z: snapshot taken; hand-off due at {handoff_at:%Y-%m-%d %H:%M}Z"
    done["warned"] = progress.record(ec2, instance_id, "warned", now, f"planned {code}")
    return f"{code}: handed off before {start:%H:%M:%S}Z, " + hand_off(handler, instance_id, service, start, done)
