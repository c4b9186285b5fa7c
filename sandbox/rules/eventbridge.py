"""EventBridge delivery as AWS does it: every target type, the full event, input transformers, size limit.

AWS (EventBridge user guide "Amazon EventBridge events", "Event bus targets", "Amazon EventBridge input
transformation", "Calculating PutEvents event entry size"; API reference PutEvents, Target, InputTransformer):

* a rule delivers the **whole event** to a target unless the target says otherwise: ``version``, ``id``,
  ``detail-type``, ``source``, ``account``, ``time`` (``2026-11-24T10:12:34Z``), ``region``, ``resources``,
  ``detail`` (compact JSON), the same for SQS, SNS, Lambda and every other target;
* a target's ``Input`` replaces the event with that constant JSON text, ``InputPath`` with the part of the
  event the JSON path selects, ``InputTransformer`` with its ``InputTemplate`` rendered from its
  ``InputPathsMap`` (see ``render_template``);
* an **SNS topic** target publishes the event (or the transformed input) as the message, so the topic's
  subscriptions get it; a **Lambda function** target invokes the function asynchronously with it;
* a delivery that fails (a deleted queue, a function that raises) never fails ``PutEvents``: EventBridge
  retries and finally drops it (or sends it to the target's dead-letter queue). The sandbox records it
  (``records`` control, name ``eventbridge_delivery_failures``) instead;
* ``PutEvents`` has a size limit computed per entry as ``Time`` (14 bytes when given) + the UTF-8 bytes of
  ``Source``, ``DetailType``, ``Detail`` and each of ``Resources`` (``EventBusName`` does not count in AWS's
  published calculation). **Choice**: the sandbox refuses the whole request, as AWS answers it, with
  ``ValidationException`` "Total size of the entries in the request is over the limit." when the entries of
  one request add up to more than ``ENTRY_LIMIT_BYTES``. A single entry over the limit necessarily makes its
  request over the limit, so AWS never returns such an entry as a failed entry (``FailedEntryCount``); its
  documented per-entry error codes (``InvalidArgument``, ``MalformedDetail``...) carry no size error.
  ``ENTRY_LIMIT_BYTES`` is 256 KiB, the limit in AWS's calculation page; AWS announced on 2026-01-29 that
  event buses take events up to 1 MiB: set it to ``1024 * 1024`` to model that.

Lambda targets are handed to the sandbox's runner: ``CONTEXT.lambda_handlers[function_arn](event)`` when a
handler is registered (the call is made inside the request or scheduled action that put the event, under the
sandbox lock: a handler that calls the sandbox over HTTP must hand the work to a thread of its own), else the
invocation is recorded (``records`` control, name ``lambda_invocations``: ``{"function", "event"}``).

A rule matches events by its **event pattern** only, and only while it is ``ENABLED``: a rule with a schedule
and no pattern receives no event put on the bus (it runs on its schedule, ``schedules.py``), and a disabled rule
delivers nothing (API reference PutRule: "Rules with EventPatterns are triggered when a matching event is
observed. Rules with ScheduleExpressions self-trigger based on the given schedule"; DisableRule: "A disabled rule
won't match any events, and won't self-trigger if it has a schedule expression"). ``deliver(rule, event)`` is the
delivery alone, for the scheduler.

moto 5.2.5 raises ``NotImplementedError`` from ``PutEvents`` for every event once any rule has an SNS or a
Lambda target, leaves ``account`` out of the SQS body, ignores ``Input`` and ``InputPath``, crashes on an
input template with an unquoted placeholder (``{"id": <id>}``), accepts entries of any size, and delivers
every event to a rule that has a schedule and no pattern (its empty pattern matches everything) and to a
disabled rule.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

ENTRY_LIMIT_BYTES = 256 * 1024
TIME_ENTRY_BYTES = 14
OVER_LIMIT_MESSAGE = "Total size of the entries in the request is over the limit."

ENVELOPE_KEYS = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")
MISSING = object()
_PATH_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def entry_size(entry):
    """The size AWS counts for one PutEvents entry (EventBridge user guide, "Calculating PutEvents event entry size")."""
    size = TIME_ENTRY_BYTES if entry.get("Time") is not None else 0
    for field in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(field) or "").encode("utf-8"))
    for resource in entry.get("Resources") or ():
        if resource is not None:
            size += len(str(resource).encode("utf-8"))
    return size


def iso_time(value):
    """An event's ``time`` as AWS writes it (``2026-11-24T10:12:34Z``), from moto's float or a client's value."""
    if isinstance(value, datetime):
        stamp = value if value.tzinfo is None else value.replace(tzinfo=None) - value.utcoffset()
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return str(value)
    from moto.core.utils import utcfromtimestamp

    return utcfromtimestamp(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(event):
    """The event as AWS delivers it to a target (moto's internal message minus its own fields, plus ``account``)."""
    delivered = {key: event.get(key) for key in ENVELOPE_KEYS}
    delivered["version"] = delivered["version"] or "0"
    delivered["time"] = iso_time(event.get("time"))
    delivered["resources"] = list(delivered["resources"] or [])
    if delivered["detail"] is None:
        delivered["detail"] = {}
    if event.get("replay-name"):
        delivered["replay-name"] = event["replay-name"]
    return delivered


def resolve_path(path, document):
    """EventBridge's JSON path subset: ``$``, dot notation (dashes, underscores), array indices, ``*``."""
    path = (path or "").strip()
    if not path.startswith("$"):
        return MISSING
    nodes, wildcard = [document], False
    for name, index in _PATH_SEGMENT.findall(path[1:]):
        found = []
        for node in nodes:
            if (name or index) == "*":
                wildcard = True
                found.extend(node.values() if isinstance(node, dict) else node if isinstance(node, list) else [])
            elif index:
                if isinstance(node, list) and int(index) < len(node):
                    found.append(node[int(index)])
            elif isinstance(node, dict) and name in node:
                found.append(node[name])
        nodes = found
    if wildcard:
        return nodes
    return nodes[0] if nodes else MISSING


def _as_text(value):
    """A value inside a JSON string or a text template: strings as they are, anything else as JSON."""
    if value is MISSING:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render_template(template, values):
    """Render an ``InputTemplate`` as AWS does.

    * A template that is JSON (it starts with ``{``, ``[`` or ``"``): a placeholder **outside** quotes becomes
      the value as JSON (a string gets its quotes: ``{"id": <id>}`` -> ``{"id": "i-0abc"}``); a placeholder
      **inside** a JSON string becomes the value's text, escaped for the string
      (``"<id> is <state>"`` -> ``"i-0abc is running"``). The predefined ``aws.events.event`` and
      ``aws.events.event.json`` are inserted as they are, unescaped (AWS: "only as the value of a JSON field").
    * Any other template is text: each placeholder becomes the value's text.
    * A placeholder whose path matched nothing in the event: AWS does not create the variable; the sandbox
      renders it as ``null`` outside quotes and as nothing inside a string or text. A placeholder naming no
      variable at all is left as written.
    """
    json_template = template.lstrip()[:1] in ("{", "[", '"')
    out, in_string, escaped, position = [], False, False, 0
    while position < len(template):
        char = template[position]
        match = _PLACEHOLDER.match(template, position) if char == "<" else None
        if match and match.group(1) in values:
            value = values[match.group(1)]
            raw = match.group(1) in ("aws.events.event", "aws.events.event.json")
            if not json_template:
                out.append(_as_text(value))
            elif in_string:
                text = _as_text(value)
                out.append(text if raw else json.dumps(text)[1:-1])
            else:
                out.append("null" if value is MISSING else json.dumps(value, separators=(",", ":")))
            position = match.end()
            continue
        if json_template:
            if escaped:
                escaped = False
            elif char == "\\" and in_string:
                escaped = True
            elif char == '"':
                in_string = not in_string
        out.append(char)
        position += 1
    return "".join(out)


def target_input(rule, target, event, ingestion_time=None):
    """The text a target receives for ``event`` (an AWS envelope): the event, ``Input``, ``InputPath`` or the transformer."""
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath"):
        selected = resolve_path(target["InputPath"], event)
        return json.dumps(None if selected is MISSING else selected, separators=(",", ":"))
    transformer = target.get("InputTransformer") or {}
    if transformer.get("InputTemplate"):
        values = {name: resolve_path(path, event) for name, path in (transformer.get("InputPathsMap") or {}).items()}
        values.update(
            {
                "aws.events.rule-arn": rule.arn,
                "aws.events.rule-name": rule.name,
                "aws.events.event.ingestion-time": iso_time(
                    ingestion_time if ingestion_time is not None else event.get("time")
                ),
                "aws.events.event": {key: value for key, value in event.items() if key != "detail"},
                "aws.events.event.json": event,
            }
        )
        return render_template(transformer["InputTemplate"], values)
    return json.dumps(event, separators=(",", ":"))


def install(context):
    """Patch moto's events model: ``EventsBackend.put_events`` (size limit) and ``Rule.send_to_targets``
    (dispatch: SQS, SNS and Lambda here; log groups, archives, event buses and API destinations stay moto's)."""
    from moto.events.exceptions import ValidationException
    from moto.events.models import EventsBackend, Rule
    from moto.sns.models import sns_backends
    from moto.sqs.models import sqs_backends
    from moto.utilities.arns import parse_arn

    moto_put_events = EventsBackend.put_events
    moto_send_to_targets = Rule.send_to_targets

    def put_events(self, events):
        if len(events) <= 10 and sum(entry_size(entry) for entry in events) > ENTRY_LIMIT_BYTES:
            raise ValidationException(OVER_LIMIT_MESSAGE)
        return moto_put_events(self, events)

    def to_sqs(arn, target, body):
        backend = sqs_backends[arn.account][arn.region]
        group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
        if group_id:
            attributes = backend.get_queue_attributes(
                queue_name=arn.resource_id, attribute_names=["ContentBasedDeduplication"]
            )
            if attributes["ContentBasedDeduplication"] == "false":
                raise ValueError("an SQS FIFO target needs content-based deduplication")
        backend.send_message(queue_name=arn.resource_id, message_body=body, group_id=group_id)

    def to_sns(arn, target, body):
        sns_backends[arn.account][arn.region].publish(message=body, arn=target["Arn"])

    def to_lambda(arn, target, body):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = body
        function_arn = target["Arn"]
        unqualified = ":".join(function_arn.split(":")[:7])
        handler = context.lambda_handlers.get(function_arn) or context.lambda_handlers.get(unqualified)
        if handler is None:
            context.record("lambda_invocations", {"function": function_arn, "event": payload})
        else:
            handler(payload)

    senders = {"sqs": to_sqs, "sns": to_sns, "lambda": to_lambda}

    def send_to_targets(self, original_event, transform_input=True):
        if (
            self.event_pattern.dump() is None
            or self.state != "ENABLED"
            or not self.event_pattern.matches_event(original_event)
        ):
            return
        deliver(self, original_event, transform_input)

    def deliver(rule, original_event, transform_input=True):
        """Send one event to every target of ``rule``; returns ``[{"target", "body"}]`` of what was sent."""
        event = envelope(original_event)
        sent = []
        for target in list(rule.targets):
            try:
                arn = parse_arn(target["Arn"])
                sender = senders.get(arn.service)
                if sender is None:
                    moto_send_one(rule, target, original_event, transform_input)
                    continue
                body = (
                    target_input(rule, target, event, original_event.get("ingestion-time"))
                    if transform_input
                    else json.dumps(event, separators=(",", ":"))
                )
                sender(arn, target, body)
                sent.append({"target": target["Arn"], "body": body})
            except Exception as exc:  # AWS retries or drops a failed delivery; PutEvents still succeeds
                context.record(
                    "eventbridge_delivery_failures",
                    {"rule": rule.name, "target": target.get("Arn"), "event_id": event.get("id"), "error": repr(exc)},
                )
        return sent

    def moto_send_one(rule, target, original_event, transform_input):
        targets = rule.targets
        rule.targets = [target]
        try:
            moto_send_to_targets(rule, dict(original_event), transform_input)
        finally:
            rule.targets = targets

    EventsBackend.put_events = put_events
    Rule.send_to_targets = send_to_targets
    _INSTALLED["deliver"] = deliver


_INSTALLED = {}


def deliver(rule, event, transform_input=True):
    """Deliver ``event`` (moto's internal message) to ``rule``'s targets as AWS would, whatever its pattern."""
    if "deliver" not in _INSTALLED:
        raise RuntimeError("sandbox.rules.eventbridge is not installed")
    return _INSTALLED["deliver"](rule, event, transform_input)
