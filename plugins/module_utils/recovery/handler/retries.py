# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transient failures: when a message comes back, and what happens on its last receive.

A step that is not possible yet (``Retry``: the old holder has not let go) or an AWS failure that outlasted
botocore's own retries (``TRANSIENT``) is reported as a batch item failure (``intake.process_batch``). Instead of the
queue's long visibility timeout, the message is made visible again after ``retry_delay``: exponential back-off with
jitter, kept within a Spot notice so that throttling never pushes the hand-off past the interruption. On the receive
before the dead-letter queue, the operator is told which step gave up (``failed``, step ``retries``).
"""

from __future__ import annotations

import json
import logging
import random

from .. import events
from .. import tags as t
from ..aws import call
from ..errors import AwsApiError, RecoveryError, WaitTimeout
from .notice import HANDOFF_RESERVE, NOTICE_LEAD

LOG = logging.getLogger("ec2spot.autorecover.handler")
RETRY_AFTER = 30  # seconds before a first retry is visible again (not the queue's long timeout)
RETRY_CAP = 900  # later retries back off exponentially up to this, with jitter


class Retry(RecoveryError):
    """Not possible yet (the old holder has not let go, AWS is throttling): redeliver later."""

    code = "Retry"


TRANSIENT = (Retry, WaitTimeout, AwsApiError)


def retry_delay(receives, jitter=None, time_left=None, receives_left=None):
    """Seconds before a message that must be retried is visible again: ``RETRY_AFTER`` after its first receive,
    doubling with each later one up to ``RETRY_CAP``, less a random part of up to half (AWS's "full jitter" advice
    halved: throttled retries spread out, and a recovery still retries within minutes).

    An event with a deadline (a Spot warning: the notice's two minutes) is retried within it: the delay is capped
    so that the ``receives_left`` before the dead-letter queue fit in the ``time_left`` (seconds). Backing off past
    the interruption would turn a minute of throttling into an application never stopped."""
    base = min(RETRY_CAP, RETRY_AFTER * 2 ** max(0, receives - 1))
    factor = random.uniform(0.5, 1.0) if jitter is None else jitter
    delay = max(1, int(base * factor))
    if time_left is not None and time_left > 0 and receives_left:
        delay = min(delay, max(1, int(time_left / receives_left)))
    return delay


def retry_later(handler, record, exc):
    """A transient failure: back off (``retry_delay``) instead of waiting the queue's long visibility timeout; on the
    message's last receive before the dead-letter queue, say so (``failed``, with the step it was on)."""
    receipt, receives = record.get("receiptHandle"), _receive_count(record)
    try:
        url, limit = _queue_of(handler, record)
        # Within a notice, the receives but the last: the last is kept for after it, when a warning that could not
        # be handled meets an instance already gone and says so (the missed-warning path), not the dead-letter queue.
        delay = retry_delay(
            receives, time_left=_time_left(handler, record), receives_left=(limit - receives - 1) if limit else None
        )
        if url and isinstance(receipt, str):
            call(
                handler.clients["sqs"],
                "change_message_visibility",
                QueueUrl=url,
                ReceiptHandle=receipt,
                VisibilityTimeout=delay,
            )
    except AwsApiError as err:  # the retry then comes after the visibility timeout: slower, still safe
        LOG.warning("could not set the retry delay: %s", err.message)
        limit = None
    if limit and receives >= limit:
        _give_up(handler, record, exc, receives)


def _time_left(handler, record):
    """Seconds left for retries before the record's event's deadline (a terminate Spot warning's notice, less the
    ``HANDOFF_RESERVE`` the hand-off needs once started), or None."""
    try:
        account, region = handler.identity
        event = events.parse(record.get("body"), account=account, region=region)
    except (RecoveryError, AwsApiError):
        return None
    if event.kind != events.SPOT_WARNING or event.detail.get("instance-action", "terminate") != "terminate":
        return None
    return (event.time + NOTICE_LEAD - handler.clock.now()).total_seconds() - HANDOFF_RESERVE


def _receive_count(record):
    try:
        return int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
    except (TypeError, ValueError):
        return 1


def queue_url(handler, arn):
    """The URL of the queue ``arn`` names (``arn:<partition>:sqs:<region>:<account>:<name>``), in its own account."""
    unused_region, account, queue = arn.split(":")[3:6]
    return call(handler.clients["sqs"], "get_queue_url", QueueName=queue, QueueOwnerAWSAccountId=account)["QueueUrl"]


def _queue_of(handler, record):
    """(queue URL, its redrive policy's maxReceiveCount or None) for the record's queue, or (None, None)."""
    arn = record.get("eventSourceARN")
    if not (isinstance(arn, str) and arn.count(":") == 5):
        return None, None
    url = queue_url(handler, arn)
    attributes = call(
        handler.clients["sqs"], "get_queue_attributes", QueueUrl=url, AttributeNames=["RedrivePolicy"]
    ).get("Attributes", {})
    try:
        limit = int(json.loads(attributes.get("RedrivePolicy", "{}")).get("maxReceiveCount"))
    except (TypeError, ValueError):
        limit = None
    return url, limit


def _give_up(handler, record, exc, receives):
    """The message goes to the dead-letter queue after this receive: the operator hears it, with the step."""
    instance_id, service = None, None
    try:
        account, region = handler.identity
        instance_id = events.parse(record.get("body"), account=account, region=region).instance_id
        service = (
            handler.config.service_for(t.as_dict((handler.describe(instance_id) or {}).get("Tags")).get(t.LINEAGE))
            if instance_id
            else None
        )
    except (RecoveryError, AwsApiError):  # AWS still failing: the instance named by the event, the first service
        pass
    service = service or handler.config.services[0]
    message = events.printable(getattr(exc, "message", exc), 500)
    handler.publish(
        service,
        f"Recovery step given up for {service.name}",
        {
            "event": "failed",
            "step": "retries",
            "service": service.name,
            "lineage": service.lineage,
            "instance_id": instance_id,
            "receives": receives,
            "error": message,
            "summary": f"{service.name}: a recovery step for {instance_id or 'an event'} failed {receives} times and "
            f"goes to the dead-letter queue: {message}. Progress tags on the instances say what was done; redrive the "
            f"message once the cause is fixed, or restore with restore.yml",
        },
    )
    handler.metric(service, "RecoveryFailures", 1, "Count")
