# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shell commands on an instance through SSM Run Command (AWS-RunShellScript), awaited by polling.

The handler's graceful stop on a warning and the CPU watchdog's restart after a reboot both run here.
"""

from __future__ import annotations

from .aws import SYSTEM_CLOCK, call, wait_until
from .errors import AwsApiError, WaitTimeout

SSM_POLICY = "AmazonSSMManagedInstanceCore"
FINAL_COMMAND_STATES = (
    "Success",
    "Failed",
    "Cancelled",
    "TimedOut",
    "Undeliverable",
    "Terminated",
    "DeliveryTimedOut",
    "ExecutionTimedOut",
)


def run_shell(ssm, instance_id, commands, timeout, comment, clock=SYSTEM_CLOCK, retry_for=0, late=None):
    """Run ``commands`` and wait for the outcome: ``"ok"`` or ``"failed: <why>"``.

    ``retry_for`` seconds of ``InvalidInstanceId`` are waited out (polling, no fixed sleep): right after a
    reboot the SSM agent may not have reconnected yet. ``late`` is the failure when the command does not
    finish within ``timeout``.
    """

    def send():
        try:
            return call(
                ssm,
                "send_command",
                InstanceIds=[instance_id],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": list(commands), "executionTimeout": [str(timeout)]},
                TimeoutSeconds=max(30, timeout),
                Comment=comment[:100],
            )["Command"]["CommandId"]
        except AwsApiError as exc:
            if exc.aws_code == "InvalidInstanceId" and retry_for:
                return None
            raise

    try:
        command_id = wait_until(
            send, lambda found: found is not None, f"SSM to accept a command for {instance_id}", retry_for, clock
        )
    except WaitTimeout:
        return (
            f"failed: SSM refused the command (InvalidInstanceId: {instance_id} not in a valid state; is the agent "
            f"running and the {SSM_POLICY} policy attached?)"
        )
    except AwsApiError as exc:
        return f"failed: {exc.aws_code or 'SendCommand'}"

    def invocation():
        try:
            return call(ssm, "get_command_invocation", CommandId=command_id, InstanceId=instance_id)
        except AwsApiError as exc:
            if exc.aws_code == "InvocationDoesNotExist":  # AWS needs a moment after SendCommand
                return {"Status": "Pending"}
            raise

    try:
        final = wait_until(
            invocation,
            lambda found: found["Status"] in FINAL_COMMAND_STATES,
            f"the command on {instance_id}",
            timeout + 5,
            clock,
        )
    except WaitTimeout:
        return late or f"failed: the command did not finish within {timeout}s"
    if final["Status"] == "Success":
        return "ok"
    return f"failed: {final['Status']} (exit {final.get('ResponseCode', '?')})"
