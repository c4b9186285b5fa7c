# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The interruption handler: EventBridge -> SQS -> this function (Lambda), on the recovery core.

``lambda_handler`` receives SQS batches and reports partial batch failures. Each message
is one EventBridge event (``events.py`` validates it). For an instance of a configured
service (``config.py``):

* **Spot interruption warning**: publish the warning; mark the instance Unhealthy in its
  group so the replacement starts now; stop the application through SSM Run Command with a
  deadline derived from the notice (the event's time plus AWS's two minutes, not 120 s from
  whenever this runs), then ``sync`` and unmount the data; snapshot the data volumes as one
  consistent set (and start an AMI when configured); release the data volume **early**, as
  soon as the application is known stopped, so the replacement can take it before the old
  instance dies. A failed or late stop still gets its snapshot, marked crash-consistent,
  and the volume stays where it is (the fence).
* **Launch lifecycle action** for a replacement: move the lineage's data (same zone: the very
  volume; another zone: restored from the newest completed snapshot), move the Elastic IP,
  complete the action with CONTINUE. A move that cannot happen yet (the old holder still
  running and not known stopped) heartbeats the hook and retries; one that can never happen
  (no snapshot, data too old) ABANDONs and alerts.
* **Terminate lifecycle action / state change** without a prior warning (AWS delivers
  warnings best effort): take the protective snapshot while the instance still exists,
  alert, and complete the hook.
* **Rebalance recommendation**: prepare, don't churn: a fresh snapshot (configurable).
* **Boot report** from the replacement's agent: publish the success message with the
  per-phase timeline and the data age (RPO).
* **Standby failover** (a service with a ``standby`` section, ``standby.py``): the primary stopping,
  stopped or going away, or one of its alarms in ``ALARM``: start the standby, wait for its status
  checks, move the Elastic IP and (fenced, same zone) the data volume, report. Once per primary until
  the explicit failback: never flapping.
* **CPU watchdog** (a ``watchdog`` section, ``watchdog.py``): the CPU alarm in ``ALARM``: reboot, wait
  for the status checks, restart the application through SSM (or, in ``alarm-reboot`` mode, report the
  alarm's own reboot), within a cooldown and a cap per hour kept on the instance's tags.

Every step is recorded in a progress tag (``progress.py``) and skipped when present, so
duplicate, late, out-of-order and redelivered events do nothing twice, and a crash resumes.
Invalid messages are logged, counted and dropped (never retried); transient failures are
reported as batch item failures and come back after the queue's visibility timeout (then
to the dead-letter queue).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shlex
from datetime import timedelta

from . import config as handler_config
from . import events
from . import outcomes
from . import progress
from . import standby as standbys
from . import tags as t
from . import watchdog as watchdogs
from .addresses import find_address, move_address
from .aws import SYSTEM_CLOCK, call, make_client, paginate, wait_until
from .backups import backup_instance
from .commands import run_shell
from .retention import apply_retention
from .errors import AwsApiError, Conflict, FenceViolation, NotFound, RecoveryError, WaitTimeout
from .instances import GONE_STATES, describe_instance
from .generations import rank_copies
from . import lineage as lineages
from .lineage import current_volume
from .lineage import snapshots as lineage_snapshots
from .lineage import volumes as lineage_volumes
from .volumes import attached_volumes, move_lineage_volume, release_volume, staged_from

LOG = logging.getLogger("ec2spot.autorecover.handler")
NOTICE_LEAD = timedelta(seconds=120)   # AWS: the warning comes two minutes before the interruption
RESERVE_AFTER_STOP = 15                # seconds kept after the stop for the snapshot call and the detach
MIN_STOP_SECONDS = 5
# Of a notice's two minutes, what the hand-off itself needs once a retry starts it (the stop, then the snapshot call
# and the detach): retries inside a notice are spread over what is left before it.
HANDOFF_RESERVE = 45
SNAPSHOT_WAIT = 600                    # seconds a launch action waits in-process for the interruption snapshot
HEARTBEAT_EVERY = 60                   # seconds between lifecycle heartbeats while waiting
RETRY_AFTER = 30                       # seconds before a first retry is visible again (not the queue's long timeout)
RETRY_CAP = 900                        # later retries back off exponentially up to this, with jitter
# The recovery's phases, each ending at a progress step: published as PhaseSeconds{Service, Phase}.
PHASES = (("stop", "old.warned", "old.stopped"), ("snapshot", "old.stopped", "old.snapshot"),
          ("release", "old.snapshot", "old.released"), ("attach", "old.released", "new.attached"),
          ("address", "new.attached", "new.address"), ("hook", "new.attached", "new.continued"))


class Retry(RecoveryError):
    """Not possible yet (the old holder has not let go, AWS is throttling): redeliver later."""

    code = "Retry"


class Clients:
    """boto3 clients built on first use, with the core's retry configuration."""

    def __init__(self, factory=make_client):
        self._factory = factory
        self._clients = {}

    def __getitem__(self, service):
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]


