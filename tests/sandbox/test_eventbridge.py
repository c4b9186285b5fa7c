"""Rule 7: EventBridge delivery as AWS does it (sandbox/rules/eventbridge.py)."""

import json
import re

import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT
from sandbox.rules import eventbridge

from .conftest import drain, drain_documents, error_code, unique

ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ENVELOPE = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


def put(events, source, detail, **entry):
    answer = events.put_events(
        Entries=[
            dict(
                {
                    "Source": source,
                    "DetailType": "Sandbox Test",
                    "Detail": json.dumps(detail),
                    "Resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"],
                },
                **entry,
            )
        ]
    )
    assert answer["FailedEntryCount"] == 0, answer
    return answer["Entries"][0]["EventId"]


def test_sqs_target_receives_the_full_envelope_with_account(events, sqs, box, queue, rule):
    """moto 5.2.5 leaves ``account`` out of the SQS body; AWS delivers the whole event."""
    url, arn = queue()
    source = unique("sandbox.test")
    rule({"Arn": arn}, pattern={"source": [source]})
    event_id = put(events, source, {"instance-id": "i-0abc", "n": 1})
    [body] = drain(sqs, url)
    event = json.loads(body)
    assert set(event) == ENVELOPE
    assert event["id"] == event_id and event["account"] == "123456789012" and event["region"] == "us-east-1"
    assert event["source"] == source and event["detail-type"] == "Sandbox Test" and event["version"] == "0"
    assert event["resources"] == ["arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"]
    assert event["detail"] == {"instance-id": "i-0abc", "n": 1}
    assert ISO_SECONDS.match(event["time"])
    assert event["time"] == box.clock()["now"][:19] + "Z"


def test_sns_target_publishes_to_the_topic_and_its_sqs_subscription(events, sqs, box, subscribed_topic, rule):
    """moto 5.2.5 raises NotImplementedError from PutEvents once a rule has an SNS target; AWS publishes."""
    topic, (url, _arn) = subscribed_topic()
    source = unique("sandbox.test")
    rule({"Arn": topic}, pattern={"source": [source]})
    event_id = put(events, source, {"instance-id": "i-0abc"})
    [body] = drain(sqs, url)
    notification = json.loads(body)
    assert notification["Type"] == "Notification" and notification["TopicArn"] == topic
    event = json.loads(notification["Message"])
    assert set(event) == ENVELOPE and event["id"] == event_id and event["account"] == "123456789012"
    assert event["detail"] == {"instance-id": "i-0abc"}


def test_other_rules_keep_working_beside_an_sns_target(events, sqs, sns, box, queue, rule):
    """moto 5.2.5 fails every PutEvents (even for other rules) once an SNS target exists; AWS delivers each."""
    url, arn = queue()
    topic = sns.create_topic(Name=unique("eb-topic"))["TopicArn"]
    source = unique("sandbox.test")
    rule({"Arn": topic}, {"Arn": arn}, pattern={"source": [source]})
    put(events, source, {"k": "v"})
    assert [event["detail"] for event in drain_documents(sqs, url)] == [{"k": "v"}]


def test_lambda_target_runs_the_registered_handler(events, box, rule):
    """moto 5.2.5 raises NotImplementedError from PutEvents for a Lambda target; AWS invokes the function."""
    function = f"arn:aws:lambda:us-east-1:123456789012:function:{unique('handler')}"
    received = []
    CONTEXT.lambda_handlers[function] = received.append
    try:
        source = unique("sandbox.test")
        rule({"Arn": function}, pattern={"source": [source]})
        event_id = put(events, source, {"instance-id": "i-0abc"})
    finally:
        del CONTEXT.lambda_handlers[function]
    assert len(received) == 1
    assert set(received[0]) == ENVELOPE and received[0]["id"] == event_id and received[0]["account"] == "123456789012"
    assert box.records("lambda_invocations") == []


def test_lambda_target_without_a_handler_is_recorded(events, box, rule):
    """moto 5.2.5 raises NotImplementedError from PutEvents for a Lambda target; the sandbox records the invocation."""
    function = f"arn:aws:lambda:us-east-1:123456789012:function:{unique('unregistered')}"
    source = unique("sandbox.test")
    rule({"Arn": function}, pattern={"source": [source]})
    event_id = put(events, source, {"instance-id": "i-0abc"})
    [invocation] = box.records("lambda_invocations")
    assert invocation["function"] == function
    assert invocation["event"]["id"] == event_id and invocation["event"]["account"] == "123456789012"


def test_a_failing_target_does_not_fail_put_events(events, sqs, box, queue, rule):
    """AWS retries or drops a failed delivery and PutEvents still succeeds; the sandbox records the failure."""
    url, arn = queue()
    function = f"arn:aws:lambda:us-east-1:123456789012:function:{unique('broken')}"

    def broken(event):
        raise RuntimeError("handler failed")

    CONTEXT.lambda_handlers[function] = broken
    try:
        source = unique("sandbox.test")
        rule(
            {"Arn": function},
            {"Arn": "arn:aws:sqs:us-east-1:123456789012:no-such-queue"},
            {"Arn": arn},
            pattern={"source": [source]},
        )
        put(events, source, {"k": 1})
    finally:
        del CONTEXT.lambda_handlers[function]
    assert len(drain(sqs, url)) == 1
    failures = box.records("eventbridge_delivery_failures")
    assert sorted(f["target"] for f in failures) == sorted(
        [function, "arn:aws:sqs:us-east-1:123456789012:no-such-queue"]
    )


