# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sweep: the backstop AWS's best-effort delivery needs, run on a schedule every few minutes.

For each configured lineage, from one description of its instances: the scheduled events EC2 lists for them (each
planned once, and handed off when due, ``planned``); a holder that is stopped or gone although no event announced
it (the missed-warning path, once, ``termination.protect``); a recovery that did not end within the service's
``recovery_deadline`` (``failed``, said once: silence is never the outcome); and instances of the lineage in a group
that is not the service's (a second writer waiting to happen, reported once). Progress tags make it idempotent with
late events.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from .. import events
from .. import lineage as lineages
from .. import progress
from .. import tags as t
from ..aws import call, paginate
from ..errors import AwsApiError, RecoveryError
from ..lineage import current_volume
from . import launch, steering, termination
from .holder import AWAY_STATES
from .planned import on_planned, scheduled_events

LOG = logging.getLogger("ec2spot.autorecover.handler")


def on_sweep(handler, event):
    """One sweep over every configured lineage; returns what it found."""
    ec2, outcomes = handler.clients["ec2"], []
    for service in handler.config.services:
        reservations = paginate(
            ec2,
            "describe_instances",
            "Reservations",
            Filters=[
                {"Name": f"tag:{t.LINEAGE}", "Values": [service.lineage]},
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "stopping", "stopped", "shutting-down", "terminated"],
                },
            ],
        )
        instances = [i for reservation in reservations for i in reservation["Instances"]]
        # The interrupted holder keeps the record of its pool's avoidance, terminated too (EC2 describes a terminated
        # instance for about an hour; avoid_interrupted_pool is at most 30 minutes).
        for instance in instances if service.group else []:
            try:
                avoidance = steering.end_avoidance(handler, instance, service)
            except AwsApiError as exc:  # the next sweep tries again
                avoidance = f"{instance['InstanceId']}: could not end its pool avoidance: {exc.message}"
            if avoidance:
                outcomes.append(avoidance)
        outcomes += _overdue_recoveries(handler, service, instances)
        for instance in (i for i in instances if i["State"]["Name"] != "terminated"):
            start_hold = launch.sweep_start_hold(handler, instance, service)
            if start_hold:
                outcomes.append(start_hold)
            for scheduled in scheduled_events(handler, instance["InstanceId"]):
                outcome = on_planned(
                    handler, instance["InstanceId"], scheduled["Code"], scheduled["NotBefore"], "the sweep"
                )
                outcomes.append(f"{instance['InstanceId']} {scheduled['Code']}: {outcome}")
        foreign = lineages.foreign_groups(lineages.groups_in(instances), service.group)
        if foreign:
            outcomes.append(report_misconfiguration(handler, service, foreign))
        holder = _unannounced_loss(handler, service)
        if holder:
            outcomes.append(
                f"{holder['InstanceId']}: "
                + termination.protect(
                    handler,
                    holder["InstanceId"],
                    holder,
                    service,
                    reason=f"the sweep found it {holder['State']['Name']} and no interruption of it was handled",
                )
            )
    handler.metric(handler.config.services[0], "Sweeps", 1, "Count")
    return "sweep: " + ("; ".join(outcomes) if outcomes else "nothing unannounced")


def report_misconfiguration(handler, service, foreign):
    """Instances of the service's lineage in a group that is not the service's (``foreign``: ``{group: [instance
    ids]}``): a second writer waiting to happen. Said once per instance (``misconfigured``); nothing is done to them
    (they are not this control plane's). The dispatch reports the same for a lifecycle action of such a group."""
    ec2, fresh = handler.clients["ec2"], {}
    for group, instance_ids in foreign.items():
        for instance_id in instance_ids:
            instance = handler.describe(instance_id)
            if instance is not None and "misconfigured" not in progress.read(instance):
                fresh.setdefault(group, []).append(instance_id)
    if not fresh:
        return f"misconfiguration of {service.lineage} already reported"
    named = "; ".join(f"group {group} ({', '.join(ids)})" for group, ids in fresh.items())
    handler.publish(
        service,
        f"Misconfiguration: lineage {service.lineage} has instances in another group",
        {
            "event": "failed",
            "step": "configuration",
            "service": service.name,
            "lineage": service.lineage,
            "group": service.group,
            "foreign_groups": fresh,
            "summary": f"{service.name}: instances of lineage {service.lineage} are in {named}, not only in "
            f"{service.group or 'no group'}: one lineage has one writer. Their events are not acted on; remove "
            f"the lineage's tag from that group's launch template or delete the group (deploy.yml refuses "
            f"until then)",
        },
    )
    handler.metric(service, "Misconfigurations", 1, "Count")
    for ids in fresh.values():
        for instance_id in ids:
            progress.record(ec2, instance_id, "misconfigured", handler.clock.now(), service.group or "none")
    return f"misconfiguration reported: lineage {service.lineage} in {named}"