class Handler:
    def __init__(self, config, clients, clock=SYSTEM_CLOCK, move_timeout=600, account=None, region=None):
        """``account`` and ``region`` are the function's own (the Lambda entry point reads them from its context);
        unset, they are asked of STS and the EC2 client once: an event is never trusted by default."""
        self.config = config
        self.clients = clients
        self.clock = clock
        self.move_timeout = move_timeout
        self._identity = (account, region) if account and region else None

    @property
    def identity(self):
        if self._identity is None:
            account = call(self.clients["sts"], "get_caller_identity")["Account"]
            self._identity = (account, self.clients["ec2"].meta.region_name)
        return self._identity

    # ---- dispatch -----------------------------------------------------------------------
    def handle(self, body):
        """Act on one message body; returns a short outcome for the log."""
        account, region = self.identity
        event = events.parse(body, account=account, region=region)
        if event.kind == events.SCHEDULED_BACKUP:
            service = self.config.service_for(event.detail["lineage"])
            if service is None:
                return f"ignored: lineage {event.detail['lineage']} is not managed"
            return self.on_scheduled_backup(event, service)
        if event.kind == events.HEALTH:
            return self.on_health(event)
        if event.kind == events.SWEEP:
            return self.on_sweep(event)
        if event.kind in (events.LAUNCH_ACTION, events.TERMINATE_ACTION):
            service = next((s for s in self.config.services if s.group and s.group == event.group), None)
            if service is None:
                instance = self._describe(event.instance_id)
                owner = self.config.service_for(t.as_dict((instance or {}).get("Tags")).get(t.LINEAGE))
                if owner is None:
                    return f"ignored: group {event.group} is not managed"
                # Not ours to complete: its default result applies. But a second writer must be named.
                return self._misconfigured(owner, {event.group: [event.instance_id]})
        instance = self._describe(event.instance_id)
        if event.kind not in (events.LAUNCH_ACTION, events.TERMINATE_ACTION):
            service = self.config.service_for(t.as_dict(instance.get("Tags")).get(t.LINEAGE)) if instance else None
            if service is None:
                return f"ignored: {event.instance_id} is not a managed instance"
        action = {
            events.SPOT_WARNING: self.on_warning,
            events.REBALANCE: self.on_rebalance,
            events.LAUNCH_ACTION: self.on_launch,
            events.TERMINATE_ACTION: self.on_terminate,
            events.STATE_CHANGE: self.on_state_change,
            events.BOOT_REPORT: self.on_boot_report,
            events.ALARM: self.on_alarm,
            events.MAINTENANCE: self.on_maintenance,
        }[event.kind]
        return action(event, instance, service)

    def _describe(self, instance_id):
        try:
            return describe_instance(self.clients["ec2"], instance_id)
        except NotFound:
            return None

    # ---- who holds the data -------------------------------------------------------------------
    def holds_current_data(self, service, instance):
        """Whether ``instance`` holds the lineage's current data: the current volume is attached to it, or it is
        the holder the volume's tags record (released early, or mid-move). Being tagged with the lineage is not
        holding its data: the data may have moved to a newer generation on another instance. When the lineage
        forked or a generation is malformed, any of its top copies attached to the instance makes it a holder
        (its application may be writing to it: protecting that is never wrong)."""
        ec2, instance_id = self.clients["ec2"], instance["InstanceId"]
        candidates = lineage_volumes(ec2, service.lineage)
        verdict, detail = rank_copies([(v["VolumeId"], t.as_dict(v.get("Tags")).get(t.GENERATION)) for v in candidates])
        if verdict == "none":
            return False
        if verdict == "current":
            chosen = [v for v in candidates if v["VolumeId"] == detail[0]]
        else:
            chosen = candidates if verdict == "malformed" else [v for v in candidates if v["VolumeId"] in detail[1]]
        return any(any(a.get("InstanceId") == instance_id and a.get("State") in ("attaching", "attached", "detaching")
                       for a in v.get("Attachments", [])) or t.as_dict(v.get("Tags")).get(t.HOLDER) == instance_id
                   for v in chosen)

    def _not_holder(self, event, service):
        return (f"ignored: {event.instance_id} is not the holder of the current generation of {service.lineage} "
                f"(it carries the lineage's tag, but its current data is elsewhere)")

    # ---- Spot interruption warning ----------------------------------------------------------
    def on_warning(self, event, instance, service):
        ec2, instance_id = self.clients["ec2"], event.instance_id
        deadline = event.time + NOTICE_LEAD
        done = progress.read(instance)
        state = instance["State"]["Name"]
        if "warned" not in done and not self.holds_current_data(service, instance):
            return self._not_holder(event, service)
        if "warned" not in done and state in AWAY_STATES:
            # Too late to stop anything: nothing answers SSM, the group has let it go. The missed-warning path, once.
            return f"warning for {instance_id}, already {state}: " + self._protect(
                instance_id, instance, service, reason=f"the interruption warning came when it was already {state}")
        action = event.detail.get("instance-action", "terminate")
        if action in ("stop", "hibernate"):
            return self.on_pause_warning(event, instance, service, action, deadline)
        if "warned" not in done:
            self.publish(service, f"Spot interruption warning for {instance_id}", {
                "event": "interruption-warning", "service": service.name, "lineage": service.lineage,
                "instance_id": instance_id, "interruption_at": deadline.isoformat(),
                "summary": f"{service.name}: {instance_id} will be interrupted at {deadline:%H:%M:%S}Z; recovery started"})
            done["warned"] = progress.record(ec2, instance_id, "warned", self.clock.now())
            self.metric(service, "SpotInterruptions", 1, "Count")
        outcome = self._hand_off(instance_id, service, deadline, done)
        return f"warning handled for {instance_id}: {outcome}"

    def _hand_off(self, instance_id, service, deadline, done):
        """The terminate hand-off, each step once (progress): Unhealthy (the group starts the replacement now), the
        application stopped before ``deadline``, one consistent snapshot set, the data volume released early."""
        ec2 = self.clients["ec2"]
        if service.group and "unhealthy" not in done:
            try:
                call(self.clients["autoscaling"], "set_instance_health", InstanceId=instance_id, HealthStatus="Unhealthy",
                     ShouldRespectGracePeriod=False)
                done["unhealthy"] = progress.record(ec2, instance_id, "unhealthy", self.clock.now())
            except AwsApiError as exc:  # not (or no longer) in the group: the warning path goes on
                done["unhealthy"] = progress.record(ec2, instance_id, "unhealthy", self.clock.now(), f"skipped: {exc.aws_code}")
        if "stopped" not in done:
            done["stopped"] = progress.record(ec2, instance_id, "stopped", self.clock.now(),
                                              self.stop_application(instance_id, service, deadline))
        app_stopped = progress.outcome_of(done["stopped"]) == "ok"
        if "snapshot" not in done:
            backup = backup_instance(ec2, instance_id, f"{service.name}-interruption", create_image=service.create_image,
                                     extra_tags={t.LINEAGE: service.lineage}, clock=self.clock)
            consistency = "consistent" if app_stopped else "crash-consistent"
            done["snapshot"] = progress.record(ec2, instance_id, "snapshot", self.clock.now(), f"{backup.backup_set} {consistency}")
            if not app_stopped:
                self.publish(service, f"Crash-consistent snapshot of {instance_id}", {
                    "event": "crash-consistent-snapshot", "service": service.name, "instance_id": instance_id,
                    "stop": done["stopped"], "summary": f"{service.name}: the application on {instance_id} was not "
                    f"confirmed stopped ({progress.outcome_of(done['stopped'])}); its snapshot is crash-consistent and "
                    f"the volume stays attached until the instance is gone"})
        if app_stopped and "released" not in done:
            holder = describe_instance(ec2, instance_id)
            released = [volume for volume in attached_volumes(ec2, holder)
                        if t.holds_lineage_data(t.as_dict(volume.get("Tags")), service.lineage)]
            for volume in released:
                release_volume(ec2, volume, holder, app_stopped=True, force=False, timeout=60, clock=self.clock)
            done["released"] = progress.record(ec2, instance_id, "released", self.clock.now(),
                                               " ".join(v["VolumeId"] for v in released) or "none")
        self.metric(service, "WarningHandled", 1, "Count")
        return f"stop {progress.outcome_of(done['stopped'])}"

    # ---- planned interruptions: AWS Health, the agent's scheduled events, the sweep ---------------------
    def on_health(self, event):
        """An AWS Health event. EC2 scheduled events name instances; an EBS event names volumes, whose holder is the
        instance concerned. Types this handler does not act on, and closed events, are ignored."""
        if event.code is None:
            return f"ignored: AWS Health {printable_code(event)} is not a planned interruption"
        if event.state == "closed":
            return f"ignored: AWS Health {event.detail.get('eventTypeCode')} is closed"
        if event.code == "volume-lost":
            return self._volume_lost(event)
        outcomes = []
        for entity in event.entities:
            instance_id = entity
            if entity.startswith("vol-"):
                instance_id = self._holder_of_volume(entity)
                if instance_id is None:
                    outcomes.append(f"{entity}: no instance holds it")
                    continue
            outcomes.append(f"{instance_id}: {self.on_planned(instance_id, event.code, event.start, 'AWS Health')}")
        return "; ".join(outcomes) or "ignored: the AWS Health event names no instance or volume"

    def _volume_lost(self, event):
        """``AWS_EBS_VOLUME_LOST``: a volume's data is gone. Nothing is moved automatically: which copy is now the
        lineage's newest (a snapshot, an older volume) is a human's decision, and guessing could bring back stale
        data as current. The alert names the volume, its holder and the newest completed snapshot."""
        outcomes = []
        for volume_id in (e for e in event.entities if e.startswith("vol-")):
            try:
                volume = call(self.clients["ec2"], "describe_volumes", VolumeIds=[volume_id])["Volumes"][0]
            except (AwsApiError, IndexError):
                outcomes.append(f"{volume_id}: not found")
                continue
            tags = t.as_dict(volume.get("Tags"))
            service = self.config.service_for(tags.get(t.LINEAGE)) if t.GENERATION in tags else None
            if service is None:
                outcomes.append(f"{volume_id}: not a lineage's data")
                continue
            newest = lineage_snapshots(self.clients["ec2"], service.lineage)
            newest_id = newest[0]["SnapshotId"] if newest else None
            self.publish(service, f"Data volume {volume_id} of {service.name} is lost", {
                "event": "volume-lost", "service": service.name, "lineage": service.lineage, "volume_id": volume_id,
                "holder": self._holder_of_volume(volume_id), "newest_snapshot": newest_id,
                "summary": f"{service.name}: AWS reports {volume_id} (generation {tags.get(t.GENERATION)}) lost. Nothing "
                           f"was moved automatically; restore the lineage from {newest_id or 'a backup'} with restore.yml "
                           f"after checking which copy is the newest"})
            self.metric(service, "VolumesLost", 1, "Count")
            outcomes.append(f"{volume_id}: lost; alert sent, nothing moved (restore.yml from {newest_id})")
        return "; ".join(outcomes) or "ignored: the AWS Health event names no volume"

    def on_maintenance(self, event, instance, service):
        """The agent saw a scheduled event in its metadata. Instances may send this event, so it is only a prompt:
        what is acted on is what EC2 itself lists for the instance (DescribeInstanceStatus)."""
        listed = [e for e in self._scheduled_events(event.instance_id) if e["Code"] == event.code]
        if not listed:
            return f"ignored: EC2 lists no {event.code} for {event.instance_id} (the agent's report is not acted on alone)"
        return self.on_planned(event.instance_id, event.code, listed[0]["NotBefore"], "the instance's metadata")

    def _scheduled_events(self, instance_id):
        statuses = call(self.clients["ec2"], "describe_instance_status", InstanceIds=[instance_id],
                        IncludeAllInstances=True).get("InstanceStatuses", [])
        return [e for status in statuses for e in status.get("Events", [])
                if e.get("Code") in events.SCHEDULED_EVENT_CODES and e.get("NotBefore")
                and not str(e.get("Description", "")).startswith(("[Completed]", "[Canceled]"))]

    def _holder_of_volume(self, volume_id):
        try:
            volume = call(self.clients["ec2"], "describe_volumes", VolumeIds=[volume_id])["Volumes"][0]
        except (AwsApiError, IndexError):
            return None
        return lineages.holder_id(volume)

    def on_planned(self, instance_id, code, start, via):
        """A planned interruption of ``instance_id`` at ``start`` (retirement, scheduled stop or reboot, maintenance,
        a lost volume). For the holder of a configured lineage: a fresh snapshot at once (once per event), then the
        same hand-off as a Spot interruption at ``start`` less the service's ``planned_lead`` (at once when that is
        past, never after ``start``: the sweep, which runs every few minutes, does it when it is due)."""
        instance = self._describe(instance_id)
        if instance is None:
            return "ignored: not found"
        service = self.config.service_for(t.as_dict(instance.get("Tags")).get(t.LINEAGE))
        if service is None:
            return f"ignored: {instance_id} is not a managed instance"
        done = progress.read(instance)
        if "warned" in done:
            return "already handed off"
        if not self.holds_current_data(service, instance):
            return f"ignored: not the holder of the current generation of {service.lineage}"
        state = instance["State"]["Name"]
        if state in ("stopping", "stopped") and "paused" in done:
            return "ignored: stopped by a Spot interruption with its data; handled when EC2 starts it again"
        if state in AWAY_STATES:
            return self._protect(instance_id, instance, service, reason=f"{code} was announced ({via}) and it is {state}")
        ec2, now = self.clients["ec2"], self.clock.now()
        handoff_at = start - timedelta(seconds=service.planned_lead)
        notice = f"{code}@{start:%Y%m%dT%H%M%SZ}"
        recorded = progress.outcome_of(done.get("planned", ""))
        if not recorded.startswith(notice + " "):
            backup = backup_instance(ec2, instance_id, f"{service.name}-planned-{start:%Y%m%d%H%M}",
                                     extra_tags={t.LINEAGE: service.lineage}, clock=self.clock)
            progress.record(ec2, instance_id, "planned", now,
                            f"{notice} handoff={handoff_at:%Y%m%dT%H%M%SZ} snapshot={backup.backup_set}")
            self.publish(service, f"Planned interruption of {instance_id}: {code}", {
                "event": "planned-interruption", "service": service.name, "lineage": service.lineage,
                "instance_id": instance_id, "code": code, "via": via, "starts_at": start.isoformat(),
                "handoff_at": max(handoff_at, now).isoformat(), "snapshot": backup.backup_set,
                "summary": f"{service.name}: {code} of {instance_id} at {start:%Y-%m-%d %H:%M}Z ({via}); snapshot "
                           f"{backup.backup_set} taken now; the data moves to a replacement at "
                           f"{max(handoff_at, now):%Y-%m-%d %H:%M}Z"})
            self.metric(service, "PlannedInterruptions", 1, "Count")
        if now < handoff_at:
            return f"{code} at {start:%Y-%m-%d %H:%M}Z: snapshot taken; hand-off due at {handoff_at:%Y-%m-%d %H:%M}Z"
        done["warned"] = progress.record(ec2, instance_id, "warned", now, f"planned {code}")
        return f"{code}: handed off before {start:%H:%M:%S}Z, " + self._hand_off(instance_id, service, start, done)

    def on_sweep(self, event):
        """The backstop AWS's best-effort delivery needs: for each lineage, the scheduled events EC2 lists for its
        instances (each planned once, and handed off when due), and a holder that is gone or stopped although no
        event announced it (the missed-warning path, once). Progress tags make it idempotent with late events."""
        ec2, outcomes = self.clients["ec2"], []
        for service in self.config.services:
            reservations = paginate(ec2, "describe_instances", "Reservations", Filters=[
                {"Name": f"tag:{t.LINEAGE}", "Values": [service.lineage]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down",
                                                           "terminated"]}])
            instances = [i for reservation in reservations for i in reservation["Instances"]]
            outcomes += self._overdue_recoveries(service, instances)
            for instance in (i for i in instances if i["State"]["Name"] != "terminated"):
                for scheduled in self._scheduled_events(instance["InstanceId"]):
                    outcome = self.on_planned(instance["InstanceId"], scheduled["Code"], scheduled["NotBefore"], "the sweep")
                    outcomes.append(f"{instance['InstanceId']} {scheduled['Code']}: {outcome}")
            foreign = lineages.foreign_groups(lineages.groups_in(instances), service.group)
            if foreign:
                outcomes.append(self._misconfigured(service, foreign))
            holder = self._unannounced_loss(service)
            if holder:
                outcomes.append(f"{holder['InstanceId']}: " + self._protect(
                    holder["InstanceId"], holder, service,
                    reason=f"the sweep found it {holder['State']['Name']} and no interruption of it was handled"))
        self.metric(self.config.services[0], "Sweeps", 1, "Count")
        return "sweep: " + ("; ".join(outcomes) if outcomes else "nothing unannounced")

    def _misconfigured(self, service, foreign):
        """Instances of the service's lineage in a group that is not the service's: a second writer waiting to happen.
        Said once per instance (``misconfigured``); nothing is done to them (they are not this control plane's)."""
        ec2, fresh = self.clients["ec2"], {}
        for group, instance_ids in foreign.items():
            for instance_id in instance_ids:
                instance = self._describe(instance_id)
                if instance is not None and "misconfigured" not in progress.read(instance):
                    fresh.setdefault(group, []).append(instance_id)
        if not fresh:
            return f"misconfiguration of {service.lineage} already reported"
        named = "; ".join(f"group {group} ({', '.join(ids)})" for group, ids in fresh.items())
        self.publish(service, f"Misconfiguration: lineage {service.lineage} has instances in another group", {
            "event": "failed", "step": "configuration", "service": service.name, "lineage": service.lineage,
            "group": service.group, "foreign_groups": fresh,
            "summary": f"{service.name}: instances of lineage {service.lineage} are in {named}, not only in "
                       f"{service.group or 'no group'}: one lineage has one writer. Their events are not acted on; remove "
                       f"the lineage's tag from that group's launch template or delete the group (deploy.yml refuses "
                       f"until then)"})
        self.metric(service, "Misconfigurations", 1, "Count")
        for ids in fresh.values():
            for instance_id in ids:
                progress.record(ec2, instance_id, "misconfigured", self.clock.now(), service.group or "none")
        return f"misconfiguration reported: lineage {service.lineage} in {named}"

    def _overdue_recoveries(self, service, instances):
        """A recovery that did not end within the service's ``recovery_deadline`` is a ``failed`` one, said once: a
        replacement that got the data but sent no boot report, or a handed-off holder whose data no replacement
        took. Silence is never the outcome."""
        ec2, now, outcomes = self.clients["ec2"], self.clock.now(), []
        limit = timedelta(seconds=service.recovery_deadline)
        # The instances whose data a replacement took (its "replaces" step names them), and the abandoned launches:
        # each already ended an interruption with its own failed message.
        steps = {i["InstanceId"]: progress.read(i) for i in instances}
        replaced = {progress.outcome_of(done["replaces"]) for done in steps.values() if {"replaces", "attached"} <= set(done)}
        abandons = [progress.time_of(done["abandoned"]) for done in steps.values() if "abandoned" in done]
        for instance_id, done in steps.items():
            if "overdue" in done:
                continue
            if "continued" in done and not {"reported", "boot-failed"} & set(done) \
                    and now - progress.time_of(done["continued"]) > limit:
                why = (f"no boot report from {instance_id} within {service.recovery_deadline} s of getting the data "
                       f"({progress.outcome_of(done.get('attached', ''))})")
                safe = f"the data is attached to {instance_id}; its agent never said it mounted it"
            elif "warned" in done and instance_id not in replaced and now - progress.time_of(done["warned"]) > limit \
                    and not any(when >= progress.time_of(done["warned"]) for when in abandons):
                why = f"no replacement took the data within {service.recovery_deadline} s of {instance_id}'s interruption"
                failures = self._failed_launches(service, progress.time_of(done["warned"]))
                if failures:
                    why += f": the group's launches failed {len(failures)} times, last: {failures[0]}"
                safe = (f"the data is on {progress.outcome_of(done.get('released', '')) or 'its volume'} and in the "
                        f"snapshot set {progress.outcome_of(done.get('snapshot', '')).split(' ')[0] or 'taken then'}")
            else:
                continue
            self.publish(service, f"Recovery of {service.name} did not finish", {
                "event": "failed", "step": "deadline", "service": service.name, "lineage": service.lineage,
                "instance_id": instance_id, "reason": why, "safe": safe,
                "summary": f"{service.name}: {why}. {safe.capitalize()}. Look at the group's activities and the instance's "
                           f"agent log (journalctl -u ec2spot-mount); restore.yml restores the data onto a new instance"})
            self.metric(service, "RecoveryFailures", 1, "Count")
            try:
                progress.record(ec2, instance_id, "overdue", now)
            except AwsApiError as exc:
                LOG.info("could not mark %s overdue: %s", instance_id, exc.message)
            outcomes.append(f"{instance_id}: failed: {why}")
        return outcomes

    def _failed_launches(self, service, since):
        """The status messages of the group's failed launches since ``since``, newest first (Auto Scaling keeps six
        weeks of activities; one page of the newest is enough to say why no replacement came)."""
        if not service.group:
            return []
        try:
            activities = call(self.clients["autoscaling"], "describe_scaling_activities", AutoScalingGroupName=service.group,
                              MaxRecords=50).get("Activities", [])
        except AwsApiError as exc:
            LOG.warning("could not read the activities of %s: %s", service.group, exc.message)
            return []
        return [events.printable(a.get("StatusMessage") or a.get("Description", ""), 300) for a in activities
                if a.get("StatusCode") == "Failed" and a.get("StartTime") and a["StartTime"] >= since]

    def _unannounced_loss(self, service):
        """The lineage's holder when it is stopped or gone and nothing handled it yet (no warning, protection,
        pause or planned hand-off recorded), else None."""
        ec2 = self.clients["ec2"]
        try:
            volume = current_volume(ec2, service.lineage)
        except RecoveryError:
            return None
        if volume is None:
            return None
        holder_id = lineages.holder_id(volume)
        holder = self._describe(holder_id) if holder_id else None
        if holder is None or holder["State"]["Name"] not in AWAY_STATES:
            return None
        done = progress.read(holder)
        if {"warned", "protected", "paused"} & set(done):
            return None
        return holder

    def on_pause_warning(self, event, instance, service, action, deadline):
        """A Spot ``stop`` or ``hibernate`` interruption: the instance is stopped, not terminated, and keeps its
        volumes; EC2 starts it again when capacity returns (EC2 user guide, "Interruption behavior for Spot
        Instances"). So no Unhealthy, no release, no replacement: for ``stop`` the application is stopped cleanly
        within the notice and a consistent snapshot taken; for ``hibernate`` nothing is stopped (memory is kept) and
        a snapshot (crash-consistent) is taken only with the service's ``hibernate_snapshot``. When the instance runs
        again its agent mounts the same volume as on any boot. Once per notice (the ``paused`` progress step keeps the
        notice time)."""
        ec2, instance_id = self.clients["ec2"], event.instance_id
        notice = f"{action}@{event.time:%Y%m%dT%H%M%SZ}"
        recorded = progress.outcome_of(progress.read(instance).get("paused", ""))
        if recorded.split(" ", 1)[0] == notice:
            return f"duplicate: {action} warning for {instance_id} at {event.time:%H:%M:%S}Z already handled"
        if action == "stop":
            stop = self.stop_application(instance_id, service, deadline)
        else:
            stop = "not stopped: hibernation keeps memory"
        snapshot = "none"
        if action == "stop" or service.hibernate_snapshot:
            consistency = "consistent" if stop == "ok" else "crash-consistent"
            backup = backup_instance(ec2, instance_id, f"{service.name}-{action}-{event.time:%Y%m%d%H%M%S}",
                                     extra_tags={t.LINEAGE: service.lineage}, clock=self.clock)
            snapshot = f"{backup.backup_set} {consistency}"
        progress.record(ec2, instance_id, "paused", self.clock.now(), f"{notice} stop={stop.split(':', maxsplit=1)[0]}")
        self.publish(service, f"Spot {action} interruption for {instance_id}", {
            "event": f"interruption-{action}", "service": service.name, "lineage": service.lineage,
            "instance_id": instance_id, "instance_action": action, "interruption_at": deadline.isoformat(), "stop": stop,
            "snapshot": snapshot,
            "summary": f"{service.name}: {instance_id} will be {'stopped' if action == 'stop' else 'hibernated'} at "
                       f"{deadline:%H:%M:%S}Z and kept with its data volume (no replacement); application "
                       f"{'stop: ' + stop if action == 'stop' else 'left running in memory'}; snapshot: {snapshot}. "
                       f"EC2 starts it again when capacity returns"})
        self.metric(service, "SpotPauses", 1, "Count")
        return (f"{action} warning handled for {instance_id}: the instance keeps its data; stop {stop}; "
                f"snapshot {snapshot}")

    def stop_application(self, instance_id, service, deadline):
        """Stop the app through SSM within the notice; returns ``ok`` or why not."""
        if not service.stop_commands:
            return "skipped: no stop commands configured"
        remaining = (deadline - self.clock.now()).total_seconds() - RESERVE_AFTER_STOP
        if remaining < MIN_STOP_SECONDS:
            return "failed: no time left before the interruption"
        timeout = int(min(service.stop_timeout, remaining))
        commands = list(service.stop_commands) + ["sync"] + [
            # The instance agent's watcher may have unmounted it already (it stops on the same notice): not an error.
            f"if mountpoint -q {shlex.quote(mount)}; then umount {shlex.quote(mount)}; fi" for mount in service.data_mounts]
        return run_shell(self.clients["ssm"], instance_id, commands, timeout, f"ec2spot.autorecover: stop {service.name}",
                         self.clock, late="failed: the stop did not finish before the interruption")

    # ---- replacement launch -----------------------------------------------------------------
    def on_launch(self, event, instance, service):
        ec2, autoscaling, replacement = self.clients["ec2"], self.clients["autoscaling"], event.instance_id
        if instance is None or instance["State"]["Name"] in GONE_STATES:
            return f"ignored: replacement {replacement} is gone"
        done = progress.read(instance)
        hook = {"AutoScalingGroupName": event.group, "LifecycleHookName": event.hook, "LifecycleActionToken": event.token}
        completed = [step for step in ("continued", "abandoned") if step in done]
        if completed and _token_of(done[completed[0]]) in (event.token, ""):
            return f"duplicate: launch action for {replacement} already completed"
        if completed:
            # Another lifecycle of the same instance (back from a warm pool): the last one's steps say nothing about
            # where the data is now.
            done = self._forget_launch(instance, done)
        self._heartbeat(hook)
        try:
            if "attached" not in done:
                self._await_newest_snapshot(service, instance, hook)
                # The fence: the old holder's app counts as stopped only if this handler stopped it (progress tag).
                current = current_volume(ec2, service.lineage)
                attachments = (current or {}).get("Attachments") or []
                holder_id = attachments[0]["InstanceId"] if attachments else None
                holder_stopped = bool(holder_id) and holder_id != replacement and progress.outcome_of(
                    progress.read(self._describe(holder_id) or {}).get("stopped", "")) == "ok"
                # Whose data this is, recorded before anything moves: a redelivery after the attach finds the volume
                # already on the replacement, and only this says where it came from.
                prior = lineages.holder_id(current) if current else None
                if prior and prior != replacement and "replaces" not in done:
                    done["replaces"] = progress.record(ec2, replacement, "replaces", self.clock.now(), prior)
                moved = move_lineage_volume(ec2, service.lineage, replacement, device_name=service.device_name,
                                            app_stopped=holder_stopped, max_data_age=service.max_data_age,
                                            timeout=self.move_timeout, clock=self.clock)
                origin = outcomes.Origin(moved.volume_id) if not moved.from_snapshot else outcomes.Origin(
                    moved.volume_id, moved.snapshot_id, moved.data_age_seconds or 0.0,
                    staged=staged_from(current, moved.snapshot_id))
                done["attached"] = progress.record(ec2, replacement, "attached", self.clock.now(), origin.describe())
                if moved.previous_instance_id and moved.previous_instance_id != replacement and "replaces" not in done:
                    done["replaces"] = progress.record(ec2, replacement, "replaces", self.clock.now(), moved.previous_instance_id)
                self.metric(service, "DataAge", moved.data_age_seconds or 0.0, "Seconds")
            if service.address and "address" not in done:
                done["address"] = self._move_service_address(service, replacement)
        except FenceViolation as exc:
            if "max_data_age" in exc.message:
                return self._abandon(hook, service, replacement, exc)
            raise Retry(f"launch of {replacement} waits for the data: {exc.message}") from exc
        except TRANSIENT:
            raise
        except RecoveryError as exc:  # no snapshot, forked lineage, bad address...: waiting will not help
            return self._abandon(hook, service, replacement, exc)
        self._complete(hook, "CONTINUE")
        progress.record(ec2, replacement, "continued", self.clock.now(), f"token={event.token}")
        outcome = f"replacement {replacement} has the data ({progress.outcome_of(done['attached'])}) and the address"
        watched = self._watch_replacement(service, progress.outcome_of(done.get("replaces", "")), replacement)
        return outcome + (f"; {watched}" if watched else "")

    def _move_service_address(self, service, replacement):
        """The service's Elastic IP to the replacement, taken only from an instance of the lineage (or unassociated)
        unless the service says ``address_take_from_any``. Refused: the data stays with the replacement (abandoning
        it would only churn) and the operator is told who holds the address."""
        ec2 = self.clients["ec2"]
        address = find_address(ec2, allocation_id=service.address.get("allocation_id"),
                               public_ip=service.address.get("public_ip"), address_tags=service.address.get("tags"))
        try:
            moved = move_address(ec2, address, replacement, allow_reassociation=True,
                                 only_from_lineage=None if service.address_take_from_any else service.lineage)
        except Conflict as exc:
            self.publish(service, f"Elastic IP of {service.name} not moved to {replacement}", {
                "event": "failed", "step": "address", "service": service.name, "lineage": service.lineage,
                "instance_id": replacement, "address": address["PublicIp"], "holder": exc.details.get("holder"),
                "safe": f"the data is on {replacement}", "summary": f"{service.name}: {exc.message}. The data is on "
                f"{replacement}, which is running without the service's address"})
            self.metric(service, "RecoveryFailures", 1, "Count")
            return progress.record(ec2, replacement, "address", self.clock.now(), f"refused: held by {exc.details.get('holder')}")
        return progress.record(ec2, replacement, "address", self.clock.now(), moved.public_ip)

    def _watch_replacement(self, service, old_instance_id, replacement):
        """The CPU watchdog's alarm follows the data to the replacement (after the launch completed: the service
        comes first, and a failure here only loses the alarm, which the report says)."""
        if not service.watchdog or not service.watchdog.alarm_prefix or not old_instance_id:
            return None
        try:
            return watchdogs.follow_replacement(self.clients["cloudwatch"], service.watchdog.alarm_prefix,
                                                old_instance_id, replacement)
        except (AwsApiError, RecoveryError) as exc:
            LOG.error("watchdog alarm of %s not moved to %s: %s", old_instance_id, replacement, exc)
            return f"watchdog alarm NOT moved to {replacement}: {exc}"

    def _await_newest_snapshot(self, service, replacement, hook):
        """Before a restore into another zone, wait for a snapshot still in progress that is newer
        than the newest completed one (the interruption snapshot): restoring the older one would
        lose the writes in between, and abandoning would lose the replacement."""
        ec2 = self.clients["ec2"]
        current = current_volume(ec2, service.lineage)
        if current is None or current["AvailabilityZone"] == replacement["Placement"]["AvailabilityZone"]:
            return
        pending = lineage_snapshots(ec2, service.lineage, states=("pending",))
        completed = lineage_snapshots(ec2, service.lineage)
        if not pending or (completed and completed[0]["StartTime"] >= pending[0]["StartTime"]):
            return
        newest = pending[0]["SnapshotId"]
        beats = {"last": self.clock.monotonic()}

        def state():
            if self.clock.monotonic() - beats["last"] >= HEARTBEAT_EVERY:
                self._heartbeat(hook)
                beats["last"] = self.clock.monotonic()
            return call(ec2, "describe_snapshots", SnapshotIds=[newest])["Snapshots"][0]["State"]
        try:
            # A snapshot that ends in ``error`` is nothing to wait for: the move then decides on what is complete (an
            # older snapshot within max_data_age, reported as a loss; none: abandoned, launches suspended).
            if wait_until(state, lambda found: found in ("completed", "error"), f"snapshot {newest} to complete",
                          SNAPSHOT_WAIT, self.clock) == "error":
                LOG.error("the newest snapshot of %s, %s, failed", service.lineage, newest)
        except WaitTimeout as exc:
            raise Retry(f"the newest snapshot of {service.lineage}, {newest}, is still in progress") from exc

    def _heartbeat(self, hook):
        try:
            call(self.clients["autoscaling"], "record_lifecycle_action_heartbeat", **hook)
        except AwsApiError as exc:
            LOG.warning("heartbeat for %s failed: %s", hook["LifecycleHookName"], exc.message)

    def _complete(self, hook, result):
        try:
            call(self.clients["autoscaling"], "complete_lifecycle_action", LifecycleActionResult=result, **hook)
        except AwsApiError as exc:
            if exc.aws_code != "ValidationError":
                raise
            # "No active Lifecycle Action": completed by someone else, or timed out (its default result applied)
            LOG.warning("lifecycle action %s of %s was no longer active: %s", hook["LifecycleHookName"],
                        hook["AutoScalingGroupName"], exc.message)

    def _forget_launch(self, instance, done):
        steps = [step for step in LAUNCH_STEPS if step in done]
        call(self.clients["ec2"], "delete_tags", Resources=[instance["InstanceId"]],
             Tags=[{"Key": progress.PROGRESS + step} for step in steps])
        return {step: value for step, value in done.items() if step not in steps}

    def _abandon(self, hook, service, replacement, error):
        """A launch that can never get the data (no snapshot to restore, data too old, a forked lineage, the volume
        gone...): a new instance would fail the same way, so the group's ``Launch`` process is suspended after this
        first ABANDON (not desired capacity 0: the group keeps its size, and resuming launches exactly what is
        missing). Nothing is lost by waiting: the data stays where it is. Resuming is the operator's explicit step."""
        # Suspended before the ABANDON: the group replaces an abandoned instance at once, and that launch would fail
        # the same way.
        suspended = self._suspend_launches(hook["AutoScalingGroupName"])
        self._complete(hook, "ABANDON")
        progress.record(self.clients["ec2"], replacement, "abandoned", self.clock.now(),
                        f"token={hook['LifecycleActionToken']} {error.code}")
        resume = (f"aws autoscaling resume-processes --auto-scaling-group-name {hook['AutoScalingGroupName']} "
                  f"--scaling-processes Launch")
        safe = self._where_the_data_is(service)
        self.publish(service, f"Recovery failed for {service.name}", {
            "event": "failed", "step": "launch", "service": service.name, "lineage": service.lineage,
            "instance_id": replacement, "error": error.to_dict(), "launches_suspended": suspended,
            "safe": safe, "resume": resume,
            "summary": f"{service.name}: replacement {replacement} abandoned: {error.message}. {safe.capitalize()}. "
                       + (f"Launches of {hook['AutoScalingGroupName']} are suspended so that no replacement loop follows; "
                          f"fix the cause (restore.yml restores a backup into the group), then `{resume}`"
                          if suspended else "Launches could not be suspended: the group may try again")})
        self.metric(service, "RecoveryFailures", 1, "Count")
        return f"abandoned {replacement}: {error.message}" + ("; launches suspended" if suspended else "")

    def _where_the_data_is(self, service):
        """For a failed message: the lineage's current volume (where, in what state) and a newer snapshot that failed."""
        ec2 = self.clients["ec2"]
        try:
            volume = current_volume(ec2, service.lineage)
            completed, failed = lineage_snapshots(ec2, service.lineage), lineage_snapshots(ec2, service.lineage, states=("error",))
        except (AwsApiError, RecoveryError) as exc:
            return f"the lineage's data was not moved or changed (where it is could not be read: {exc.message})"
        where = (f"the data is on {volume['VolumeId']} in {volume['AvailabilityZone']} ({volume['State']}), not moved or changed"
                 if volume else "the lineage has no volume: its data is only in its snapshots")
        if failed and (not completed or failed[0]["StartTime"] > completed[0]["StartTime"]):
            where += f"; its newest snapshot, {failed[0]['SnapshotId']}, failed (state error)"
        return where

    def _suspend_launches(self, group):
        try:
            call(self.clients["autoscaling"], "suspend_processes", AutoScalingGroupName=group, ScalingProcesses=["Launch"])
        except AwsApiError as exc:
            LOG.error("could not suspend the launches of %s: %s", group, exc.message)
            return False
        return True

    # ---- termination without (or after) a warning ---------------------------------------------
    def on_terminate(self, event, instance, service):
        """A terminate lifecycle action: completed once per token (recorded on the instance: a redelivery makes no
        call). ``Destination: WarmPool`` is a scale-in into the group's warm pool: the instance is stopped, not
        terminated, and keeps its volumes, so it is no loss (no snapshot, no alert, no mark)."""
        hook = {"AutoScalingGroupName": event.group, "LifecycleHookName": event.hook, "LifecycleActionToken": event.token}
        if instance is None or instance["State"]["Name"] == "terminated":
            return f"terminate action for {event.instance_id}: instance gone, its lifecycle action with it"
        done = progress.read(instance)
        if _token_of(done.get("terminate-completed", "")) == event.token:
            return f"duplicate: terminate action for {event.instance_id} already completed"
        if event.detail.get("Destination") == events.WARM_POOL:
            outcome = "scale-in to the warm pool: the instance is kept, stopped, with its volumes"
        else:
            outcome = self._protect(event.instance_id, instance, service,
                                    reason="its Auto Scaling group is terminating it and no interruption of it was handled")
        self._complete(hook, "CONTINUE")
        try:
            progress.record(self.clients["ec2"], event.instance_id, "terminate-completed", self.clock.now(),
                            f"token={event.token}")
        except AwsApiError as exc:   # gone meanwhile: no redelivery can find it either
            LOG.info("could not record the completed action on %s: %s", event.instance_id, exc.message)
        return f"terminate action for {event.instance_id}: {outcome}"

    def on_state_change(self, event, instance, service):
        if service.standby is not None:
            if standbys.is_standby(service.standby, instance):
                return f"ignored: {event.instance_id} is the standby of {service.name} (state {event.state})"
            if standbys.is_primary(service.standby, instance):
                if event.state not in standbys.TRIGGER_STATES:
                    return f"ignored: state {event.state}"
                return self.on_standby(event, instance, service, f"the primary is {event.state}")
        if event.state not in ("shutting-down", "terminated"):
            return f"ignored: state {event.state}"
        return f"state {event.state} of {event.instance_id}: " + self._protect(
            event.instance_id, instance, service, reason=f"EC2 reports it {event.state} and no interruption of it was handled")

    def _protect(self, instance_id, instance, service, reason=None):
        """The protective steps still possible when no warning was handled for the instance (its holder only)."""
        done = progress.read(instance)
        if "warned" in done or "protected" in done:
            return "already handled"
        if not self.holds_current_data(service, instance):
            return f"not the holder of the current generation of {service.lineage}: nothing to protect"
        outcome = "no snapshot possible (instance gone)"
        if instance["State"]["Name"] not in GONE_STATES:
            backup = backup_instance(self.clients["ec2"], instance_id, f"{service.name}-interruption",
                                     extra_tags={t.LINEAGE: service.lineage}, clock=self.clock)
            outcome = f"crash-consistent snapshot {backup.backup_set}"
        try:
            progress.record(self.clients["ec2"], instance_id, "protected", self.clock.now(), outcome)
        except AwsApiError:
            LOG.info("could not tag %s (gone): %s", instance_id, outcome)
        why = reason or "no interruption of it was handled"
        self.publish(service, f"{instance_id} is going away and no interruption of it was handled", {
            "event": "missed-warning", "service": service.name, "instance_id": instance_id, "protection": outcome,
            "reason": why, "summary": f"{service.name}: {instance_id} is going away and {why}; {outcome}"})
        self.metric(service, "MissedWarnings", 1, "Count")
        return outcome

    # ---- rebalance and boot report ------------------------------------------------------------
    def on_rebalance(self, event, instance, service):
        if "warned" in progress.read(instance):
            return f"ignored: rebalance for {event.instance_id}, which is already being interrupted"
        if not service.rebalance_snapshot or instance["State"]["Name"] != "running":
            return f"rebalance for {event.instance_id}: nothing to do"
        if not self.holds_current_data(service, instance):
            return self._not_holder(event, service)
        backup = backup_instance(self.clients["ec2"], event.instance_id, f"{service.name}-rebalance-{event.time:%Y%m%d%H%M}",
                                 extra_tags={t.LINEAGE: service.lineage}, clock=self.clock)
        return f"rebalance for {event.instance_id}: snapshot {backup.backup_set} ({'new' if backup.changed else 'existing'})"

    def on_scheduled_backup(self, event, service):
        """The schedule's backup: a consistent snapshot set of the lineage's holder, then retention.

        The set is named after the schedule's time, so a redelivered message takes nothing twice. A lineage whose
        volume no instance holds has nothing being written: its newest snapshot is still current, nothing to take.
        """
        ec2 = self.clients["ec2"]
        volume = current_volume(ec2, service.lineage)
        holder = next((a["InstanceId"] for a in (volume or {}).get("Attachments", []) if a.get("State") == "attached"), None)
        outcome = []
        if holder:
            backup = backup_instance(ec2, holder, f"{service.name}-scheduled-{event.time:%Y%m%d%H%M}",
                                     create_image=bool(event.detail.get("create_image", False)),
                                     extra_tags={t.LINEAGE: service.lineage}, clock=self.clock)
            outcome.append(f"backup {backup.backup_set} of {holder} ({'new' if backup.changed else 'existing'})")
        else:
            outcome.append(f"no backup: no instance holds lineage {service.lineage}'s volume")
        keep_newest, max_age_days = event.detail.get("keep_newest"), event.detail.get("max_age_days")
        if keep_newest or max_age_days:
            # The same rules and code as spot_backup's retention (retention.apply_retention): any rule keeps a backup,
            # each kind's newest always stays, one call per deleted AMI.
            retained = apply_retention(ec2, [service.lineage], {"keep_newest": keep_newest, "max_age_days": max_age_days},
                                       now=self.clock.now())
            outcome.append(retained.summary())
        self.metric(service, "ScheduledBackups", 1, "Count")
        return "; ".join(outcome)

    def on_boot_report(self, event, instance, service):
        ec2, replacement = self.clients["ec2"], event.instance_id
        if event.detail.get("status", "ok") != "ok":
            return self._boot_failed(event, instance, service)
        initialised = self._clear_fresh(ec2, event.detail.get("volume-id"), replacement, service)
        done = progress.read(instance)
        if "reported" in done:
            return f"duplicate: success of {replacement} already reported"
        progress.record_boot(ec2, replacement, event.detail.get("phases"))
        if "replaces" not in done and " from snap-" not in progress.outcome_of(done.get("attached", "")):
            # The service's first instance (deploy; its launch hook attached the volume) or a reboot: nothing was
            # recovered, but the operator wants to know.
            self.publish(service, f"{service.name} started on {replacement}", {
                "event": "started", "service": service.name, "lineage": service.lineage, "instance_id": replacement,
                "initialised": initialised, "boot": event.detail.get("phases") if isinstance(event.detail.get("phases"), dict) else {},
                "summary": f"{service.name} is up on {replacement}" + ("; its new data volume was formatted" if initialised else "")})
            progress.record(ec2, replacement, "reported", self.clock.now())
            return f"start of {replacement} reported"
        previous_id = progress.outcome_of(done.get("replaces", "")) or None
        previous = self._describe(previous_id) if previous_id else None
        old_done = progress.read(previous or {})
        timeline = {f"old.{step}": progress.stamp_of(value) for step, value in old_done.items()}
        timeline.update({f"new.{step}": progress.stamp_of(value) for step, value in done.items()})
        phases = event.detail.get("phases") if isinstance(event.detail.get("phases"), dict) else {}
        timeline.update({f"boot.{name}": str(value)[:40] for name, value in list(phases.items())[:20]})
        attached = progress.outcome_of(done.get("attached", ""))
        origin = outcomes.parse_origin(attached)
        verdict, losses = outcomes.judge(origin, previous_id, old_done, self._backup_set_of(origin))
        data_age = origin.data_age_seconds if origin else 0.0
        old_warned = old_done.get("warned")
        recovery_seconds = (event.time - progress.time_of(old_warned)).total_seconds() if old_warned else None
        self.publish(service, f"{service.name} {verdict.replace('-', ' ')} on {replacement}", {
            "event": verdict, "service": service.name, "lineage": service.lineage, "instance_id": replacement,
            "replaced": previous_id, "data": attached, "data_age_seconds": data_age, "losses": losses,
            "recovery_seconds": recovery_seconds, "timeline": dict(sorted(timeline.items(), key=lambda item: item[1])),
            "summary": f"{service.name} is back on {replacement}" + (f" after {recovery_seconds:.0f}s" if recovery_seconds else "")
            + (f" from {previous_id}" if previous_id else "") + f"; data age {data_age:.0f}s"
            + ("".join(f"; LOST: {loss}" for loss in losses) if losses else "; nothing lost")})
        if losses:
            self.metric(service, "RecoveriesWithLoss", 1, "Count")
        if recovery_seconds is not None:
            self.metric(service, "RecoverySeconds", recovery_seconds, "Seconds")
        for phase, start, end in PHASES:
            if start in timeline and end in timeline:
                seconds = (progress.time_of(timeline[end]) - progress.time_of(timeline[start])).total_seconds()
                self.metric(service, "PhaseSeconds", max(0.0, seconds), "Seconds", phase=phase)
        progress.record(ec2, replacement, "reported", self.clock.now())
        return f"success of {replacement} reported"

    def _backup_set_of(self, origin):
        """The backup set of the snapshot ``origin`` restored, or None (a moved volume; a snapshot deleted since)."""
        if origin is None or origin.snapshot_id is None:
            return None
        try:
            snapshot = call(self.clients["ec2"], "describe_snapshots", SnapshotIds=[origin.snapshot_id])["Snapshots"][0]
        except (AwsApiError, IndexError):
            return None
        return t.as_dict(snapshot.get("Tags")).get(t.BACKUP_SET)

    def _boot_failed(self, event, instance, service):
        """The agent refused the data or timed out waiting for it: the operator hears it at once, with the agent's
        reason, what is safe and what to do. Once per instance (``boot-failed``)."""
        ec2, instance_id = self.clients["ec2"], event.instance_id
        if "boot-failed" in progress.read(instance):
            return f"duplicate: the failed boot of {instance_id} was already reported"
        status, reason = event.detail["status"], events.printable(event.detail.get("reason", "no reason given"), 1500)
        volume = event.detail.get("volume-id") if isinstance(event.detail.get("volume-id"), str) else None
        safe = ("the agent wrote nothing to the device it refused and did not start the application" if status == "refused"
                else "no data volume was mounted and the application was not started")
        self.publish(service, f"Recovery failed for {service.name}: the data was {status} on {instance_id}", {
            "event": "failed", "step": "boot", "status": status, "service": service.name, "lineage": service.lineage,
            "instance_id": instance_id, "volume_id": volume, "device": event.detail.get("device"), "reason": reason,
            "safe": safe, "summary": f"{service.name}: the agent on {instance_id} {status} the data"
            + (f" ({volume})" if volume else "") + f": {reason}. {safe.capitalize()}. Read the reason, then restore the "
            f"lineage's current data (lineage_info lists every copy; restore.yml)"})
        self.metric(service, "RecoveryFailures", 1, "Count")
        progress.record(ec2, instance_id, "boot-failed", self.clock.now(), status)
        return f"failed boot of {instance_id} reported: {status}"

    def _clear_fresh(self, ec2, volume_id, instance_id, service):
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
        if volume_tags.get(t.FRESH) != "true" or not attached_here or not t.holds_lineage_data(volume_tags, service.lineage):
            return False
        call(ec2, "delete_tags", Resources=[volume_id], Tags=[{"Key": t.FRESH}])
        LOG.info("%s was initialised on %s: cleared %s", volume_id, instance_id, t.FRESH)
        return True

    # ---- CloudWatch alarms: standby failover and the CPU watchdog -----------------------------------
    def on_alarm(self, event, instance, service):
        name = event.detail["alarmName"]
        section = _alarm_section(service, name, event.detail.get("metric"))
        if section is None:
            return f"ignored: alarm {name} is not a standby or watchdog alarm of {service.name}"
        if event.state != "ALARM":
            return f"ignored: alarm {name} is {event.state}"
        if section == "standby":
            if not standbys.is_primary(service.standby, instance):
                return f"ignored: alarm {name} watches {event.instance_id}, not the primary of {service.name}"
            return self.on_standby(event, instance, service, f"alarm {name}")
        return self.on_watchdog(event, instance, service)

    def on_standby(self, event, instance, service, trigger):
        """Fail over from the primary ``event.instance_id`` to the standby, once (see ``standby.py``)."""
        ec2, primary_id, settings = self.clients["ec2"], event.instance_id, service.standby
        done = progress.read(instance)
        if standbys.FAILOVER_STEP in done:
            return self._already_failed_over(service, primary_id, progress.outcome_of(done[standbys.FAILOVER_STEP]))
        started = self.clock.monotonic()
        try:
            standby = standbys.find_standby(ec2, service.lineage, settings)
            took_over = progress.outcome_of(progress.read(standby).get(standbys.TOOK_OVER_STEP, ""))
            if took_over == primary_id:
                return self._already_failed_over(service, primary_id, standby["InstanceId"])
            result = standbys.fail_over(ec2, service.lineage, primary_id, settings, address=service.address,
                                        device_name=service.device_name, clock=self.clock)
        except TRANSIENT:
            raise
        except RecoveryError as exc:  # standby not ready or not found, address held elsewhere...: report, do not retry
            self.publish(service, f"Standby failover failed for {service.name}", {
                "event": "standby-failover-failed", "service": service.name, "lineage": service.lineage,
                "primary_id": primary_id, "trigger": trigger, "error": exc.to_dict(),
                "summary": f"{service.name}: {trigger} on {primary_id}; failover NOT done (nothing moved): {exc.message}"})
            self.metric(service, "StandbyFailoverFailures", 1, "Count")
            return f"standby failover for {primary_id} failed: {exc.message}"
        seconds = round(self.clock.monotonic() - started, 3)
        try:
            progress.record(ec2, primary_id, standbys.FAILOVER_STEP, self.clock.now(), result.standby_id)
        except AwsApiError as exc:  # the primary is gone: the standby's own mark below is enough
            LOG.info("could not mark %s as failed over: %s", primary_id, exc.message)
        progress.record(ec2, result.standby_id, standbys.TOOK_OVER_STEP, self.clock.now(), primary_id)
        address = f"address {result.address} {'moved' if result.address_moved else 'already there'}" if result.address \
            else "no address configured"
        self.publish(service, f"{service.name} failed over to its standby {result.standby_id}", {
            "event": "standby-failover", "service": service.name, "lineage": service.lineage, "trigger": trigger,
            "seconds": seconds, **result.to_dict(),
            "summary": f"{service.name}: {trigger} on {primary_id}; standby {result.standby_id} "
                       f"{'started and ' if result.standby_started else ''}passed its status checks; {address}; "
                       f"volume: {result.volume}. Failing back is explicit (roles/standby, standby_failback)"})
        self.metric(service, "StandbyFailovers", 1, "Count")
        self.metric(service, "StandbyFailoverSeconds", seconds, "Seconds")
        return f"failed over from {primary_id} to {result.standby_id}: {address}; volume: {result.volume}"

    def _already_failed_over(self, service, primary_id, standby_id):
        """A later or redelivered trigger for a primary already failed over: nothing moves (never flap). Says where
        the address is now when someone moved it since."""
        outcome = f"duplicate: {primary_id} already failed over to {standby_id}; failing back is explicit (standby_failback)"
        if service.address:
            try:
                address = find_address(self.clients["ec2"], allocation_id=service.address.get("allocation_id"),
                                       public_ip=service.address.get("public_ip"), address_tags=service.address.get("tags"))
            except RecoveryError as exc:
                return f"{outcome}; address not found: {exc.message}"
            if address.get("InstanceId") != standby_id:
                outcome += f"; address {address['PublicIp']} was moved to {address.get('InstanceId') or 'no instance'} since and stays there"
        return outcome

    def on_watchdog(self, event, instance, service):
        """The CPU alarm of a watched instance is in ALARM (see ``watchdog.py``)."""
        ec2, instance_id, settings = self.clients["ec2"], event.instance_id, service.watchdog
        alarm = event.detail["alarmName"]
        if event.event_id and watchdogs.handled_event(instance) == event.event_id:
            return f"duplicate: alarm event {event.event_id} for {instance_id} already handled"
        if instance["State"]["Name"] != "running":
            return f"ignored: {instance_id} is {instance['State']['Name']}"
        now = self.clock.now()
        past = watchdogs.history(instance, now)
        base = {"service": service.name, "lineage": service.lineage, "instance_id": instance_id, "alarm": alarm,
                "mode": settings.mode, "reboots_last_hour": len(past), "max_reboots_per_hour": settings.max_reboots_per_hour}
        if settings.mode == "alarm-reboot":
            return self._alarm_rebooted(event, service, past, now, base)
        verdict = watchdogs.decide(past, now, settings)
        if verdict != watchdogs.REBOOT:
            watchdogs.record(ec2, instance_id, past, now, event.event_id, rebooted=False)
            if verdict == watchdogs.COOLDOWN:
                return f"watchdog for {instance_id}: no reboot, {(now - past[-1]).total_seconds():.0f}s since the last (cooldown {settings.cooldown}s)"
            self._cap_alert(service, base, "no reboot")
            return f"watchdog for {instance_id}: cap of {settings.max_reboots_per_hour} reboots per hour reached, no reboot; alert sent"
        known, ssm_state = watchdogs.ssm_knows(self.clients["ssm"], instance_id)
        watchdogs.reboot(ec2, instance_id)
        watchdogs.record(ec2, instance_id, past, now, event.event_id, rebooted=True)
        started = self.clock.monotonic()
        try:
            ready = standbys.wait_status_ok(ec2, instance_id, settings.ready_timeout, self.clock)
        except standbys.StandbyNotReady as exc:
            restart, ready = f"not attempted: {exc.message}", None
        else:
            restart = watchdogs.run_commands(self.clients["ssm"], instance_id, settings.commands, settings.command_timeout,
                                             f"ec2spot.autorecover: restart {service.name} after a watchdog reboot",
                                             self.clock) if known else f"skipped: {ssm_state}"
        ok = restart == "ok"
        self.publish(service, f"Watchdog rebooted {instance_id}" + ("" if ok else " (restart failed)"), {
            **base, "event": "watchdog-reboot" if ok else "watchdog-failed", "reboots_last_hour": len(past) + 1,
            "ready_seconds": ready, "restart": restart, "commands": list(settings.commands),
            "summary": f"{service.name}: alarm {alarm}: rebooted {instance_id} ({len(past) + 1} of "
                       f"{settings.max_reboots_per_hour} this hour); restart: {restart}"})
        self.metric(service, "WatchdogReboots", 1, "Count")
        self.metric(service, "WatchdogRecoverySeconds", self.clock.monotonic() - started, "Seconds")
        if not ok:
            self.metric(service, "WatchdogFailures", 1, "Count")
        return f"watchdog for {instance_id}: rebooted; restart {restart}"

    def _alarm_rebooted(self, event, service, past, now, base):
        """``alarm-reboot`` mode: the alarm's own action rebooted the instance; count it, and at the cap disable the
        alarm's actions (the only way to stop a loop the alarm drives) and alert."""
        instance_id, settings, alarm = event.instance_id, service.watchdog, event.detail["alarmName"]
        watchdogs.record(self.clients["ec2"], instance_id, past, now, event.event_id, rebooted=True)
        count = len(past) + 1
        self.metric(service, "WatchdogReboots", 1, "Count")
        if count >= settings.max_reboots_per_hour:
            call(self.clients["cloudwatch"], "disable_alarm_actions", AlarmNames=[alarm])
            self._cap_alert(service, {**base, "reboots_last_hour": count}, f"actions of alarm {alarm} disabled; "
                            f"re-enable them (aws cloudwatch enable-alarm-actions) once the cause is fixed")
            return f"watchdog for {instance_id}: alarm reboot {count}, cap reached: alarm actions disabled; alert sent"
        self.publish(service, f"Watchdog alarm rebooted {instance_id}", {
            **base, "event": "watchdog-reboot", "reboots_last_hour": count, "restart": "by the instance's boot",
            "summary": f"{service.name}: alarm {alarm} rebooted {instance_id} ({count} of {settings.max_reboots_per_hour} "
                       f"this hour); the application starts at boot"})
        return f"watchdog for {instance_id}: alarm reboot {count} reported"

    def _cap_alert(self, service, base, consequence):
        self.publish(service, f"Watchdog reboot cap reached for {base['instance_id']}", {
            **base, "event": "watchdog-cap",
            "summary": f"{service.name}: alarm {base['alarm']} on {base['instance_id']}: {base['reboots_last_hour']} reboots "
                       f"in the last hour reached the cap of {base['max_reboots_per_hour']}; {consequence}. Look at the "
                       f"instance: rebooting again would only loop"})
        self.metric(service, "WatchdogCapHits", 1, "Count")

    # ---- notifications and metrics ------------------------------------------------------------
    def publish(self, service, subject, message):
        if not self.config.topic_arn:
            LOG.info("no topic configured: %s", message.get("summary"))
            return
        call(self.clients["sns"], "publish", TopicArn=self.config.topic_arn, Subject=f"[ec2spot] {subject}"[:100],
             Message=json.dumps(message, default=str, sort_keys=True),
             MessageAttributes={"event": {"DataType": "String", "StringValue": message["event"]},
                                "service": {"DataType": "String", "StringValue": service.name}})

    def metric(self, service, name, value, unit, phase=None):
        dimensions = [{"Name": "Service", "Value": service.name}] + ([{"Name": "Phase", "Value": phase}] if phase else [])
        try:
            call(self.clients["cloudwatch"], "put_metric_data", Namespace=self.config.metric_namespace, MetricData=[{
                "MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": unit}])
        except AwsApiError as exc:  # a lost metric must not fail a recovery
            LOG.warning("metric %s not published: %s", name, exc.message)


