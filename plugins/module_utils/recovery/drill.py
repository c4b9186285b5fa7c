# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Game days: interrupt a lineage's Spot instance with AWS FIS and read back how the recovery went.

The interruption is AWS's own (FIS ``aws:ec2:send-spot-instance-interruptions``: the same
warning event, IMDS notice and reclaim as a real one), so the drill exercises the real path.
The timeline is read from what the recovery leaves behind: the handler's progress tags on the
interrupted instance and its replacement (``progress.py``), the agent's boot phases the handler
keeps there, and the replacement's launch time. Nothing is inferred from the drill's own polling.

Definitions (seconds, measured from the warning, i.e. the experiment's start):

* ``rto_seconds``: the service is down from "stop sent" (the handler sending the application's
  stop: at the warning for a break-before-make hand-off, at the cut-over for make-before-break;
  "app stopped" for a recovery an older handler recorded) until it is back at its address: the
  later of "app started" and "EIP moved" (without an address: "app started");
* ``serving``: the old instance served until "stop sent", the replacement from its return;
* ``recovery_seconds``: warning to the success message;
* ``rpo_seconds``: writes that may be lost. Zero when the replacement got the volume itself, or a
  snapshot taken after the application was confirmed stopped; otherwise from the snapshot to the
  reclaim (the application may have written until then).
"""

from __future__ import annotations

import re
from datetime import timedelta

from . import progress
from . import tags as t
from .aws import SYSTEM_CLOCK, call, paginate
from .errors import InvalidInput, NotFound, RecoveryError, WaitTimeout
from .instances import describe_instance, find_instances

ACTION = "aws:ec2:send-spot-instance-interruptions"
DRILL_TAG = t.PREFIX + "drill"
DRILL_KIND = "spot-interruption"
NOTICE_LEAD = 120.0
DURATION = re.compile(r"^PT(?:([0-9]+)M)?(?:([0-9]+)S)?$")

# (phase, where its time comes from) in the order of a recovery.
PHASES = (
    ("warning", "warning"),
    ("pre-snapshot", "old.presnapshot"),  # make-before-break: taken while the application serves
    ("replacement running", "new.launched"),
    ("replacement ready", "new.ready"),  # its agent is up and waiting for the data
    ("cut-over", "old.cutover"),  # make-before-break: the replacement ready, or the deadline
    ("stop sent", "old.stopping"),
    ("app stopped", "old.stopped"),
    ("snapshot requested", "old.snapshot"),
    ("volume released", "old.released"),
    ("volume attached", "new.attached"),
    ("EIP moved", "new.address"),  # the launch hook moves the address before it lets the instance boot on
    ("mounted", "new.boot-mounted"),
    ("app started", "new.boot-app_started"),
    ("success", "new.reported"),
)


class DrillFailed(RecoveryError):
    """The recovery the drill started did not succeed (abandoned, or no replacement in time)."""

    code = "DrillFailed"


def duration_seconds(duration):
    match = DURATION.match(duration or "")
    if not match or not any(match.groups()):
        raise InvalidInput(f"duration_before_interruption {duration!r} must be an ISO 8601 duration such as PT2M")
    seconds = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    if not 120 <= seconds <= 900:
        raise InvalidInput(f"duration_before_interruption {duration} must be between PT2M and PT15M (AWS FIS)")
    return seconds


def template_request(lineage, role_arn, stop_condition_alarm_arn=None, duration="PT2M", count=1, tags=None):
    """The FIS experiment template that interrupts ``count`` running Spot instances of a lineage."""
    duration_seconds(duration)
    if not isinstance(count, int) or count < 1:
        raise InvalidInput("count must be a positive integer")
    stop_conditions = (
        [{"source": "aws:cloudwatch:alarm", "value": stop_condition_alarm_arn}]
        if stop_condition_alarm_arn
        else [{"source": "none"}]
    )
    return {
        "description": f"ec2spot.autorecover drill: interrupt {count} Spot instance(s) of lineage {lineage}",
        "roleArn": role_arn,
        "stopConditions": stop_conditions,
        "targets": {
            "SpotInstances": {
                "resourceType": "aws:ec2:spot-instance",
                "resourceTags": {t.LINEAGE: lineage},
                "filters": [{"path": "State.Name", "values": ["running"]}],
                "selectionMode": f"COUNT({count})",
            }
        },
        "actions": {
            "interrupt": {
                "actionId": ACTION,
                "description": "the two-minute warning, then the reclaim",
                "parameters": {"durationBeforeInterruption": duration},
                "targets": {"SpotInstances": "SpotInstances"},
            }
        },
        "tags": dict(tags or {}, **{t.LINEAGE: lineage, DRILL_TAG: DRILL_KIND}),
    }


def find_templates(fis, lineage):
    """The drill templates of a lineage (found by their tags)."""
    return [
        summary
        for summary in paginate(fis, "list_experiment_templates", "experimentTemplates")
        if (summary.get("tags") or {}).get(t.LINEAGE) == lineage
        and (summary.get("tags") or {}).get(DRILL_TAG) == DRILL_KIND
    ]


def _comparable(template):
    compared = {key: template.get(key) for key in ("description", "roleArn", "stopConditions", "targets")}
    compared["actions"] = {
        name: {key: value for key, value in action.items() if key in ("actionId", "parameters", "targets")}
        for name, action in (template.get("actions") or {}).items()
    }
    return compared


def ensure_template(fis, request, check_mode=False):
    """Create or update the lineage's drill template. Returns ``(template_id or None, changed, before, after)``."""
    lineage = request["tags"][t.LINEAGE]
    found = find_templates(fis, lineage)
    if len(found) > 1:
        raise InvalidInput(
            f"lineage {lineage} has {len(found)} drill templates ({', '.join(s['id'] for s in found)}); "
            "delete all but one"
        )
    wanted = _comparable(request)
    if not found:
        if check_mode:
            return None, True, None, wanted
        created = call(fis, "create_experiment_template", **request)["experimentTemplate"]
        return created["id"], True, None, wanted
    current = call(fis, "get_experiment_template", id=found[0]["id"])["experimentTemplate"]
    before = _comparable(current)
    if before == wanted:
        return current["id"], False, before, wanted
    if not check_mode:
        removed = {
            "targets": set(current.get("targets") or {}) - set(request["targets"]),
            "actions": set(current.get("actions") or {}) - set(request["actions"]),
        }
        update = {key: value for key, value in request.items() if key != "tags"}
        # UpdateExperimentTemplate merges by name: a name mapped to nothing removes it.
        for key, names in removed.items():
            update[key] = dict(update[key], **{name: {} for name in names}) if names else update[key]
        call(fis, "update_experiment_template", id=current["id"], **update)
    return current["id"], True, before, wanted


def delete_templates(fis, lineage, check_mode=False):
    found = [summary["id"] for summary in find_templates(fis, lineage)]
    if not check_mode:
        for template_id in found:
            call(fis, "delete_experiment_template", id=template_id)
    return found


def spot_candidates(ec2, lineage):
    """Running Spot instances of a lineage: what the template would interrupt."""
    return sorted(
        instance["InstanceId"] for instance in find_instances(ec2, {t.LINEAGE: lineage}, ("running",), spot_only=True)
    )


def start(fis, template_id, client_token):
    """Start an experiment; returns ``(experiment_id, start_time, interrupted instance ids)``."""
    experiment = call(fis, "start_experiment", experimentTemplateId=template_id, clientToken=client_token)["experiment"]
    state = (experiment.get("state") or {}).get("status")
    resolved = [
        target["targetInformation"]["arn"].rsplit("/", 1)[-1]
        for target in paginate(
            fis, "list_experiment_resolved_targets", "resolvedTargets", experimentId=experiment["id"]
        )
        if target.get("resourceType") == "aws:ec2:spot-instance"
    ]
    if state == "failed" or not resolved:
        reason = (experiment.get("state") or {}).get("reason", "no target resolved")
        raise NotFound(
            f"experiment {experiment['id']} interrupted nothing ({reason}): no running Spot instance matched"
        )
    return experiment["id"], experiment["startTime"], resolved


def find_replacement(ec2, lineage, old_instance_id):
    """The instance whose ``replaces`` progress names ``old_instance_id``, or None."""
    for reservation in paginate(
        ec2,
        "describe_instances",
        "Reservations",
        Filters=[
            {"Name": f"tag:{t.LINEAGE}", "Values": [lineage]},
            {"Name": "tag-key", "Values": [progress.PROGRESS + "replaces"]},
        ],
    ):
        for instance in reservation["Instances"]:
            if progress.outcome_of(progress.read(instance).get("replaces", "")) == old_instance_id:
                return instance
    return None


def recovery_steps(ec2, lineage, old_instance_id):
    """``(old, new, steps)``: both instances described (``{}`` while not found) and every step the handler has
    recorded on them, ``{"old.stopped": tag value, "new.attached": ...}`` (``progress.time_of`` reads the time)."""
    try:
        old = describe_instance(ec2, old_instance_id)
    except NotFound:  # not described (yet or any more): keep waiting, as for a missing replacement
        old = {}
    new = find_replacement(ec2, lineage, old_instance_id) or {}
    steps = {f"old.{step}": value for step, value in progress.read(old).items()}
    steps.update({f"new.{step}": value for step, value in progress.read(new).items()})
    return old, new, steps


def watch(ec2, lineage, old_instance_id, timeout, clock=SYSTEM_CLOCK, poll=2.0, on_progress=None):
    """Wait until the replacement of ``old_instance_id`` reported success; returns ``(old, new)`` described.

    ``on_progress(steps)`` is called with every newly seen step name (``old.stopped``, ``new.attached``...)."""
    deadline, seen = clock.monotonic() + timeout, set()
    while True:
        old, new, recorded = recovery_steps(ec2, lineage, old_instance_id)
        steps = set(recorded)
        if on_progress and steps - seen:
            on_progress(sorted(steps - seen))
        seen |= steps
        if "new.abandoned" in steps:
            raise DrillFailed(f"the replacement {new['InstanceId']} was abandoned: {progress.read(new)['abandoned']}")
        if "new.reported" in steps:
            return old, new
        if clock.monotonic() > deadline:
            where = ", ".join(sorted(steps)) or "nothing recorded"
            raise WaitTimeout(
                f"timed out after {timeout:g}s waiting for the recovery of {old_instance_id} (so far: {where})",
                waited_for="recovery",
            )
        clock.sleep(poll)


def timeline(old, new, warned_at, scale=1.0):
    """Phases of one recovery: ``(phases, report)`` with seconds since the warning (times ``scale``)."""
    old_steps, new_steps = progress.read(old), progress.read(new)
    stamps = {f"old.{step}": progress.time_of(value) for step, value in old_steps.items()}
    stamps.update({f"new.{step}": progress.time_of(value) for step, value in new_steps.items()})
    stamps["warning"] = warned_at
    if new.get("LaunchTime"):
        stamps["new.launched"] = new["LaunchTime"]
    phases = {
        name: round((stamps[source] - warned_at).total_seconds() * scale, 1)
        for name, source in PHASES
        if source in stamps
    }
    back = [phases[name] for name in ("app started", "EIP moved") if name in phases]
    down = phases.get("stop sent", phases.get("app stopped"))
    attached = progress.outcome_of(new_steps.get("attached", ""))
    origin = progress.read_outcome(new_steps, "attached")
    from_snapshot = origin is not None and origin.restored
    stopped_ok = progress.outcome_of(old_steps.get("stopped", "")) == "ok"
    if not from_snapshot:
        rpo = 0.0
    elif stopped_ok and phases.get("snapshot requested", 0) >= phases.get("app stopped", float("inf")):
        rpo = 0.0
    else:
        reclaim = NOTICE_LEAD * scale
        rpo = max(0.0, round(reclaim - phases.get("snapshot requested", reclaim), 1))
    report = {
        "interrupted_instance_id": old.get("InstanceId"),
        "replacement_instance_id": new.get("InstanceId"),
        "az_case": "same-az" if _zone(old) == _zone(new) else "other-az",
        "zones": {"interrupted": _zone(old), "replacement": _zone(new)},
        "data": attached,
        "app_stopped_cleanly": stopped_ok,
        "rto_seconds": round(max(back) - down, 1) if back and down is not None else None,
        "serving": {"old_until": down, "replacement_from": max(back) if back else None},
        "recovery_seconds": phases.get("success"),
        "rpo_seconds": rpo,
        "public_ip": new.get("PublicIpAddress"),
    }
    return phases, report


def _zone(instance):
    return (instance.get("Placement") or {}).get("AvailabilityZone")


def warned_at_of(start_time, duration):
    """The warning comes two minutes before the interruption: at the start for PT2M, later for longer ones."""
    return start_time + timedelta(seconds=duration_seconds(duration) - NOTICE_LEAD)
