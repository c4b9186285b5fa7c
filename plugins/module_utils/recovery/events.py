# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The events the interruption handler acts on, parsed and validated.

Every SQS message body is expected to be one EventBridge event. Anything else (not JSON,
a wrong source, a missing or mistyped field, an id that is not an EC2 id, a huge payload)
raises ``InvalidEvent`` with the reason; the handler logs it, counts it and deletes the
message, so a hostile or broken message can never crash-loop the queue.

The envelope is trusted only when it is AWS's and ours (EventBridge user guide, "Amazon
EventBridge events" and "Event structure reference"): ``version`` "0"; ``account`` and
``region`` the function's own (the Lambda entry point reads them from its context, never
from configuration or a constant); a ``source`` that matches its ``detail-type`` (EventBridge
refuses ``PutEvents`` with an ``aws.`` source, so ``aws.ec2`` events come from AWS); and,
when ``resources`` is present, ARNs that name the same instance (or group, or alarm) as
``detail``. The body must be UTF-8 JSON without duplicate keys or non-standard constants;
ids must match in full (``re.fullmatch``: ``$`` would let a final newline through).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from .errors import RecoveryError

MAX_BODY_BYTES = 256 * 1024
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
TOKEN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
GROUP_NAME = re.compile(r"[\w+=,.@/ -]{1,255}")
ACCOUNT_ID = re.compile(r"[0-9]{12}")
REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")
ENVELOPE_VERSION = "0"
EVENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
# Spot interruption behaviours (EC2 user guide, "Interruption behavior for Spot Instances").
INSTANCE_ACTIONS = ("terminate", "stop", "hibernate")
# Lifecycle action Origin and Destination (EC2 Auto Scaling user guide, "Warm pool instance lifecycle").
LIFECYCLE_PLACES = ("EC2", "AutoScalingGroup", "WarmPool")
WARM_POOL = "WarmPool"

SPOT_WARNING = "spot-warning"
REBALANCE = "rebalance"
LAUNCH_ACTION = "launch-action"
TERMINATE_ACTION = "terminate-action"
STATE_CHANGE = "state-change"
BOOT_REPORT = "boot-report"
REPLACEMENT_READY = "replacement-ready"
CUTOVER_DEADLINE = "cutover-deadline"
SCHEDULED_BACKUP = "scheduled-backup"
ALARM = "alarm"
HEALTH = "health"
MAINTENANCE = "maintenance"
SWEEP = "sweep"
# A boot report's status: the agent mounted the data and started the application, or it did not and says why.
BOOT_STATUSES = ("ok", "refused", "timed-out")
ALARM_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
ALARM_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
LINEAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# ARNs in ``resources``: an instance (EC2 writes an availability zone where the region goes), a group, an alarm.
INSTANCE_ARN = re.compile(r"arn:aws[a-z-]*:ec2:[a-z0-9-]*:([0-9]{12}):instance/(.+)")
GROUP_ARN = re.compile(
    r"arn:aws[a-z-]*:autoscaling:[a-z0-9-]+:([0-9]{12}):autoScalingGroup:[^:]*:autoScalingGroupName/(.+)"
)
ALARM_ARN = re.compile(r"arn:aws[a-z-]*:cloudwatch:[a-z0-9-]+:([0-9]{12}):alarm:(.+)")

# (source, detail-type) -> kind
KINDS = {
    ("aws.ec2", "EC2 Spot Instance Interruption Warning"): SPOT_WARNING,
    ("aws.ec2", "EC2 Instance Rebalance Recommendation"): REBALANCE,
    ("aws.ec2", "EC2 Instance State-change Notification"): STATE_CHANGE,
    ("aws.autoscaling", "EC2 Instance-launch Lifecycle Action"): LAUNCH_ACTION,
    ("aws.autoscaling", "EC2 Instance-terminate Lifecycle Action"): TERMINATE_ACTION,
    # Sent by the instance agent when a replacement finished booting (mounted, app started).
    ("ec2spot.autorecover", "EC2Spot Recovery Boot Report"): BOOT_REPORT,
    # Sent by the instance agent when an instance is up and no data volume is attached to it yet.
    ("ec2spot.autorecover", "EC2Spot Replacement Ready"): REPLACEMENT_READY,
    # Sent by the handler to its own queue, delayed until a make-before-break cut-over's deadline (handler/cutover.py).
    ("ec2spot.autorecover", "EC2Spot Cut-over Deadline"): CUTOVER_DEADLINE,
    # Sent by the schedule backup.yml installs (an EventBridge scheduled rule -> the queue): back up a lineage, apply retention.
    ("ec2spot.autorecover", "EC2Spot Scheduled Backup"): SCHEDULED_BACKUP,
    # A CloudWatch alarm changed state (the standby's status-check / CPU alarms, the CPU watchdog).
    ("aws.cloudwatch", "CloudWatch Alarm State Change"): ALARM,
    # AWS Health: EC2 scheduled events (retirement, stop, reboot, maintenance) and EBS volume events.
    ("aws.health", "AWS Health Event"): HEALTH,
    # Sent by the instance agent when its metadata lists a scheduled event (events/maintenance/scheduled).
    ("ec2spot.autorecover", "EC2Spot Scheduled Maintenance"): MAINTENANCE,
    # The control plane's backstop schedule: look for what no event announced.
    ("ec2spot.autorecover", "EC2Spot Sweep"): SWEEP,
}

