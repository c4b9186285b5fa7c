# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The events the interruption handler acts on, parsed and validated.

Every SQS message body is expected to be one EventBridge event. Anything else (not JSON,
a wrong source, a missing or mistyped field, an id that is not an EC2 id, a huge payload)
raises ``InvalidEvent`` with the reason; the handler logs it, counts it and deletes the
message, so a hostile or broken message can never crash-loop the queue.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from .errors import RecoveryError

MAX_BODY_BYTES = 256 * 1024
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
TOKEN = re.compile(r"^[0-9a-fA-F-]{36}$")
GROUP_NAME = re.compile(r"^[\w+=,.@/ -]{1,255}$")

SPOT_WARNING = "spot-warning"
REBALANCE = "rebalance"
LAUNCH_ACTION = "launch-action"
TERMINATE_ACTION = "terminate-action"
STATE_CHANGE = "state-change"
BOOT_REPORT = "boot-report"
SCHEDULED_BACKUP = "scheduled-backup"
ALARM = "alarm"
ALARM_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
ALARM_NAME = re.compile(r"^[^\x00-\x1f]{1,255}$")
LINEAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# (source, detail-type) -> kind
KINDS = {
    ("aws.ec2", "EC2 Spot Instance Interruption Warning"): SPOT_WARNING,
    ("aws.ec2", "EC2 Instance Rebalance Recommendation"): REBALANCE,
    ("aws.ec2", "EC2 Instance State-change Notification"): STATE_CHANGE,
    ("aws.autoscaling", "EC2 Instance-launch Lifecycle Action"): LAUNCH_ACTION,
    ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action"): TERMINATE_ACTION,
    # Sent by the instance agent when a replacement finished booting (mounted, app started).
    ("ec2spot.autorecover", "EC2Spot Recovery Boot Report"): BOOT_REPORT,
    # Sent by the schedule backup.yml installs (an EventBridge scheduled rule -> the queue): back up a lineage, apply retention.
    ("ec2spot.autorecover", "EC2Spot Scheduled Backup"): SCHEDULED_BACKUP,
    # A CloudWatch alarm changed state (the standby's status-check / CPU alarms, the CPU watchdog).
    ("aws.cloudwatch", "CloudWatch Alarm State Change"): ALARM,
}


class InvalidEvent(RecoveryError):
    """A message the handler cannot act on; dropped (and counted), never retried."""

    code = "InvalidEvent"


@dataclass(frozen=True)
class Event:
    kind: str
    instance_id: str | None
    time: datetime
    event_id: str
    detail: dict = field(default_factory=dict)
    group: str | None = None
    hook: str | None = None
    token: str | None = None
    state: str | None = None


def _string(detail, key, pattern=None, required=True):
    value = detail.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"detail.{key} must be a non-empty string, got {type(value).__name__}")
    if pattern is not None and not pattern.match(value):
        raise InvalidEvent(f"detail.{key} {value[:80]!r} is not valid")
    return value


def parse(body):
    """One SQS message body -> ``Event``; ``InvalidEvent`` with the reason otherwise."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str):
        raise InvalidEvent(f"message body must be a string, got {type(body).__name__}")
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise InvalidEvent(f"message body is {len(body.encode('utf-8'))} bytes, over the {MAX_BODY_BYTES} bytes an event can be")
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        raise InvalidEvent(f"message body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise InvalidEvent("message body is not an EventBridge event (not an object)")
    source, detail_type = envelope.get("source"), envelope.get("detail-type")
    kind = KINDS.get((source, detail_type)) if isinstance(source, str) and isinstance(detail_type, str) else None
    if kind is None:
        raise InvalidEvent(f"unexpected event source/detail-type {str(source)[:60]!r}/{str(detail_type)[:80]!r}")
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise InvalidEvent("event detail must be an object")
    try:
        when = datetime.fromisoformat(str(envelope.get("time", "")).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent(f"event time {str(envelope.get('time'))[:40]!r} is not ISO 8601") from exc
    if when.tzinfo is None:
        raise InvalidEvent("event time has no time zone")
    event_id = envelope.get("id") if isinstance(envelope.get("id"), str) else ""
    if kind == SCHEDULED_BACKUP:
        _string(detail, "lineage", LINEAGE_NAME)
        for key, upper in (("keep_newest", 1000), ("max_age_days", 3650)):
            value = detail.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper):
                raise InvalidEvent(f"detail.{key} must be an integer from 1 to {upper}")
        if not isinstance(detail.get("create_image", False), bool):
            raise InvalidEvent("detail.create_image must be true or false")
        return Event(kind=kind, instance_id=None, time=when, event_id=event_id, detail=detail)
    if kind == ALARM:
        return _alarm(detail, when, event_id)
    if kind in (LAUNCH_ACTION, TERMINATE_ACTION):
        return Event(kind=kind, instance_id=_string(detail, "EC2InstanceId", INSTANCE_ID), time=when, event_id=event_id,
                     detail=detail, group=_string(detail, "AutoScalingGroupName", GROUP_NAME),
                     hook=_string(detail, "LifecycleHookName", GROUP_NAME), token=_string(detail, "LifecycleActionToken", TOKEN))
    instance_id = _string(detail, "instance-id", INSTANCE_ID)
    if kind == SPOT_WARNING and detail.get("instance-action") not in ("terminate", "stop", "hibernate"):
        raise InvalidEvent(f"detail.instance-action {str(detail.get('instance-action'))[:40]!r} is not terminate, stop or hibernate")
    state = _string(detail, "state", re.compile(r"^[a-z-]{3,20}$")) if kind == STATE_CHANGE else None
    return Event(kind=kind, instance_id=instance_id, time=when, event_id=event_id, detail=detail, state=state)


def _alarm(detail, when, event_id):
    """``CloudWatch Alarm State Change``: the alarm's name, its new state and the instance its metric watches
    (the ``InstanceId`` dimension, in ``configuration.metrics[].metricStat.metric.dimensions``)."""
    name = _string(detail, "alarmName", ALARM_NAME)
    state = detail.get("state")
    if not isinstance(state, dict) or state.get("value") not in ALARM_STATES:
        raise InvalidEvent(f"detail.state.value of alarm {name[:80]!r} must be one of {', '.join(ALARM_STATES)}")
    metrics = (detail.get("configuration") or {}).get("metrics") if isinstance(detail.get("configuration"), dict) else None
    if not isinstance(metrics, list):
        raise InvalidEvent(f"alarm {name[:80]!r}: detail.configuration.metrics must be a list")
    for query in metrics[:20]:
        stat = query.get("metricStat") if isinstance(query, dict) else None
        metric = stat.get("metric") if isinstance(stat, dict) else None
        dimensions = metric.get("dimensions") if isinstance(metric, dict) else None
        if isinstance(dimensions, dict) and "InstanceId" in dimensions:
            instance_id = _string(dimensions, "InstanceId", INSTANCE_ID)
            return Event(kind=ALARM, instance_id=instance_id, time=when, event_id=event_id, state=state["value"],
                         detail={**detail, "metric": str(metric.get("name", ""))[:255]})
    raise InvalidEvent(f"alarm {name[:80]!r} watches no metric with an InstanceId dimension")
