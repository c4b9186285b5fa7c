"""CloudWatch alarm state changes and EC2 status checks as AWS produces them.

AWS (CloudWatch user guide "Alarm events and EventBridge", "Using Amazon CloudWatch alarms" / "Alarm
actions", "Create alarms to stop, terminate, reboot, or recover an EC2 instance"; EC2 user guide
"Status checks for Amazon EC2 instances", API reference DescribeInstanceStatus, RebootInstances):

* every change of an alarm's state (evaluation or ``SetAlarmState``) puts ``CloudWatch Alarm State Change``
  (source ``aws.cloudwatch``, ``resources`` the alarm ARN) on the default bus, with ``detail``
  ``{"alarmName", "state": {"value", "reason", "reasonData", "timestamp"}, "previousState": {...},
  "configuration": {"description", "metrics": [{"id", "metricStat": {"metric": {"namespace", "name",
  "dimensions": {...}}, "period", "stat"}, "returnData": true}]}}``. Setting the state it already has
  changes nothing and emits nothing;
* with actions enabled, the actions of the new state run: ``arn:aws:automate:<region>:ec2:reboot``
  (also ``stop``, ``terminate``) acts on the instance of the alarm's ``InstanceId`` dimension, an SNS
  topic ARN gets the alarm's notification; ``DisableAlarmActions`` stops both;
* an instance's two status checks (``InstanceStatus``, ``SystemStatus`` in ``DescribeInstanceStatus``)
  are ``initializing`` after it starts running (launch, start, reboot) and ``ok`` once they pass, a
  few minutes later; a failing check is ``impaired`` (its ``reachability`` detail ``failed``, with
  ``ImpairedSince``); a stopped instance has ``not-applicable``. A reboot keeps the instance
  ``running`` (no state-change event);
* an alarm on one metric with a static threshold is evaluated on the most recent ``EvaluationPeriods``
  periods: ``DatapointsToAlarm`` of them breaching is ``ALARM``, otherwise ``OK``; periods without data
  count as ``TreatMissingData`` says (``missing``, the default, and ``ignore`` leave them out; all of them
  missing is ``INSUFFICIENT_DATA``, or no change for ``ignore``) ("Evaluating an alarm", "Configuring how
  CloudWatch alarms treat missing data"). ``evaluate_alarm`` does it for the metrics the sandbox publishes
  (``sqs_metrics.py``), with CloudWatch's ``StateReason`` wording.

The sandbox: the checks pass ``status_checks`` modeled seconds (default ``STATUS_CHECK_SECONDS``; the
``latency`` control sets it when the context knows the key) after the instance last began running
or rebooted. Control ``ec2/status`` (``instance_id``, ``instance`` / ``system``: ``impaired`` or ``ok``)
makes a check fail until set back to ``ok``. Every reboot (API or alarm action) is recorded (``records``
name ``reboots``), every alarm action too (``alarm_actions``).

moto 5.2.5: ``SetAlarmState`` changes the state and nothing else (no event, no action); no alarm is ever
evaluated against its metric; both status checks are ``ok`` the moment an instance runs, including right
after a start or a reboot, and can never fail.
"""

from __future__ import annotations

import json
import operator
from datetime import timedelta

from .. import instance_lifecycle as lifecycle

SOURCE = "aws.cloudwatch"
DETAIL_TYPE = "CloudWatch Alarm State Change"
STATUS_CHECK_SECONDS = 120.0
READY_ATTRIBUTE = "_sandbox_checks_pass_at"  # modeled elapsed seconds at which both checks pass
IMPAIRED_ATTRIBUTE = "_sandbox_impaired"  # {"instance": since, "system": since}
EC2_ACTIONS = ("reboot", "stop", "terminate")


