"""The SQS event source mapping: polling mapped queues, handing each batch to the function, deleting what succeeded.

Lambda developer guide, "Using Lambda with Amazon SQS", "Handling errors for an SQS event source", "Implementing
partial batch responses": for every enabled SQS mapping, the poller receives up to ``BatchSize`` messages through
moto's SQS backend with the queue's visibility timeout (moto counts ``ApproximateReceiveCount`` and moves a message
whose count reached the redrive policy's ``maxReceiveCount`` to the dead-letter queue on the next receive, as SQS
does), builds the event exactly as Lambda does (``Records`` of ``messageId``, ``receiptHandle``, ``body``,
``attributes``, ``messageAttributes``, ``md5OfBody``, ``eventSource``, ``eventSourceARN``, ``awsRegion``), invokes
the function, then:

- success, mapping with ``ReportBatchItemFailures``: deletes every message but those whose ``itemIdentifier`` is in
  ``batchItemFailures``. A null or empty response, or a null or empty ``batchItemFailures``, is a complete success;
  a response that is not an object, an item without ``itemIdentifier``, an empty or null identifier, or one naming
  no message of the batch is a complete failure (nothing deleted), as AWS documents;
- success without it: deletes the whole batch;
- an error (exception, timeout, crash): deletes nothing; the messages return after the visibility timeout.

A mapping whose function is gone, is not runnable here, or has a reserved concurrency of 0 is not polled. Polling is
real-time (every ``POLL_SECONDS``); visibility timeouts are on the modeled clock (moto's timestamps are).
"""

from __future__ import annotations

import base64

from .invoke import find_function, served, snapshot, split_arn

POLL_SECONDS = 0.2  # real seconds between two passes of the runner thread


def sqs_queue(queue_arn):
    """moto's queue model (and its backend) for an SQS ARN, or ``(None, None)``."""
    from moto.sqs.models import sqs_backends

    parts = split_arn(queue_arn)
    if not parts or parts[2] != "sqs":
        return None, None
    backend = sqs_backends[parts[4]][parts[3]]
    found = backend.queues.get(parts[5])
    return (found, backend) if found is not None else (None, None)


def _lambda_backends():
    from moto.awslambda.models import lambda_backends

    for account_backends in list(dict.values(lambda_backends)):
        yield from list(dict.values(account_backends))