TRANSIENT = (Retry, WaitTimeout, AwsApiError)
# States in which an instance can no longer stop anything cleanly: no SSM stop, no SetInstanceHealth.
AWAY_STATES = ("shutting-down", "terminated", "stopping", "stopped")
# The progress steps of one launch lifecycle (forgotten when the instance starts another, back from a warm pool).
LAUNCH_STEPS = ("attached", "replaces", "address", "continued", "abandoned", "reported")


def printable_code(event):
    return events.printable(event.detail.get("eventTypeCode"), 100)


def _token_of(value):
    """The lifecycle action token a progress value records (``... token=<uuid> ...``), or ``""``."""
    for word in progress.outcome_of(value).split():
        if word.startswith("token="):
            return word[len("token="):]
    return ""


def _alarm_section(service, name, metric):
    """Which section an alarm belongs to: the one whose ``alarm_prefix`` starts its name; without prefixes, a
    CPUUtilization alarm is the watchdog's (when configured) and any other the standby's."""
    sections = (("standby", service.standby), ("watchdog", service.watchdog))
    for key, settings in sections:
        if settings is not None and settings.alarm_prefix and name.startswith(settings.alarm_prefix):
            return key
    if service.watchdog is not None and not service.watchdog.alarm_prefix and metric == "CPUUtilization":
        return "watchdog"
    if service.standby is not None and not service.standby.alarm_prefix:
        return "standby"
    return None