def _aws_time(moment):
    """CloudWatch's event timestamps: 2024-05-01T10:00:00.123+0000."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def status_check_seconds(context):
    return float(context.latency.get("status_checks", STATUS_CHECK_SECONDS))


def _checks_begin(context, instance):
    setattr(instance, READY_ATTRIBUTE, context.clock.elapsed() + context.clock.duration(status_check_seconds(context)))


def _check(context, instance, which):
    if instance.state_code != 16:
        return {"Status": "not-applicable"}
    since = getattr(instance, IMPAIRED_ATTRIBUTE, {}).get(which)
    if since is not None:
        return {"Status": "impaired", "Details": [{"Name": "reachability", "Status": "failed", "ImpairedSince": since}]}
    if context.clock.elapsed() < getattr(instance, READY_ATTRIBUTE, 0.0):
        return {"Status": "initializing", "Details": [{"Name": "reachability", "Status": "initializing"}]}
    return {"Status": "ok", "Details": [{"Name": "reachability", "Status": "passed"}]}


def _dimensions(alarm):
    return {d.name: d.value for d in alarm.dimensions if d.name}


def _state(value, reason, reason_data, timestamp):
    state = {"value": value, "reason": reason or "", "timestamp": _aws_time(timestamp)}
    if reason_data:
        state["reasonData"] = reason_data
    return state


def alarm_event_detail(alarm, previous):
    """The ``detail`` of the event for ``alarm``'s current state; ``previous`` = (value, reason, data, time)."""
    metric_id = "m1"
    configuration = {
        "metrics": [
            {
                "id": metric_id,
                "metricStat": {
                    "metric": {
                        "namespace": alarm.namespace,
                        "name": alarm.metric_name,
                        "dimensions": _dimensions(alarm),
                    },
                    "period": alarm.period,
                    "stat": alarm.statistic or alarm.extended_statistic,
                },
                "returnData": True,
            }
        ]
    }
    if alarm.description:
        configuration["description"] = alarm.description
    return {
        "alarmName": alarm.name,
        "state": _state(alarm.state_value, alarm.state_reason, alarm.state_reason_data, alarm.state_updated_timestamp),
        "previousState": _state(*previous),
        "configuration": configuration,
    }


def _run_actions(context, alarm, detail):
    actions = {
        "ALARM": alarm.alarm_actions,
        "OK": alarm.ok_actions,
        "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
    }.get(alarm.state_value) or []
    if not alarm.actions_enabled:
        return
    for action in actions:
        parts = action.split(":")
        if action.startswith("arn:") and parts[2] == "automate" and parts[4] == "ec2" and parts[5] in EC2_ACTIONS:
            instance_id = _dimensions(alarm).get("InstanceId")
            outcome = _ec2_action(context, parts[3], parts[5], instance_id)
        elif action.startswith("arn:") and parts[2] == "sns":
            outcome = _notify(context, action, alarm, detail)
        else:
            outcome = "not modeled by the sandbox"
        context.record(
            "alarm_actions",
            {
                "alarm": alarm.name,
                "state": alarm.state_value,
                "action": action,
                "outcome": outcome,
                "at": context.now().isoformat(),
            },
        )


def _ec2_action(context, region, verb, instance_id):
    from moto.backends import get_backend
    from moto.core.exceptions import ServiceException

    if not instance_id:
        return "failed: the alarm has no InstanceId dimension"
    backend = get_backend("ec2")[context.account_id][region]
    try:
        instance = backend.get_instance(instance_id)
    except ServiceException:
        return f"failed: {instance_id} does not exist"
    if verb == "reboot":
        if instance.state != "running":
            return f"skipped: {instance_id} is {instance.state}"
        backend.reboot_instances([instance_id])
    elif verb == "stop":
        backend.stop_instances([instance_id])
    else:
        backend.terminate_instances([instance_id])
    return f"{verb} {instance_id}"


def _notify(context, topic_arn, alarm, detail):
    from moto.backends import get_backend

    region = topic_arn.split(":")[3]
    message = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": context.account_id,
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": detail["state"]["timestamp"],
        "Region": region,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": detail["previousState"]["value"],
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "Dimensions": [{"name": k, "value": v} for k, v in _dimensions(alarm).items()],
        },
    }
    try:
        get_backend("sns")[context.account_id][region].publish(
            message=json.dumps(message), arn=topic_arn, subject=f'ALARM: "{alarm.name}" in {region}'[:100]
        )
    except Exception as exc:  # pylint: disable=broad-exception-caught  # AWS only logs a failed notification
        return f"failed: {exc!r}"
    return f"notified {topic_arn}"


