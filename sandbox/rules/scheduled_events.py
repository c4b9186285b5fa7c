"""EC2 scheduled events as AWS announces them: DescribeInstanceStatus, instance metadata, AWS Health.

AWS (EC2 user guide "Scheduled events for your instances", "Instance metadata categories"
``events/maintenance/scheduled``; AWS Health user guide "Monitoring AWS Health events with Amazon
EventBridge"; API reference DescribeInstanceStatus ``Events``):

* when EC2 schedules a retirement, a stop, a reboot or system maintenance for an instance, it is listed
  in ``DescribeInstanceStatus`` ``Events`` (``Code`` ``instance-retirement`` | ``instance-stop`` |
  ``instance-reboot`` | ``system-reboot`` | ``system-maintenance``, ``InstanceEventId``, ``Description``,
  ``NotBefore``, ``NotAfter``), in the instance's metadata ``events/maintenance/scheduled`` (a JSON list
  of ``{"Code", "Description", "EventId", "NotBefore", "NotAfter", "State": "active"}``, times as
  ``21 Jan 2019 09:00:43 GMT``), and AWS Health puts an ``AWS Health Event`` (source ``aws.health``,
  ``resources`` the affected ids, ``detail`` ``{"eventArn", "service": "EC2", "eventTypeCode"
  (``AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED``...), "eventTypeCategory": "scheduledChange", "startTime",
  "endTime", "statusCode": "upcoming", "affectedEntities": [{"entityValue": "<instance id>"}],
  "affectedAccount", "eventRegion"}``, times as ``Sat, 05 Jun 2021 12:00:00 GMT``) on the default bus,
  best effort;
* at ``NotBefore`` EC2 acts: a retirement or a scheduled stop stops an EBS-backed instance (its volumes
  stay attached); a reboot or maintenance reboots it; the event is then ``[Completed]``.

The control ``ec2/schedule-event`` (``instance_id``, ``code``, ``lead`` modeled seconds until
``NotBefore``, ``health``: false to play a Health event that never arrives) schedules one. Each is
recorded (``records`` name ``scheduled_events``).

moto 5.2.5 has no scheduled events: ``DescribeInstanceStatus`` lists none, there is no metadata and no
AWS Health at all.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

HEALTH_CODES = {
    "instance-retirement": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
    "instance-stop": "AWS_EC2_INSTANCE_STOP_SCHEDULED",
    "instance-reboot": "AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED",
    "system-reboot": "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED",
    "system-maintenance": "AWS_EC2_SYSTEM_MAINTENANCE_EVENT",
}
ATTRIBUTE = "_sandbox_scheduled_events"
IMDS_PATH = "events/maintenance/scheduled"


def _imds_time(moment):
    return moment.strftime("%d %b %Y %H:%M:%S GMT")


def _health_time(moment):
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _events(instance):
    return getattr(instance, ATTRIBUTE, None) or []


def _publish_metadata(context, instance):
    import json

    listed = [
        {
            "Code": e["Code"],
            "Description": e["Description"],
            "EventId": e["InstanceEventId"],
            "NotBefore": _imds_time(e["NotBefore"]),
            "NotAfter": _imds_time(e["NotAfter"]),
            "State": "completed" if e["Description"].startswith("[Completed]") else "active",
        }
        for e in _events(instance)
    ]
    context.imds.setdefault(instance.id, {})[IMDS_PATH] = json.dumps(listed)


def schedule(context, instance_id, code, lead, health=True):
    if code not in HEALTH_CODES:
        raise ValueError(f"code must be one of {', '.join(HEALTH_CODES)}")
    lead = float(lead)
    if lead <= 0:
        raise ValueError("lead must be positive (seconds until NotBefore)")
    from moto.ec2.exceptions import InvalidInstanceIdError

    with context.lock:
        try:
            instance = context.backend("ec2").get_instance(instance_id)
        except InvalidInstanceIdError as exc:
            raise ValueError(f"The instance ID '{instance_id}' does not exist") from exc
        if instance.state in ("shutting-down", "terminated"):
            raise ValueError(f"Instance '{instance_id}' is {instance.state}")
        not_before = context.now() + timedelta(seconds=context.clock.duration(lead))
        event = {
            "Code": code,
            "InstanceEventId": f"instance-event-{uuid.uuid4().hex[:17]}",
            "Description": f"The instance is scheduled for {code.replace('-', ' ')}",
            "NotBefore": not_before,
            "NotAfter": not_before + timedelta(days=7),
        }
        setattr(instance, ATTRIBUTE, _events(instance) + [event])
        _publish_metadata(context, instance)
        if health:
            detail = {
                "eventArn": f"arn:aws:health:{context.region}::event/EC2/{HEALTH_CODES[code]}/{event['InstanceEventId']}",
                "service": "EC2",
                "eventTypeCode": HEALTH_CODES[code],
                "eventTypeCategory": "scheduledChange",
                "startTime": _health_time(not_before),
                "endTime": _health_time(event["NotAfter"]),
                "statusCode": "upcoming",
                "eventRegion": context.region,
                "affectedAccount": context.account_id,
                "eventDescription": [{"language": "en_US", "latestDescription": event["Description"]}],
                "affectedEntities": [{"entityValue": instance_id}],
            }
            context.emit("aws.health", "AWS Health Event", detail, [instance_id])

        def due():
            event["Description"] = "[Completed] " + event["Description"]
            if instance.state in ("pending", "running") and code in ("instance-retirement", "instance-stop"):
                instance.ec2_backend.stop_instances([instance_id])
            elif instance.state == "running":
                instance.ec2_backend.reboot_instances([instance_id])
            _publish_metadata(context, instance)

        context.after(lead, due, f"scheduled {code} of {instance_id}")
        record = {
            "instance_id": instance_id,
            "code": code,
            "event_id": event["InstanceEventId"],
            "not_before": not_before.isoformat(),
            "health": bool(health),
        }
        context.record("scheduled_events", record)
        return record


def install(context):
    """``Events`` on moto's ``Instance`` (DescribeInstanceStatus reads them) and the ``ec2/schedule-event`` control."""
    from moto.ec2.models.instances import Instance

    Instance.events = property(lambda self: [dict(event) for event in _events(self)])

    @context.control("ec2/schedule-event")
    def _schedule(payload):
        return schedule(
            context,
            payload.get("instance_id"),
            payload.get("code"),
            payload.get("lead", 86400),
            payload.get("health", True),
        )