def retry_delay(receives, jitter=None, time_left=None, receives_left=None):
    """Seconds before a message that must be retried is visible again: ``RETRY_AFTER`` after its first receive,
    doubling with each later one up to ``RETRY_CAP``, less a random part of up to half (AWS's "full jitter" advice
    halved: throttled retries spread out, and a recovery still retries within minutes).

    An event with a deadline (a Spot warning: the notice's two minutes) is retried within it: the delay is capped
    so that the ``receives_left`` before the dead-letter queue fit in the ``time_left`` (seconds). Backing off past
    the interruption would turn a minute of throttling into an application never stopped."""
    base = min(RETRY_CAP, RETRY_AFTER * 2 ** max(0, receives - 1))
    factor = random.uniform(0.5, 1.0) if jitter is None else jitter
    delay = max(1, int(base * factor))
    if time_left is not None and time_left > 0 and receives_left:
        delay = min(delay, max(1, int(time_left / receives_left)))
    return delay


def _time_left(handler, record):
    """Seconds left for retries before the record's event's deadline (a terminate Spot warning's notice, less the
    ``HANDOFF_RESERVE`` the hand-off needs once started), or None."""
    try:
        account, region = handler.identity
        event = events.parse(record.get("body"), account=account, region=region)
    except (RecoveryError, AwsApiError):
        return None
    if event.kind != events.SPOT_WARNING or event.detail.get("instance-action", "terminate") != "terminate":
        return None
    return (event.time + NOTICE_LEAD - handler.clock.now()).total_seconds() - HANDOFF_RESERVE