# ---- evaluation of a metric alarm ------------------------------------------------------------------------------
# CloudWatch user guide "Using Amazon CloudWatch alarms" ("Evaluating an alarm": the most recent EvaluationPeriods
# periods, DatapointsToAlarm of them breaching puts the alarm in ALARM; "Configuring how CloudWatch alarms treat
# missing data": missing (default), notBreaching, breaching, ignore).
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}


def _window_statistic(data, statistic):
    """One period's statistic over single values and statistic sets (moto's MetricDatum / MetricAggregatedDatum)."""
    count = sum(getattr(datum, "sample_count", 1) for datum in data)
    total = sum(getattr(datum, "sum", getattr(datum, "value", 0.0)) for datum in data)
    figures = {
        "SampleCount": count,
        "Sum": total,
        "Average": total / count if count else None,
        "Minimum": min(getattr(datum, "min", getattr(datum, "value", None)) for datum in data),
        "Maximum": max(getattr(datum, "max", getattr(datum, "value", None)) for datum in data),
    }
    return figures.get(statistic)


def alarm_datapoints(context, alarm, data):
    """The alarm's ``EvaluationPeriods`` most recent periods, newest first: ``(end of period, statistic or None)``, from
    the data points ``data`` (moto's datums; those of another metric or dimension set are left out).

    A period is a modeled duration: on the scaled clock it lasts ``period / scale`` of the clock's (wall) time."""
    now = context.now().replace(tzinfo=None)  # moto's timestamps are naive UTC
    period = timedelta(seconds=context.clock.duration(int(alarm.period)))
    wanted = _dimensions(alarm)
    data = [
        datum
        for datum in data
        if datum.namespace == alarm.namespace
        and datum.name == alarm.metric_name
        and {d.name: d.value for d in datum.dimensions} == wanted
    ]
    points = []
    for index in range(int(alarm.evaluation_periods)):
        end = now - index * period
        inside = [datum for datum in data if end - period < datum.timestamp <= end]
        points.append((end, _window_statistic(inside, alarm.statistic) if inside else None))
    return points


def _evaluated_state(alarm, points):
    """(new state or None to keep the state, [(end, value, breaching)] that decided it)."""
    compare = COMPARISONS[alarm.comparison_operator][0]
    treat = alarm.treat_missing_data or "missing"
    considered = []
    for end, value in points:
        if value is not None:
            considered.append((end, value, compare(value, float(alarm.threshold))))
        elif treat in ("breaching", "notBreaching"):
            considered.append((end, None, treat == "breaching"))
    if not considered:
        return (None if treat == "ignore" else "INSUFFICIENT_DATA"), considered
    needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods)
    return (
        "ALARM" if sum(1 for unused_end, unused_value, breaching in considered if breaching) >= needed else "OK"
    ), considered


def _reason(alarm, state, considered, missing):
    """CloudWatch's StateReason wording: the datapoints that decided, newest first."""
    if state == "INSUFFICIENT_DATA":
        return f"Insufficient Data: {missing} datapoint{'s were' if missing != 1 else ' was'} unknown."
    deciding = [
        (end, value) for end, value, breaching in considered if breaching == (state == "ALARM") and value is not None
    ]
    shown = ", ".join(f"{value} ({end:%d/%m/%y %H:%M:%S})" for end, value in deciding)
    verb = "was" if len(deciding) == 1 else "were"
    negation = "" if state == "ALARM" else "not "
    needed = int(alarm.datapoints_to_alarm or alarm.evaluation_periods) if state == "ALARM" else 1
    previous = "OK" if state == "ALARM" else "ALARM"
    return (
        f"Threshold Crossed: {len(deciding)} out of the last {len(considered)} datapoints [{shown}] {verb} {negation}"
        f"{COMPARISONS[alarm.comparison_operator][1]} the threshold ({float(alarm.threshold)}) "
        f"(minimum {needed} datapoint{'s' if needed != 1 else ''} for {previous} -> {state} transition)."
    )