def _overdue_recoveries(handler, service, instances):
    """A recovery that did not end within the service's ``recovery_deadline`` is a ``failed`` one, said once: a
    replacement that got the data but sent no boot report, or a handed-off holder whose data no replacement
    took. Silence is never the outcome."""
    ec2, now, outcomes = handler.clients["ec2"], handler.clock.now(), []
    limit = timedelta(seconds=service.recovery_deadline)
    # The instances whose data a replacement took (its "replaces" step names them), and the abandoned launches:
    # each already ended an interruption with its own failed message.
    steps = {i["InstanceId"]: progress.read(i) for i in instances}
    replaced = {
        progress.outcome_of(done["replaces"]) for done in steps.values() if {"replaces", "attached"} <= set(done)
    }
    abandons = [progress.time_of(done["abandoned"]) for done in steps.values() if "abandoned" in done]
    for instance_id, done in steps.items():
        if "overdue" in done:
            continue
        if (
            "continued" in done
            and not {"reported", "boot-failed"} & set(done)
            and now - progress.time_of(done["continued"]) > limit
        ):
            why = (
                f"no boot report from {instance_id} within {service.recovery_deadline} s of getting the data "
                f"({progress.outcome_of(done.get('attached', ''))})"
            )
            safe = f"the data is attached to {instance_id}; its agent never said it mounted it"
        elif (
            "warned" in done
            and instance_id not in replaced
            and now - progress.time_of(done["warned"]) > limit
            and not any(when >= progress.time_of(done["warned"]) for when in abandons)
        ):
            why = f"no replacement took the data within {service.recovery_deadline} s of {instance_id}'s interruption"
            failures = _failed_launches(handler, service, progress.time_of(done["warned"]))
            if failures:
                why += f": the group's launches failed {len(failures)} times, last: {failures[0]}"
            interruption = progress.read_outcome(done, "snapshot")
            safe = (
                f"the data is on {progress.outcome_of(done.get('released', '')) or 'its volume'} and in the "
                f"snapshot set {interruption.backup_set if interruption else 'taken then'}"
            )
        else:
            continue
        handler.publish(
            service,
            f"Recovery of {service.name} did not finish",
            {
                "event": "failed",
                "step": "deadline",
                "service": service.name,
                "lineage": service.lineage,
                "instance_id": instance_id,
                "reason": why,
                "safe": safe,
                "summary": f"{service.name}: {why}. {safe.capitalize()}. Look at the group's activities and the "
                f"instance's agent log (journalctl -u ec2spot-mount); restore.yml restores the data onto a new "
                f"instance",
            },
        )
        handler.metric(service, "RecoveryFailures", 1, "Count")
        try:
            progress.record(ec2, instance_id, "overdue", now)
        except AwsApiError as exc:
            LOG.info("could not mark %s overdue: %s", instance_id, exc.message)
        outcomes.append(f"{instance_id}: failed: {why}")
    return outcomes


def _failed_launches(handler, service, since):
    """The status messages of the group's failed launches since ``since``, newest first (Auto Scaling keeps six
    weeks of activities; one page of the newest is enough to say why no replacement came)."""
    if not service.group:
        return []
    try:
        activities = call(
            handler.clients["autoscaling"],
            "describe_scaling_activities",
            AutoScalingGroupName=service.group,
            MaxRecords=50,
        ).get("Activities", [])
    except AwsApiError as exc:
        LOG.warning("could not read the activities of %s: %s", service.group, exc.message)
        return []
    return [
        events.printable(a.get("StatusMessage") or a.get("Description", ""), 300)
        for a in activities
        if a.get("StatusCode") == "Failed" and a.get("StartTime") and a["StartTime"] >= since
    ]


def _unannounced_loss(handler, service):
    """The lineage's holder when it is stopped or gone and nothing handled it yet (no warning, protection,
    pause or planned hand-off recorded), else None."""
    ec2 = handler.clients["ec2"]
    try:
        volume = current_volume(ec2, service.lineage)
    except RecoveryError:
        return None
    if volume is None:
        return None
    holder_id = lineages.holder_id(volume)
    holder = handler.describe(holder_id) if holder_id else None
    if holder is None or holder["State"]["Name"] not in AWAY_STATES:
        return None
    done = progress.read(holder)
    if {"warned", "protected", "paused"} & set(done):
        return None
    return holder
