"""Auto Scaling's scaling activities: the history ``DescribeScalingActivities`` lists.

AWS (EC2 Auto Scaling API reference DescribeScalingActivities, Activity; user guide "Verify a scaling activity for an
Auto Scaling group"): every launch and termination of a group's instance is an activity (``ActivityId``,
``Description``, ``Cause``, ``StartTime``, ``EndTime``, ``StatusCode``, ``Progress``, ``Details`` as a JSON string with
the zone and subnet); "If an attempt to launch instances failed, the StatusCode value is Failed or Cancelled and the
StatusMessage element in the response indicates the cause of the failure". The answer lists the newest first,
``MaxRecords`` (1-100, default 100) a page with ``NextToken``, narrowed by ``AutoScalingGroupName`` and
``ActivityIds``; a deleted group's activities only with ``IncludeDeletedGroups`` (``AutoScalingGroupState``
``Deleted``).

The Auto Scaling rule records each launch that enters service and each termination (``Successful``), the capacity
rule each launch EC2 refused (``Failed``). moto 5.2.5 answers every DescribeScalingActivities with no activity.
"""

from __future__ import annotations

import itertools
import json

from . import model_list

MAX_RECORDS = 100
# Activities of one modeled instant keep the order they happened in: StartTime alone cannot tell them apart.
SEQUENCE = "sandbox_sequence"
_COUNTER = itertools.count()


def _of_group(group):
    """The group's activities, oldest first."""
    return model_list(group, "sandbox_activities")


def _of_deleted_groups(backend):
    """The activities of the backend's deleted groups, oldest first."""
    return model_list(backend, "sandbox_deleted_activities")


def record(context, group, description, cause, details, status_code="Successful", status_message=None):
    """Add one activity to the group's history; returns it."""
    from sandbox.clock import new_token

    now = context.now()
    activity = {
        "ActivityId": new_token(),
        "AutoScalingGroupName": group.name,
        "AutoScalingGroupARN": group.arn,
        "Description": description,
        "Cause": cause,
        "StartTime": now,
        "EndTime": now,
        "StatusCode": status_code,
        "Progress": 100,
        "Details": json.dumps(details),
        SEQUENCE: next(_COUNTER),
    }
    if status_message:
        activity["StatusMessage"] = status_message
    _of_group(group).append(activity)
    return activity


def group_deleted(backend, group):
    """The group is gone; its history stays for ``IncludeDeletedGroups``."""
    _of_deleted_groups(backend).extend(_of_group(group))


def listed(backend, group_name=None, include_deleted=False):
    """The activities DescribeScalingActivities lists, newest first."""
    found = [
        activity
        for group in backend.autoscaling_groups.values()
        if not group_name or group.name == group_name
        for activity in _of_group(group)
    ]
    if include_deleted:
        found += [
            {**activity, "AutoScalingGroupState": "Deleted"}
            for activity in _of_deleted_groups(backend)
            if not group_name or activity["AutoScalingGroupName"] == group_name
        ]
    newest_first = sorted(found, key=lambda activity: (activity["StartTime"], activity[SEQUENCE]), reverse=True)
    return [{key: value for key, value in activity.items() if key != SEQUENCE} for activity in newest_first]


def install(context):  # noqa: ARG001 - every rule module takes the context
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    def describe_scaling_activities(self):
        params = self._get_params()
        limit = int(params.get("MaxRecords") or MAX_RECORDS)
        if not 1 <= limit <= MAX_RECORDS:
            raise ValidationError(f"MaxRecords must be between 1 and {MAX_RECORDS}")
        wanted = set(params.get("ActivityIds") or [])
        found = [
            activity
            for activity in listed(
                self.autoscaling_backend,
                params.get("AutoScalingGroupName"),
                self._get_bool_param("IncludeDeletedGroups", False),
            )
            if not wanted or activity["ActivityId"] in wanted
        ]
        start = int(params.get("NextToken") or 0)
        result = {"Activities": found[start : start + limit]}
        if start + limit < len(found):
            result["NextToken"] = str(start + limit)
        return ActionResult(result)

    AutoScalingResponse.describe_scaling_activities = describe_scaling_activities
