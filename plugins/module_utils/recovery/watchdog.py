# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CPU watchdog (seed 004): a CloudWatch alarm on ``CPUUtilization`` and what follows it.

Two modes, chosen per service (``watchdog.mode``):

* ``alarm-reboot``: the alarm's own EC2 action (``arn:aws:automate:<region>:ec2:reboot``) reboots
  the instance and its boot starts the application; the handler only reports each reboot, and when
  the cap is hit it disables the alarm's actions (``DisableAlarmActions``) and alerts, which is the
  only way to stop a loop the alarm itself drives;
* ``handler``: the handler reboots the instance (``RebootInstances``), waits, bounded and by polling,
  until it runs with both status checks ``ok``, then restarts the application through SSM Run
  Command (``AWS-RunShellScript``, the configured commands; the seed's ``docker-compose up -d``).

Reboot loops are guarded in both modes: no reboot within ``cooldown`` seconds of the previous one,
at most ``max_reboots_per_hour`` per rolling hour; the cap alert goes to SNS instead of a reboot.
The Lambda keeps no memory between invocations, so the history lives on the instance itself, in the
tag ``ec2spot:watchdog:reboots`` (the times of the reboots of the last hour), beside the id of the last
alarm event handled (``ec2spot:watchdog:event``) so a redelivered event reboots nothing twice.

The instance needs the SSM managed-instance policy (``AmazonSSMManagedInstanceCore``) on its
instance profile; without it SSM does not know the instance (``DescribeInstanceInformation``) and
SendCommand fails with "Instances [...] not in a valid state". ``ssm_knows`` checks first so the
report says which policy is missing instead of that message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from . import tags as t
from .aws import SYSTEM_CLOCK, call
from .commands import SSM_POLICY, run_shell
from .errors import InvalidInput, optional_name, require_section

MODES = ("alarm-reboot", "handler")
HISTORY_TAG = t.PREFIX + "watchdog:reboots"
EVENT_TAG = t.PREFIX + "watchdog:event"
WINDOW = timedelta(hours=1)
DEFAULT_COMMANDS = ("docker-compose up -d",)
SECTION_KEYS = frozenset(
    {"mode", "commands", "cooldown", "max_reboots_per_hour", "ready_timeout", "command_timeout", "alarm_prefix"}
)
REBOOT = "reboot"
COOLDOWN = "cooldown"
CAP = "cap"


@dataclass(frozen=True)
class WatchdogSettings:
    """A service's ``watchdog`` section (see ``config.py``)."""

    mode: str = "handler"
    commands: tuple = DEFAULT_COMMANDS
    cooldown: int = 600
    max_reboots_per_hour: int = 2
    ready_timeout: int = 600
    command_timeout: int = 120
    alarm_prefix: str | None = None


def _bounded_int(raw, key, default, lower, upper, where, unit):
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lower <= value <= upper:
        raise InvalidInput(f"{where}.{key} must be an integer from {lower} to {upper}{unit}")
    return value


def parse_settings(raw, where):
    """Validate a ``watchdog`` section; ``InvalidInput`` naming the key otherwise."""
    require_section(raw, where, SECTION_KEYS, f"an object with a mode ({' or '.join(MODES)})")
    if raw.get("mode") not in MODES:
        raise InvalidInput(f"{where}.mode must be one of {', '.join(MODES)}, got {raw.get('mode')!r}")
    commands = raw.get("commands", list(DEFAULT_COMMANDS))
    if not isinstance(commands, list) or not commands or not all(isinstance(c, str) and c.strip() for c in commands):
        raise InvalidInput(
            f"{where}.commands must be a non-empty list of non-empty strings (AWS-RunShellScript commands)"
        )
    prefix = optional_name(raw, "alarm_prefix", where)
    ready = _bounded_int(raw, "ready_timeout", 600, 30, 900, where, " (seconds; the function runs 15 minutes at most)")
    command = _bounded_int(raw, "command_timeout", 120, 5, 900, where, " (seconds)")
    if ready + command > 900:
        raise InvalidInput(
            f"{where}.ready_timeout + command_timeout must fit in the function's 900 seconds, got {ready + command}"
        )
    return WatchdogSettings(
        mode=raw["mode"],
        commands=tuple(commands),
        cooldown=_bounded_int(raw, "cooldown", 600, 0, 86400, where, " (seconds)"),
        max_reboots_per_hour=_bounded_int(raw, "max_reboots_per_hour", 2, 1, 20, where, ""),
        ready_timeout=ready,
        command_timeout=command,
        alarm_prefix=prefix,
    )


def _stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def history(instance, now):
    """Times of the instance's recorded reboots within the last hour, oldest first."""
    kept = []
    for word in t.as_dict(instance.get("Tags")).get(HISTORY_TAG, "").split():
        try:
            moment = datetime.fromisoformat(word.replace("Z", "+00:00"))
        except ValueError:
            continue  # a hand-edited tag: ignore the word, never fail the watchdog on it
        if moment.tzinfo is not None and now - moment < WINDOW:
            kept.append(moment)
    return sorted(kept)


def decide(past, now, settings):
    """``REBOOT``, ``COOLDOWN`` (too soon after the previous reboot) or ``CAP`` (the hour's cap reached)."""
    if len(past) >= settings.max_reboots_per_hour:
        return CAP
    if past and (now - past[-1]).total_seconds() < settings.cooldown:
        return COOLDOWN
    return REBOOT


def handled_event(instance):
    return t.as_dict(instance.get("Tags")).get(EVENT_TAG)


def record(ec2, instance_id, past, now, event_id, rebooted):
    """Keep the reboot history (and the event handled) on the instance's tags, in one idempotent call."""
    stamps = [_stamp(moment) for moment in past] + ([_stamp(now)] if rebooted else [])
    tag_values = {HISTORY_TAG: " ".join(stamps[-10:]), EVENT_TAG: event_id or _stamp(now)}
    call(ec2, "create_tags", Resources=[instance_id], Tags=t.as_list(tag_values))


def ssm_knows(ssm, instance_id):
    """``(True, ping status)`` when SSM manages the instance, ``(False, why)`` otherwise."""
    found = call(ssm, "describe_instance_information", Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])[
        "InstanceInformationList"
    ]
    if not found:
        return False, (
            f"SSM does not know {instance_id}: its instance profile needs the {SSM_POLICY} managed policy "
            f"(without it Run Command answers 'Instances [{instance_id}] not in a valid state')"
        )
    return True, found[0].get("PingStatus", "unknown")