def _receive_count(record):
    try:
        return int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
    except (TypeError, ValueError):
        return 1


def _queue_of(handler, record):
    """(queue URL, its redrive policy's maxReceiveCount or None) for the record's queue, or (None, None)."""
    arn = record.get("eventSourceARN")
    if not (isinstance(arn, str) and arn.count(":") == 5):
        return None, None
    unused_region, account, queue = arn.split(":")[3:6]
    queue_url = call(handler.clients["sqs"], "get_queue_url", QueueName=queue, QueueOwnerAWSAccountId=account)["QueueUrl"]
    attributes = call(handler.clients["sqs"], "get_queue_attributes", QueueUrl=queue_url,
                      AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    try:
        limit = int(json.loads(attributes.get("RedrivePolicy", "{}")).get("maxReceiveCount"))
    except (TypeError, ValueError):
        limit = None
    return queue_url, limit


def _retry_later(handler, record, exc):
    """A transient failure: back off (``retry_delay``) instead of waiting the queue's long visibility timeout; on the
    message's last receive before the dead-letter queue, say so (``failed``, with the step it was on)."""
    receipt, receives = record.get("receiptHandle"), _receive_count(record)
    try:
        queue_url, limit = _queue_of(handler, record)
        # Within a notice, the receives but the last: the last is kept for after it, when a warning that could not
        # be handled meets an instance already gone and says so (the missed-warning path), not the dead-letter queue.
        delay = retry_delay(receives, time_left=_time_left(handler, record),
                            receives_left=(limit - receives - 1) if limit else None)
        if queue_url and isinstance(receipt, str):
            call(handler.clients["sqs"], "change_message_visibility", QueueUrl=queue_url, ReceiptHandle=receipt,
                 VisibilityTimeout=delay)
    except AwsApiError as err:  # the retry then comes after the visibility timeout: slower, still safe
        LOG.warning("could not set the retry delay: %s", err.message)
        limit = None
    if limit and receives >= limit:
        _give_up(handler, record, exc, receives)


def _give_up(handler, record, exc, receives):
    """The message goes to the dead-letter queue after this receive: the operator hears it, with the step."""
    instance_id, service = None, None
    try:
        account, region = handler.identity
        instance_id = events.parse(record.get("body"), account=account, region=region).instance_id
        service = handler.config.service_for(t.as_dict((handler._describe(instance_id) or {}).get("Tags")).get(t.LINEAGE)) \
            if instance_id else None
    except (RecoveryError, AwsApiError):   # AWS still failing: the instance named by the event, the first service
        pass
    service = service or handler.config.services[0]
    message = events.printable(getattr(exc, "message", exc), 500)
    handler.publish(service, f"Recovery step given up for {service.name}", {
        "event": "failed", "step": "retries", "service": service.name, "lineage": service.lineage,
        "instance_id": instance_id, "receives": receives, "error": message,
        "summary": f"{service.name}: a recovery step for {instance_id or 'an event'} failed {receives} times and goes to the "
                   f"dead-letter queue: {message}. Progress tags on the instances say what was done; redrive the message "
                   f"once the cause is fixed, or restore with restore.yml"})
    handler.metric(service, "RecoveryFailures", 1, "Count")


def process_batch(sqs_event, handler):
    """Handle an SQS batch; returns the partial batch response Lambda expects."""
    failures = []
    records = sqs_event.get("Records") if isinstance(sqs_event, dict) else None
    if not isinstance(records, list):
        LOG.error("not an SQS batch: %s", str(sqs_event)[:200])
        return {"batchItemFailures": []}
    for record in records:
        message_id = record.get("messageId") if isinstance(record, dict) else None
        try:
            outcome = handler.handle(record.get("body") if isinstance(record, dict) else None)
            LOG.info("%s: %s", events.printable(message_id, 100), events.printable(outcome))
        except events.InvalidEvent as exc:
            LOG.warning("%s: dropped invalid event: %s", events.printable(message_id, 100), events.printable(exc.message))
            handler.metric(handler_config.Service(name="handler", lineage="handler"), "InvalidEvents", 1, "Count")
        except TRANSIENT as exc:
            LOG.warning("%s: will retry: %s", events.printable(message_id, 100), events.printable(getattr(exc, "message", exc)))
            if message_id:
                failures.append({"itemIdentifier": message_id})
                _retry_later(handler, record, exc)
        except RecoveryError as exc:
            LOG.error("%s: not recoverable: %s", events.printable(message_id, 100), events.printable(exc.message))
            handler.metric(handler_config.Service(name="handler", lineage="handler"), "HandlerErrors", 1, "Count")
        except Exception:  # pylint: disable=broad-exception-caught  # a bug must not lose the message: retry, then DLQ
            LOG.exception("%s: handler error", events.printable(message_id, 100))
            if message_id:
                failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


_CONFIG = None


def lambda_handler(event, context):  # pylint: disable=unused-argument
    """The Lambda entry point (``recovery.handler.lambda_handler``)."""
    global _CONFIG  # pylint: disable=global-statement  # parsed once per execution environment
    logging.getLogger().setLevel(logging.INFO)
    if _CONFIG is None:
        _CONFIG = handler_config.parse(os.environ.get(handler_config.ENV_VAR, ""))
    # The function's own account and region, from its ARN (arn:aws:lambda:<region>:<account>:function:<name>).
    arn = str(getattr(context, "invoked_function_arn", "") or "").split(":")
    account, region = (arn[4], arn[3]) if len(arn) >= 7 else (None, None)
    return process_batch(event, Handler(_CONFIG, Clients(), account=account, region=region))