def sqs_record(message, queue_arn, found):
    """One message as Lambda hands it to the function (Lambda developer guide, "Using Lambda with Amazon SQS")."""
    attributes = {
        "ApproximateReceiveCount": str(message.approximate_receive_count),
        "SentTimestamp": str(message.sent_timestamp),
        "SenderId": message.sender_id,
        "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
    }
    if found.fifo_queue:
        attributes.update(
            {
                "SequenceNumber": message.sequence_number,
                "MessageGroupId": message.group_id,
                "MessageDeduplicationId": message.deduplication_id,
            }
        )
    trace_header = (message.system_attributes or {}).get("AWSTraceHeader")
    if trace_header:
        attributes["AWSTraceHeader"] = (
            trace_header.get("StringValue") if isinstance(trace_header, dict) else trace_header
        )
    message_attributes = {}
    for name, value in (message.message_attributes or {}).items():
        converted = {"stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
        if value.get("StringValue") is not None:
            converted["stringValue"] = value["StringValue"]
        if value.get("BinaryValue") is not None:
            binary = value["BinaryValue"]
            converted["binaryValue"] = base64.b64encode(binary).decode("ascii") if isinstance(binary, bytes) else binary
        message_attributes[name] = converted
    record = {
        "messageId": message.id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.body_md5,
    }
    if message_attributes:
        record["md5OfMessageAttributes"] = message.attribute_md5
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": queue_arn.split(":")[3]})
    return record


def failed_ids(mapping, records, run):
    """The message ids to keep: all on an error or an invalid partial batch response (AWS's rules)."""
    everything = {record["messageId"] for record in records}
    if run.get("error") is not None:
        return everything
    if not mapping["report_failures"]:
        return set()
    response = run.get("result")
    if response is None:
        return set()
    if not isinstance(response, dict):
        return everything
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return everything
    failed = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in everything:
            return everything
        failed.add(identifier)
    return failed


class EventSourcePoller:
    """Polls moto's SQS event source mappings, one batch per enabled mapping a pass, running the function through
    ``invocations``; ``stopping`` ends a pass early."""

    def __init__(self, context, invocations, stopping):
        self.context = context
        self.invocations = invocations
        self._stopping = stopping

    def mappings(self, enabled_only=True):
        """moto's SQS event source mappings (caller holds the lock)."""
        found = []
        for backend in _lambda_backends():
            for esm in backend.list_event_source_mappings(None, None):
                if esm.event_source_arn.split(":")[2] != "sqs" or (enabled_only and not esm.enabled):
                    continue
                found.append(
                    {
                        "uuid": esm.uuid,
                        "function_arn": esm.function_arn,
                        "queue_arn": esm.event_source_arn,
                        "batch_size": int(esm.batch_size or 10),
                        "enabled": bool(esm.enabled),
                        "report_failures": "ReportBatchItemFailures" in (esm.function_response_types or []),
                    }
                )
        return found

    def poll_all(self):
        """One batch per enabled mapping; returns the invocations made."""
        count = 0
        with self.context.lock:
            mappings = self.mappings()
        for mapping in mappings:
            if self._stopping.is_set():
                return count
            if self.poll(mapping):
                count += 1
        return count

    def poll(self, mapping):
        """Receive one batch of the mapping's queue, run the function on it, delete what succeeded. Returns whether
        the function ran."""
        with self.context.lock:
            model = find_function(mapping["function_arn"])
            function = snapshot(model) if model is not None else None
            if function is None or not served(function) or str(function["reserved_concurrency"]) == "0":
                return False  # deleted, not runnable here, or throttled: AWS would not invoke either
            found, backend = sqs_queue(mapping["queue_arn"])
            if found is None:
                return False
            messages = backend.receive_message(
                found.name,
                mapping["batch_size"],
                0,
                int(found.visibility_timeout or 0),
                message_attribute_names=["All"],
            )
            if not messages:
                return False
            self._scale_visibility(found, messages)
            records = [sqs_record(message, mapping["queue_arn"], found) for message in messages]
        run = self.invocations.execute(function, {"Records": records}, "sqs")
        run["event_source_arn"] = mapping["queue_arn"]
        run["records"] = [record["messageId"] for record in records]
        failed = failed_ids(mapping, records, run)
        with self.context.lock:
            kept, deleted = [], []
            for record in records:
                if record["messageId"] in failed:
                    kept.append(record["messageId"])
                    continue
                try:
                    backend.delete_message(found.name, record["receiptHandle"])
                    deleted.append(record["messageId"])
                except Exception as exc:  # the queue was deleted meanwhile: nothing to delete
                    run.setdefault("delete_errors", []).append(repr(exc))
            run["deleted"], run["kept"] = deleted, kept
            self.invocations.finish(run, function)
        return True

    def _scale_visibility(self, found, messages):
        """On the scaled clock the visibility timeout, a modeled duration, lasts ``timeout / scale`` real seconds
        (moto keeps whole wall-clock seconds); on the manual clock moto's own timing stands."""
        if not self.context.clock.scale:
            return
        from moto.core.utils import unix_time_millis

        handles = {message.receipt_handle for message in messages}
        visible_at = unix_time_millis() + self.context.clock.duration(int(found.visibility_timeout or 0)) * 1000
        for stored in list(found._messages):  # pylint: disable=protected-access  # moto keeps no public handle index
            if stored.receipt_handle in handles:
                stored.visible_at = visible_at

    def queue_status(self):
        """Each mapped queue's visible, in-flight and delayed message counts."""
        status = {}
        with self.context.lock:
            for mapping in self.mappings(enabled_only=False):
                found, dummy_backend = sqs_queue(mapping["queue_arn"])
                if found is not None:
                    status[mapping["queue_arn"]] = {
                        "visible": found.approximate_number_of_messages,
                        "in_flight": found.approximate_number_of_messages_not_visible,
                        "delayed": found.approximate_number_of_messages_delayed,
                        "enabled": mapping["enabled"],
                    }
        return status