def evaluate_alarm(context, alarm, data):
    """Evaluate one static-threshold alarm on one metric against the data points ``data``, as CloudWatch does each
    minute; a change goes through ``update_state`` (the event and the actions above). Returns the alarm's state."""
    if alarm.metric_data_queries or alarm.comparison_operator not in COMPARISONS or not alarm.statistic:
        return alarm.state_value  # metric math, anomaly bands, percentiles: not evaluated by the sandbox
    points = alarm_datapoints(context, alarm, data)
    state, considered = _evaluated_state(alarm, points)
    if state is None or state == alarm.state_value:
        return alarm.state_value
    missing = sum(1 for unused_end, value in points if value is None)
    reason_data = json.dumps(
        {
            "version": "1.0",
            "queryDate": _aws_time(context.now()),
            "statistic": alarm.statistic,
            "period": int(alarm.period),
            "threshold": float(alarm.threshold),
            "recentDatapoints": [value for unused_end, value, unused_breaching in considered if value is not None],
        }
    )
    alarm.update_state(_reason(alarm, state, considered, missing), reason_data, state)
    return state


def set_impaired(context, instance_id, instance_check=None, system_check=None):
    from moto.core.exceptions import ServiceException

    try:
        instance = context.backend("ec2").get_instance(instance_id)
    except ServiceException as exc:
        raise ValueError(f"The instance ID '{instance_id}' does not exist") from exc
    impaired = dict(getattr(instance, IMPAIRED_ATTRIBUTE, {}))
    for which, value in (("instance", instance_check), ("system", system_check)):
        if value is None:
            continue
        if value not in ("impaired", "ok"):
            raise ValueError(f"{which} must be 'impaired' or 'ok', got {value!r}")
        if value == "ok":
            impaired.pop(which, None)
        else:
            impaired.setdefault(which, context.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    setattr(instance, IMPAIRED_ATTRIBUTE, impaired)
    return {
        "instance_id": instance_id,
        "instance": _check(context, instance, "instance")["Status"],
        "system": _check(context, instance, "system")["Status"],
    }


def install(context):
    """Patch moto's alarm state updates and ``Instance`` status checks; the checks restart at the instance lifecycle's
    creation, start and reboot."""
    from moto.cloudwatch.models import Alarm
    from moto.ec2.models.instances import Instance

    moto_update_state = Alarm.update_state

    def update_state(self, reason, reason_data, state_value):
        previous = (self.state_value, self.state_reason, self.state_reason_data, self.state_updated_timestamp)
        moto_update_state(self, reason, reason_data, state_value)
        if previous[0] == state_value:
            return
        detail = alarm_event_detail(self, previous)
        region = self.region_name
        if region == context.region:
            context.emit(SOURCE, DETAIL_TYPE, detail, [self.alarm_arn])
        else:
            from moto.backends import get_backend

            get_backend("events")[context.account_id][region].put_events(
                [
                    {
                        "Source": SOURCE,
                        "DetailType": DETAIL_TYPE,
                        "Detail": json.dumps(detail),
                        "Resources": [self.alarm_arn],
                        "EventBusName": "default",
                    }
                ]
            )
        _run_actions(context, self, detail)

    def created(instance):
        _checks_begin(context, instance)

    def started(instance, before):
        if before != "running" and instance.state == "running":
            _checks_begin(context, instance)

    def rebooted(instance, unused_before):
        _checks_begin(context, instance)
        context.record("reboots", {"instance_id": instance.id, "at": context.now().isoformat()})

    Alarm.update_state = update_state
    lifecycle.register(
        "alarms",
        {
            lifecycle.INSTANCE_CREATED: created,
            lifecycle.INSTANCE_STARTED: started,
            lifecycle.INSTANCE_REBOOTED: rebooted,
        },
    )
    Instance.instance_status = property(lambda self: _check(context, self, "instance"))
    Instance.system_status = property(lambda self: _check(context, self, "system"))

    @context.control("ec2/status")
    def _status(payload):
        return set_impaired(context, payload.get("instance_id"), payload.get("instance"), payload.get("system"))