# AWS Health event types that announce the loss of an instance's or a volume's service: each is handled as a
# planned interruption of the lineage's holder (AWS Health user guide, event type codes; EC2 user guide,
# "Scheduled events for your instances"). The EC2 scheduled-event code each corresponds to is the second item.
PLANNED_HEALTH_CODES = {
    "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED": "instance-retirement",
    "AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED": "instance-retirement",
    "AWS_EC2_INSTANCE_STOP_SCHEDULED": "instance-stop",
    "AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED": "instance-reboot",
    "AWS_EC2_INSTANCE_REBOOT_FLEXIBLE_MAINTENANCE_SCHEDULED": "instance-reboot",
    "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED": "system-reboot",
    "AWS_EC2_SYSTEM_MAINTENANCE_EVENT": "system-maintenance",
    "AWS_EBS_VOLUME_LOST": "volume-lost",
}
# EC2 scheduled event codes (DescribeInstanceStatus Events, instance metadata events/maintenance/scheduled).
SCHEDULED_EVENT_CODES = (
    "instance-retirement",
    "instance-stop",
    "instance-reboot",
    "system-reboot",
    "system-maintenance",
)
HEALTH_CODE = re.compile(r"[A-Z0-9_]{1,100}")
VOLUME_ID = re.compile(r"vol-[0-9a-f]{8,17}")


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
    code: str | None = None  # a planned event's EC2 code (instance-retirement, ...)
    start: datetime | None = None  # when a planned event begins (never hand off after it)
    entities: tuple = ()  # the instance and volume ids a Health event affects


def printable(text, limit=400):
    """``text`` for a log line: control characters (and the line and paragraph separators) escaped, at most
    ``limit`` characters. Event fields reach the log; a newline or an escape sequence in one must not forge
    a line or repaint a terminal."""
    text = str(text)[:limit]
    return "".join(
        ch if ch.isprintable() and ch not in "\u2028\u2029" else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _string(detail, key, pattern=None, required=True):
    value = detail.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"detail.{key} must be a non-empty string, got {type(value).__name__}")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidEvent(f"detail.{key} {value[:80]!r} is not valid")
    return value


def _unique_keys(pairs):
    found = {}
    for key, value in pairs:
        if key in found:
            raise InvalidEvent(
                f"message body repeats the key {key[:60]!r} (duplicate keys): which one counts is a guess"
            )
        found[key] = value
    return found


def _no_constant(name):
    raise InvalidEvent(f"message body is not JSON: {name} is not a JSON value")


