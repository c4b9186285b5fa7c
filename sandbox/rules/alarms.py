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
  ``running`` (no state-change event).

The sandbox: the checks pass ``status_checks`` modeled seconds (default ``STATUS_CHECK_SECONDS``; the
``latency`` control sets it when the context knows the key) after the instance last began running
or rebooted. Control ``ec2/status`` (``instance_id``, ``instance`` / ``system``: ``impaired`` or ``ok``)
makes a check fail until set back to ``ok``. Every reboot (API or alarm action) is recorded (``records``
name ``reboots``), every alarm action too (``alarm_actions``).

moto 5.2.5: ``SetAlarmState`` changes the state and nothing else (no event, no action); both status
checks are ``ok`` the moment an instance runs, including right after a start or a reboot, and can
never fail.
"""

from __future__ import annotations

import json

SOURCE = "aws.cloudwatch"
DETAIL_TYPE = "CloudWatch Alarm State Change"
STATUS_CHECK_SECONDS = 120.0
READY_ATTRIBUTE = "_sandbox_checks_pass_at"    # modeled elapsed seconds at which both checks pass
IMPAIRED_ATTRIBUTE = "_sandbox_impaired"        # {"instance": since, "system": since}
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
    configuration = {"metrics": [{"id": metric_id, "metricStat": {
        "metric": {"namespace": alarm.namespace, "name": alarm.metric_name, "dimensions": _dimensions(alarm)},
        "period": alarm.period, "stat": alarm.statistic or alarm.extended_statistic}, "returnData": True}]}
    if alarm.description:
        configuration["description"] = alarm.description
    return {"alarmName": alarm.name,
            "state": _state(alarm.state_value, alarm.state_reason, alarm.state_reason_data, alarm.state_updated_timestamp),
            "previousState": _state(*previous), "configuration": configuration}


def _run_actions(context, alarm, detail):
    actions = {"ALARM": alarm.alarm_actions, "OK": alarm.ok_actions,
               "INSUFFICIENT_DATA": alarm.insufficient_data_actions}.get(alarm.state_value) or []
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
        context.record("alarm_actions", {"alarm": alarm.name, "state": alarm.state_value, "action": action,
                                         "outcome": outcome, "at": context.now().isoformat()})


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
    message = {"AlarmName": alarm.name, "AlarmDescription": alarm.description, "AWSAccountId": context.account_id,
               "NewStateValue": alarm.state_value, "NewStateReason": alarm.state_reason,
               "StateChangeTime": detail["state"]["timestamp"], "Region": region, "AlarmArn": alarm.alarm_arn,
               "OldStateValue": detail["previousState"]["value"],
               "Trigger": {"MetricName": alarm.metric_name, "Namespace": alarm.namespace,
                           "Dimensions": [{"name": k, "value": v} for k, v in _dimensions(alarm).items()]}}
    try:
        get_backend("sns")[context.account_id][region].publish(
            message=json.dumps(message), arn=topic_arn,
            subject=f'ALARM: "{alarm.name}" in {region}'[:100])
    except Exception as exc:  # pylint: disable=broad-exception-caught  # AWS only logs a failed notification
        return f"failed: {exc!r}"
    return f"notified {topic_arn}"


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
    return {"instance_id": instance_id, "instance": _check(context, instance, "instance")["Status"],
            "system": _check(context, instance, "system")["Status"]}


def install(context):
    """Patch moto's alarm state updates, ``Instance`` status checks, start and reboot."""
    from moto.cloudwatch.models import Alarm
    from moto.ec2.models.instances import Instance

    moto_update_state = Alarm.update_state
    moto_init, moto_start, moto_reboot = Instance.__init__, Instance.start, Instance.reboot

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
            get_backend("events")[context.account_id][region].put_events([{
                "Source": SOURCE, "DetailType": DETAIL_TYPE, "Detail": json.dumps(detail), "Resources": [self.alarm_arn],
                "EventBusName": "default"}])
        _run_actions(context, self, detail)

    def init(self, *args, **kwargs):
        moto_init(self, *args, **kwargs)
        _checks_begin(context, self)

    def start(self):
        before = self.state
        previous = moto_start(self)
        if before != "running" and self.state == "running":
            _checks_begin(context, self)
        return previous

    def reboot(self):
        moto_reboot(self)
        _checks_begin(context, self)
        context.record("reboots", {"instance_id": self.id, "at": context.now().isoformat()})

    Alarm.update_state = update_state
    Instance.__init__ = init
    Instance.start = start
    Instance.reboot = reboot
    Instance.instance_status = property(lambda self: _check(context, self, "instance"))
    Instance.system_status = property(lambda self: _check(context, self, "system"))

    @context.control("ec2/status")
    def _status(payload):
        return set_impaired(context, payload.get("instance_id"), payload.get("instance"), payload.get("system"))