def test_input_transformer_renders_unquoted_and_quoted_placeholders(events, sqs, box, queue, rule):
    """moto 5.2.5 crashes on an unquoted placeholder; AWS inserts JSON outside quotes and text inside them."""
    url, arn = queue()
    source = unique("sandbox.test")
    template = (
        '{"instance": <instance>, "state": <state>, "count": <count>, "message": "<instance> is \\"<state>\\"", '
        '"rule": <aws.events.rule-name>, "tags": <tags>, "account": "<account>", "missing": <missing>}'
    )
    name = rule(
        {
            "Arn": arn,
            "InputTransformer": {
                "InputPathsMap": {
                    "instance": "$.detail.instance-id",
                    "state": "$.detail.state",
                    "count": "$.detail.count",
                    "tags": "$.detail.tags",
                    "account": "$.account",
                    "missing": "$.detail.nothing",
                },
                "InputTemplate": template,
            },
        },
        pattern={"source": [source]},
    )
    put(events, source, {"instance-id": "i-0abc", "state": "running", "count": 3, "tags": ["a", "b"]})
    [body] = drain(sqs, url)
    assert json.loads(body) == {
        "instance": "i-0abc",
        "state": "running",
        "count": 3,
        "message": 'i-0abc is "running"',
        "rule": name,
        "tags": ["a", "b"],
        "account": "123456789012",
        "missing": None,
    }


def test_input_transformer_string_and_text_templates(events, sqs, box, queue, rule):
    """moto 5.2.5 crashes on a text (non-JSON) template; AWS sends string and text templates as rendered."""
    url_string, arn_string = queue()
    url_text, arn_text = queue()
    source = unique("sandbox.test")
    paths = {"instance": "$.detail.instance-id", "state": "$.detail.state"}
    rule(
        {
            "Arn": arn_string,
            "InputTransformer": {"InputPathsMap": paths, "InputTemplate": '"<instance> is in state <state>"'},
        },
        {
            "Arn": arn_text,
            "InputTransformer": {"InputPathsMap": paths, "InputTemplate": "<instance> is in state <state>"},
        },
        pattern={"source": [source]},
    )
    put(events, source, {"instance-id": "i-0abc", "state": "stopped"})
    assert drain(sqs, url_string) == ['"i-0abc is in state stopped"']
    assert drain(sqs, url_text) == ["i-0abc is in state stopped"]


def test_input_and_input_path_targets(events, sqs, box, queue, rule):
    """moto 5.2.5 ignores Input and InputPath and sends the event; AWS sends the constant or the selected part."""
    url_constant, arn_constant = queue()
    url_path, arn_path = queue()
    source = unique("sandbox.test")
    rule(
        {"Arn": arn_constant, "Input": '{"fixed": true}'},
        {"Arn": arn_path, "InputPath": "$.detail"},
        pattern={"source": [source]},
    )
    put(events, source, {"instance-id": "i-0abc"})
    assert drain(sqs, url_constant) == ['{"fixed": true}']
    assert drain_documents(sqs, url_path) == [{"instance-id": "i-0abc"}]


def test_oversized_put_events_is_refused(events, box):
    """moto 5.2.5 accepts entries of any size; AWS refuses a request over the limit with ValidationException."""
    source = unique("sandbox.test")
    base = eventbridge.entry_size({"Source": source, "DetailType": "Sandbox Test", "Detail": '{"pad": ""}'})
    fits = json.dumps({"pad": "x" * (eventbridge.ENTRY_LIMIT_BYTES - base)})
    answer = events.put_events(Entries=[{"Source": source, "DetailType": "Sandbox Test", "Detail": fits}])
    assert answer["FailedEntryCount"] == 0
    too_big = json.dumps({"pad": "x" * (eventbridge.ENTRY_LIMIT_BYTES - base + 1)})
    with pytest.raises(ClientError) as refused:
        events.put_events(Entries=[{"Source": source, "DetailType": "Sandbox Test", "Detail": too_big}])
    assert error_code(refused) == "ValidationException"
    assert "over the limit" in refused.value.response["Error"]["Message"]
    half = json.dumps({"pad": "x" * (eventbridge.ENTRY_LIMIT_BYTES // 2)})
    with pytest.raises(ClientError) as refused:
        events.put_events(Entries=[{"Source": source, "DetailType": "Sandbox Test", "Detail": half}] * 2)
    assert error_code(refused) == "ValidationException"


def test_entry_size_follows_aws_calculation():
    """AWS counts Time as 14 bytes and Source, DetailType, Detail and each resource as UTF-8 bytes."""
    entry = {
        "Source": "s",
        "DetailType": "dt",
        "Detail": '{"k":"\u00e9"}',
        "Resources": ["r1", "r\u00e9"],
        "EventBusName": "default",
    }
    assert eventbridge.entry_size(entry) == 1 + 2 + 10 + 2 + 3
    assert eventbridge.entry_size(dict(entry, Time=1700000000)) == 18 + 14


def test_ec2_events_reach_an_sns_subscription(ec2, sqs, box, subscribed_topic, rule, launch):
    """moto 5.2.5 emits no EC2 events and cannot deliver to SNS; AWS does both (the recovery loop's warning path)."""
    topic, (url, _arn) = subscribed_topic()
    rule(
        {
            "Arn": topic,
            "InputTransformer": {
                "InputPathsMap": {"instance": "$.detail.instance-id", "state": "$.detail.state"},
                "InputTemplate": '"<instance> is <state>"',
            },
        },
        pattern={"source": ["aws.ec2"]},
    )
    instance = launch()
    messages = [json.loads(body)["Message"] for body in drain(sqs, url)]
    assert [m for m in messages if instance in m] == [f'"{instance} is pending"', f'"{instance} is running"']