def _decode(body):
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"message body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    if not isinstance(body, str):
        raise InvalidEvent(f"message body must be a string, got {type(body).__name__}")
    try:
        size = len(body.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate: not text any JSON producer writes
        raise InvalidEvent(f"message body is not UTF-8: {exc.reason} at character {exc.start}") from exc
    if size > MAX_BODY_BYTES:
        raise InvalidEvent(f"message body is {size} bytes, over the {MAX_BODY_BYTES} bytes an event can be")
    try:
        return json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except InvalidEvent:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(f"message body is not JSON: {printable(exc, 200)}") from exc


def _check_envelope(envelope, account, region):
    """AWS's envelope, for this function's own account and region."""
    if envelope.get("version") != ENVELOPE_VERSION:
        raise InvalidEvent(
            f"event version {printable(envelope.get('version'), 20)!r} is not {ENVELOPE_VERSION!r}, "
            f"the only EventBridge envelope version"
        )
    event_account, event_region = envelope.get("account"), envelope.get("region")
    if not isinstance(event_account, str) or not ACCOUNT_ID.fullmatch(event_account):
        raise InvalidEvent(f"event account {printable(event_account, 20)!r} is not an account id")
    if event_account != account:
        raise InvalidEvent(f"event account {event_account} is not this function's ({account}): not acted on")
    if not isinstance(event_region, str) or not REGION_NAME.fullmatch(event_region):
        raise InvalidEvent(f"event region {printable(event_region, 30)!r} is not a region")
    if event_region != region:
        raise InvalidEvent(f"event region {event_region} is not this function's ({region}): not acted on")
    resources = envelope.get("resources", [])
    if resources is None:
        resources = []
    if not isinstance(resources, list) or len(resources) > 20 or not all(isinstance(r, str) for r in resources):
        raise InvalidEvent("event resources must be a list of ARNs")
    return resources


def _check_resources(resources, account, instance_id=None, group=None, alarm=None):
    """Each ARN in ``resources`` of a kind the event names must name the same resource, in this account."""
    for arn in resources:
        for pattern, expected, what in (
            (INSTANCE_ARN, instance_id, "instance"),
            (GROUP_ARN, group, "group"),
            (ALARM_ARN, alarm, "alarm"),
        ):
            found = pattern.fullmatch(arn)
            if not found or expected is None:
                continue
            if found.group(1) != account:
                raise InvalidEvent(f"event resources name a {what} of account {found.group(1)}, not {account}")
            if found.group(2) != expected:
                raise InvalidEvent(
                    f"event resources name {what} {printable(found.group(2), 80)} but its detail names "
                    f"{expected}: which one is meant is a guess"
                )


def parse(body, *, account, region):
    """One SQS message body -> ``Event``; ``InvalidEvent`` with the reason otherwise.

    ``account`` and ``region`` are the function's own: an event for another account or region is refused.
    """
    envelope = _decode(body)
    if not isinstance(envelope, dict):
        raise InvalidEvent("message body is not an EventBridge event (not an object)")
    resources = _check_envelope(envelope, account, region)
    source, detail_type = envelope.get("source"), envelope.get("detail-type")
    kind = KINDS.get((source, detail_type)) if isinstance(source, str) and isinstance(detail_type, str) else None
    if kind is None:
        raise InvalidEvent(
            f"unexpected event source/detail-type {printable(source, 60)!r}/{printable(detail_type, 80)!r}"
        )
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise InvalidEvent("event detail must be an object")
    try:
        when = datetime.fromisoformat(str(envelope.get("time", "")).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent(f"event time {printable(envelope.get('time'), 40)!r} is not ISO 8601") from exc
    if when.tzinfo is None:
        raise InvalidEvent("event time has no time zone")
    event_id = envelope.get("id") if isinstance(envelope.get("id"), str) and EVENT_ID.fullmatch(envelope["id"]) else ""
    if kind == SCHEDULED_BACKUP:
        _string(detail, "lineage", LINEAGE_NAME)
        for key, upper in (("keep_newest", 1000), ("max_age_days", 3650)):
            value = detail.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper):
                raise InvalidEvent(f"detail.{key} must be an integer from 1 to {upper}")
        if not isinstance(detail.get("create_image", False), bool):
            raise InvalidEvent("detail.create_image must be true or false")
        return Event(kind=kind, instance_id=None, time=when, event_id=event_id, detail=detail)
    if kind == HEALTH:
        return _health(detail, when, event_id, account)
    if kind == SWEEP:
        return Event(kind=kind, instance_id=None, time=when, event_id=event_id, detail=detail)
    if kind == MAINTENANCE:
        instance_id = _string(detail, "instance-id", INSTANCE_ID)
        code = _string(detail, "code")
        if code not in SCHEDULED_EVENT_CODES:
            raise InvalidEvent(f"detail.code {printable(code, 40)!r} is not an EC2 scheduled event code")
        return Event(
            kind=kind,
            instance_id=instance_id,
            time=when,
            event_id=event_id,
            detail=detail,
            code=code,
            start=_moment(detail.get("not-before"), "detail.not-before"),
        )
    if kind == ALARM:
        event = _alarm(detail, when, event_id)
        _check_resources(resources, account, alarm=detail["alarmName"])
        return event
    if kind in (LAUNCH_ACTION, TERMINATE_ACTION):
        instance_id, group = (
            _string(detail, "EC2InstanceId", INSTANCE_ID),
            _string(detail, "AutoScalingGroupName", GROUP_NAME),
        )
        for key in ("Origin", "Destination"):
            if detail.get(key) is not None and detail.get(key) not in LIFECYCLE_PLACES:
                raise InvalidEvent(
                    f"detail.{key} {printable(detail.get(key), 40)!r} is not one of {', '.join(LIFECYCLE_PLACES)}"
                )
        _check_resources(resources, account, instance_id=instance_id, group=group)
        return Event(
            kind=kind,
            instance_id=instance_id,
            time=when,
            event_id=event_id,
            detail=detail,
            group=group,
            hook=_string(detail, "LifecycleHookName", GROUP_NAME),
            token=_string(detail, "LifecycleActionToken", TOKEN),
        )
    instance_id = _string(detail, "instance-id", INSTANCE_ID)
    _check_resources(resources, account, instance_id=instance_id)
    if kind == BOOT_REPORT and detail.get("status", "ok") not in BOOT_STATUSES:
        raise InvalidEvent(
            f"detail.status {printable(detail.get('status'), 40)!r} is not one of {', '.join(BOOT_STATUSES)}"
        )
    if kind == SPOT_WARNING and detail.get("instance-action") not in INSTANCE_ACTIONS:
        raise InvalidEvent(
            f"detail.instance-action {printable(detail.get('instance-action'), 40)!r} is not terminate, stop "
            f"or hibernate"
        )
    state = _string(detail, "state", re.compile(r"[a-z-]{3,20}")) if kind == STATE_CHANGE else None
    return Event(kind=kind, instance_id=instance_id, time=when, event_id=event_id, detail=detail, state=state)


def _moment(value, where):
    """A time as AWS writes it in these events: ISO 8601, RFC 1123 (AWS Health) or ``21 Jan 2019 09:00:43 GMT``
    (instance metadata); always with a time zone."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise InvalidEvent(f"{where} must be a time, got {printable(value, 40)!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError) as exc:
            raise InvalidEvent(f"{where} {printable(value, 40)!r} is not a time") from exc
    if moment is None or moment.tzinfo is None:
        raise InvalidEvent(f"{where} {printable(value, 40)!r} has no time zone")
    return moment.astimezone(timezone.utc)


def _health(detail, when, event_id, account):
    """``AWS Health Event``: the event type, its start and the instances and volumes it affects (its own
    ``affectedAccount`` must be ours). Event types this handler does not act on parse with ``code`` None."""
    service = _string(detail, "service", re.compile(r"[A-Z0-9]{1,20}"))
    type_code = _string(detail, "eventTypeCode", HEALTH_CODE)
    if detail.get("affectedAccount") is not None and detail.get("affectedAccount") != account:
        raise InvalidEvent(f"detail.affectedAccount {printable(detail.get('affectedAccount'), 20)} is not {account}")
    entities = detail.get("affectedEntities", [])
    if not isinstance(entities, list) or len(entities) > 100:
        raise InvalidEvent("detail.affectedEntities must be a list (at most 100)")
    ids = []
    for entity in entities:
        value = entity.get("entityValue") if isinstance(entity, dict) else None
        if isinstance(value, str) and (INSTANCE_ID.fullmatch(value) or VOLUME_ID.fullmatch(value)):
            ids.append(value)
    code = PLANNED_HEALTH_CODES.get(type_code) if service in ("EC2", "EBS") else None
    start = _moment(detail.get("startTime"), "detail.startTime") if code else None
    return Event(
        kind=HEALTH,
        instance_id=None,
        time=when,
        event_id=event_id,
        detail=detail,
        code=code,
        start=start,
        entities=tuple(ids),
        state=str(detail.get("statusCode", ""))[:20],
    )


def _alarm(detail, when, event_id):
    """``CloudWatch Alarm State Change``: the alarm's name, its new state and the instance its metric watches
    (the ``InstanceId`` dimension, in ``configuration.metrics[].metricStat.metric.dimensions``)."""
    name = _string(detail, "alarmName", ALARM_NAME)
    state = detail.get("state")
    if not isinstance(state, dict) or state.get("value") not in ALARM_STATES:
        raise InvalidEvent(f"detail.state.value of alarm {name[:80]!r} must be one of {', '.join(ALARM_STATES)}")
    metrics = (
        (detail.get("configuration") or {}).get("metrics") if isinstance(detail.get("configuration"), dict) else None
    )
    if not isinstance(metrics, list):
        raise InvalidEvent(f"alarm {name[:80]!r}: detail.configuration.metrics must be a list")
    for query in metrics[:20]:
        stat = query.get("metricStat") if isinstance(query, dict) else None
        metric = stat.get("metric") if isinstance(stat, dict) else None
        dimensions = metric.get("dimensions") if isinstance(metric, dict) else None
        if isinstance(dimensions, dict) and "InstanceId" in dimensions:
            instance_id = _string(dimensions, "InstanceId", INSTANCE_ID)
            return Event(
                kind=ALARM,
                instance_id=instance_id,
                time=when,
                event_id=event_id,
                state=state["value"],
                detail={**detail, "metric": str(metric.get("name", ""))[:255]},
            )
    raise InvalidEvent(f"alarm {name[:80]!r} watches no metric with an InstanceId dimension")
