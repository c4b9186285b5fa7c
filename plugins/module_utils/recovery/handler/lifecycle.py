# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Auto Scaling lifecycle actions, as the launch and termination workflows hold and complete them.

A lifecycle action is named by its hook (group, hook name, token). The launch workflow heartbeats it while it
waits for the data and completes it with CONTINUE or ABANDON (then suspends the group's launches); the termination
workflow completes it with CONTINUE. Completing one that is no longer active (completed by someone else, or timed
out) is not an error. Which action a completion was for is recorded (``progress.LifecycleCompletion``), so that a
redelivery does nothing twice and a later lifecycle of the same instance is still acted on.
"""

from __future__ import annotations

import logging

from .. import progress
from ..aws import call
from ..errors import AwsApiError

LOG = logging.getLogger("ec2spot.autorecover.handler")


def hook_of(event):
    """The lifecycle action a launch or terminate event names, as the Auto Scaling calls take it."""
    return {"AutoScalingGroupName": event.group, "LifecycleHookName": event.hook, "LifecycleActionToken": event.token}


def held_hook(group, held):
    """The lifecycle action a held step recorded (``progress.HeldLaunch``) of ``group``, as the calls take it."""
    return {"AutoScalingGroupName": group, "LifecycleHookName": held.hook, "LifecycleActionToken": held.token}


def heartbeat(handler, hook):
    """Extend the action's timeout; a failed heartbeat is logged (the action may still be completed in time)."""
    try:
        call(handler.clients["autoscaling"], "record_lifecycle_action_heartbeat", **hook)
    except AwsApiError as exc:
        LOG.warning("heartbeat for %s failed: %s", hook["LifecycleHookName"], exc.message)


def complete(handler, hook, result):
    """Complete the action with ``result`` (``CONTINUE`` or ``ABANDON``)."""
    try:
        call(handler.clients["autoscaling"], "complete_lifecycle_action", LifecycleActionResult=result, **hook)
    except AwsApiError as exc:
        if exc.aws_code != "ValidationError":
            raise
        # "No active Lifecycle Action": completed by someone else, or timed out (its default result applied)
        LOG.warning(
            "lifecycle action %s of %s was no longer active: %s",
            hook["LifecycleHookName"],
            hook["AutoScalingGroupName"],
            exc.message,
        )


def complete_and_record(handler, hook, result, instance_id, step, error_code=None, instance_may_be_gone=False):
    """Complete the action with ``result``, then record on ``instance_id`` that ``step`` (``continued``,
    ``abandoned``, ``terminate-completed``) is done, with the action's token (``progress.LifecycleCompletion``), so a
    redelivery of this action does nothing twice and a later lifecycle of the instance is still acted on.

    Recorded after completing: a crash between the two repeats a completion, which ``complete`` tolerates, never
    skips one. ``instance_may_be_gone``: an instance being terminated may be gone already, and then no redelivery
    can find it either, so a failed record is only logged."""
    complete(handler, hook, result)
    completion = progress.LifecycleCompletion(hook["LifecycleActionToken"], error_code)
    try:
        progress.record(handler.clients["ec2"], instance_id, step, handler.clock.now(), completion)
    except AwsApiError as exc:
        if not instance_may_be_gone:
            raise
        LOG.info("could not record the completed action on %s: %s", instance_id, exc.message)


def suspend_launches(handler, group):
    """Suspend the group's ``Launch`` process; returns whether it is suspended."""
    try:
        call(
            handler.clients["autoscaling"], "suspend_processes", AutoScalingGroupName=group, ScalingProcesses=["Launch"]
        )
    except AwsApiError as exc:
        LOG.error("could not suspend the launches of %s: %s", group, exc.message)
        return False
    return True