def reboot(ec2, instance_id):
    call(ec2, "reboot_instances", InstanceIds=[instance_id])


def run_commands(ssm, instance_id, commands, timeout, comment, clock=SYSTEM_CLOCK, retry_for=60):
    """Run the restart ``commands``: ``"ok"`` or why not. Right after a reboot the SSM agent may not have
    reconnected yet: ``InvalidInstanceId`` is retried for ``retry_for`` seconds."""
    return run_shell(ssm, instance_id, commands, timeout, comment, clock, retry_for=retry_for)


# What PutMetricAlarm takes back from DescribeAlarms for one metric alarm (the watchdog's are never metric math).
_ALARM_FIELDS = (
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
)


def follow_replacement(cloudwatch, alarm_prefix, old_instance_id, new_instance_id):
    """Move the watched instance's CPU alarm (``<alarm_prefix><instance id>``) to its replacement.

    The cpu_watchdog role makes one alarm per instance of the group as it is when the role runs; a Spot
    replacement would go unwatched until the role ran again. The handler, which gives the replacement the data
    and the address, gives it the alarm too: the same definition with the new instance's dimension, then the old
    alarm deleted. Idempotent (a replacement already watched is left as it is); returns what it did, or None when
    the old instance was not watched.
    """
    old_name, new_name = alarm_prefix + old_instance_id, alarm_prefix + new_instance_id
    described = call(cloudwatch, "describe_alarms", AlarmNames=[old_name, new_name], AlarmTypes=["MetricAlarm"])
    found = {alarm["AlarmName"]: alarm for alarm in described["MetricAlarms"]}
    if new_name in found:
        if old_name in found:
            call(cloudwatch, "delete_alarms", AlarmNames=[old_name])
        return f"watchdog alarm {new_name} (existing)"
    if old_name not in found:
        return None
    old = found[old_name]
    definition = {key: old[key] for key in _ALARM_FIELDS if old.get(key) not in (None, [], "")}
    definition["ActionsEnabled"] = bool(old.get("ActionsEnabled", True))
    definition["Dimensions"] = [
        dict(d, Value=new_instance_id) if d.get("Name") == "InstanceId" else d for d in old.get("Dimensions", [])
    ]
    call(cloudwatch, "put_metric_alarm", AlarmName=new_name, **definition)
    call(cloudwatch, "delete_alarms", AlarmNames=[old_name])
    return f"watchdog alarm {new_name} (moved from {old_instance_id})"
