"""The sandbox's Lambda runner: SQS event source mappings and functions that really run (sandbox/lambda_runner.py).

Each function is a tiny zip built here, uploaded with boto3 as a deploy would; the runner runs those bytes in a
subprocess. The server runs on the manual clock: visibility timeouts and retry delays pass only when a test
advances it, and ``drain()`` makes each step deterministic (the runner's own thread may get there first; drain
waits for it).
"""

import base64
import hashlib
import io
import json
import time
import zipfile

import pytest
from botocore.exceptions import ClientError

from sandbox import lambda_runner
from sandbox.clock import CONTEXT

from .conftest import error_code, unique

LAMBDA_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)

# The handler the tests deploy: record what it was given, then act on each record's body.
HANDLER = '''
import json
import os
import time

VERSION = "{version}"
INVOCATIONS = []   # module state: survives between invocations in a warm environment, as on Lambda


def lambda_handler(event, context):
    INVOCATIONS.append(context.aws_request_id)
    seen = {{"version": VERSION, "event": event, "pid": os.getpid(), "invocation": len(INVOCATIONS), "function_name": context.function_name,
            "request_id": context.aws_request_id, "arn": context.invoked_function_arn,
            "memory": context.memory_limit_in_mb, "remaining": context.get_remaining_time_in_millis(),
            "env": {{key: os.environ.get(key) for key in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
                    "AWS_LAMBDA_FUNCTION_NAME", "AWS_ACCESS_KEY_ID", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                    "PYTHONPATH", "LAMBDA_TASK_ROOT", "EC2SPOT_HANDLER_CONFIG", "AWS_PROFILE")}}}}
    print("handled", context.aws_request_id)
    failures = []
    for record in event.get("Records", []):
        body = record.get("body")
        if body == "crash":
            raise RuntimeError("crash requested")
        if body == "fail":
            failures.append({{"itemIdentifier": record["messageId"]}})
        if body == "bogus":
            failures.append({{"itemIdentifier": "not-a-message-of-this-batch"}})
        if body == "sleep":
            time.sleep(30)
        if body == "pause":
            time.sleep(1)
        if body == "aws":
            import boto3
            identity = boto3.client("sts").get_caller_identity()
            reservations = boto3.client("ec2").describe_instances()["Reservations"]
            boto3.client("ssm").put_parameter(Name="/lambda-runner-test/" + record["messageId"], Type="String",
                                              Value=json.dumps({{"account": identity["Account"], "reservations": len(reservations)}}))
    if event.get("detail-type") == "Lambda Runner Test" and event.get("detail", {{}}).get("crash"):
        raise RuntimeError("crash requested")
    if event.get("probe") == "isolation":
        import importlib.util
        seen["sandbox_importable"] = importlib.util.find_spec("sandbox") is not None
    return {{"batchItemFailures": failures, "seen": seen}}
'''


def package(version="1", source=HANDLER):
    """A deployment zip with ``app/handler.py`` (handler ``app.handler.lambda_handler``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app/__init__.py", "")
        archive.writestr("app/handler.py", source.format(version=version))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runner(endpoint):
    """The runner the server started, or one of this module's own."""
    running = lambda_runner.active(CONTEXT)
    if running is not None:
        yield running
        return
    started = lambda_runner.LambdaRunner(CONTEXT, endpoint).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def awslambda(aws):
    return aws("lambda")


@pytest.fixture(scope="module")
def role(aws):
    name = unique("lambda-runner-role")
    return aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]


@pytest.fixture
def function(awslambda, role, runner):
    """``function(**create_function kwargs)``: a new function running ``HANDLER``; returns its ARN."""

    def _function(code=None, **extra):
        spec = dict(
            {
                "FunctionName": unique("runner-fn"),
                "Runtime": "python3.12",
                "Role": role,
                "Handler": "app.handler.lambda_handler",
                "Code": {"ZipFile": code or package()},
                "Timeout": 10,
                "Environment": {"Variables": {"EC2SPOT_HANDLER_CONFIG": '{"mode": "test"}', "AWS_PROFILE": "leak"}},
            },
            **extra,
        )
        return awslambda.create_function(**spec)["FunctionArn"]

    return _function


@pytest.fixture
def source_queue(queue):
    """``source_queue(visibility=30, max_receive=None)``: a new queue (with a DLQ when ``max_receive``):
    ``(url, arn, dlq_url)``."""

    def _queue(visibility=30, max_receive=None):
        attributes = {"VisibilityTimeout": str(visibility)}
        dlq_url = None
        if max_receive:
            dlq_url, dlq_arn = queue()
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}
            )
        url, arn = queue(**attributes)
        return url, arn, dlq_url

    return _queue


@pytest.fixture
def mapping(awslambda):
    """``mapping(function_arn, queue_arn, report=True, **extra)``: an event source mapping, deleted afterwards."""
    made = []

    def _mapping(function_arn, queue_arn, report=True, **extra):
        spec = dict({"EventSourceArn": queue_arn, "FunctionName": function_arn, "BatchSize": 10}, **extra)
        if report:
            spec["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
        made.append(awslambda.create_event_source_mapping(**spec)["UUID"])
        return made[-1]

    yield _mapping
    for mapping_id in made:
        awslambda.delete_event_source_mapping(UUID=mapping_id)


def send(sqs, url, *bodies, **extra):
    """Send ``bodies`` in one request (one batch for the poller); returns their message ids in order."""
    entries = [dict({"Id": str(index), "MessageBody": body}, **extra) for index, body in enumerate(bodies)]
    answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert not answer.get("Failed"), answer
    by_id = {entry["Id"]: entry["MessageId"] for entry in answer["Successful"]}
    return [by_id[str(index)] for index in range(len(bodies))]


def counts(sqs, url):
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def runs_of(runner, function_arn):
    return [run for run in runner.runs if run["function_arn"] == function_arn]


def seen_records(runner, function_arn):
    """Every record each SQS run of the function got, as ``[(body, record), ...]`` per run."""
    return [
        [(record["body"], record) for record in run["result"]["seen"]["event"]["Records"]]
        if run["result"]
        else run["error"]
        for run in runs_of(runner, function_arn)
        if run["source"] == "sqs"
    ]


def test_success_deletes_the_batch_and_the_event_is_lambdas(runner, function, source_queue, mapping, sqs, endpoint):
    function_arn = function()
    url, arn, dummy_dlq = source_queue()
    mapping(function_arn, arn)
    ids = send(
        sqs, url, "one", "two", "three", MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}}
    )

    assert runner.drain()["drained"]

    [run] = runs_of(runner, function_arn)
    assert run["error"] is None and sorted(run["deleted"]) == sorted(ids) and run["kept"] == []
    assert counts(sqs, url) == (0, 0)
    seen = run["result"]["seen"]
    records = seen["event"]["Records"]
    assert [record["body"] for record in records] == ["one", "two", "three"]
    record = records[0]
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "md5OfMessageAttributes",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["messageId"] == ids[0]
    assert set(record["attributes"]) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["md5OfBody"] == hashlib.md5(b"one").hexdigest()
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "test", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    }
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == ("aws:sqs", arn, "us-east-1")
    # The context object and the environment Lambda gives a function, pointed at the sandbox.
    assert seen["function_name"] == function_arn.split(":")[-1] and seen["arn"] == function_arn
    assert seen["memory"] == "128" and 0 < seen["remaining"] <= 10000
    env = seen["env"]
    assert env["AWS_ENDPOINT_URL"] == endpoint and env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert (
        env["AWS_ACCESS_KEY_ID"] == "sandbox"
        and env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == "/dev/null"
    )
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == seen["function_name"]
    assert env["EC2SPOT_HANDLER_CONFIG"] == '{"mode": "test"}' and env["AWS_PROFILE"] is None
    assert env["PYTHONPATH"] == env["LAMBDA_TASK_ROOT"]
    assert "handled" in run["log"] and run["log"].startswith("START RequestId: ")
    [recorded] = [entry for entry in CONTEXT.records["lambda_runs"] if entry["request_id"] == run["request_id"]]
    assert recorded["function"] == seen["function_name"] and recorded["records"] == ids


def test_partial_batch_failure_keeps_only_the_failed_message(runner, function, source_queue, mapping, sqs, box):
    function_arn = function()
    url, arn, dummy_dlq = source_queue(visibility=30)
    mapping(function_arn, arn)
    ids = send(sqs, url, "ok", "fail", "ok too")

    runner.drain()
    [run] = runs_of(runner, function_arn)
    assert run["kept"] == [ids[1]] and sorted(run["deleted"]) == sorted([ids[0], ids[2]])
    assert counts(sqs, url) == (0, 1)  # in flight until the visibility timeout

    box.advance(29)
    runner.drain()
    assert len(runs_of(runner, function_arn)) == 1
    box.advance(2)
    runner.drain()
    second = seen_records(runner, function_arn)[1]
    assert [(body, record["attributes"]["ApproximateReceiveCount"]) for body, record in second] == [("fail", "2")]


def test_an_invalid_item_identifier_fails_the_whole_batch(runner, function, source_queue, mapping, sqs):
    function_arn = function()
    url, arn, dummy_dlq = source_queue()
    mapping(function_arn, arn)
    ids = send(sqs, url, "ok", "bogus")

    runner.drain()
    [run] = runs_of(runner, function_arn)
    assert run["error"] is None and sorted(run["kept"]) == sorted(ids) and run["deleted"] == []
    assert counts(sqs, url) == (0, 2)


def test_without_report_batch_item_failures_a_success_deletes_everything(runner, function, source_queue, mapping, sqs):
    function_arn = function()
    url, arn, dummy_dlq = source_queue()
    mapping(function_arn, arn, report=False)
    send(sqs, url, "ok", "fail")

    runner.drain()
    [run] = runs_of(runner, function_arn)
    assert run["kept"] == [] and len(run["deleted"]) == 2
    assert counts(sqs, url) == (0, 0)


def test_an_exception_keeps_the_batch_and_it_returns_after_the_visibility_timeout(
    runner, function, source_queue, mapping, sqs, box
):
    function_arn = function()
    url, arn, dummy_dlq = source_queue(visibility=45)
    mapping(function_arn, arn)
    ids = send(sqs, url, "ok", "crash")

    runner.drain()
    [run] = runs_of(runner, function_arn)
    assert run["error"]["errorType"] == "RuntimeError" and run["error"]["errorMessage"] == "crash requested"
    assert sorted(run["kept"]) == sorted(ids) and run["deleted"] == []
    assert "[ERROR] RuntimeError: crash requested" in run["log"] and "Traceback" in run["log"]
    assert counts(sqs, url) == (0, 2)

    box.advance(44)
    runner.drain()
    assert len(runs_of(runner, function_arn)) == 1
    box.advance(2)
    runner.drain()
    again = seen_records(runner, function_arn)
    assert len(again) == 2 and again[1]["errorType"] == "RuntimeError"  # the same two, crashing again
    assert runs_of(runner, function_arn)[1]["records"] == run["records"]


def test_max_receive_count_moves_the_message_to_the_dead_letter_queue(
    runner, function, source_queue, mapping, sqs, box
):
    function_arn = function()
    url, arn, dlq_url = source_queue(visibility=30, max_receive=2)
    mapping(function_arn, arn)
    [message_id] = send(sqs, url, "crash")

    for dummy_attempt in range(3):
        runner.drain()
        box.advance(31)
    runner.drain()

    assert len(runs_of(runner, function_arn)) == 2  # received twice; the third receive moved it
    assert counts(sqs, url) == (0, 0)
    [moved] = sqs.receive_message(QueueUrl=dlq_url, AttributeNames=["All"])["Messages"]
    assert moved["MessageId"] == message_id and moved["Body"] == "crash"


def test_the_handler_calls_the_sandbox_through_aws_endpoint_url(
    runner, function, source_queue, mapping, sqs, aws, launch
):
    launch()
    function_arn = function()
    url, arn, dummy_dlq = source_queue()
    mapping(function_arn, arn)
    [message_id] = send(sqs, url, "aws")

    runner.drain()
    [run] = runs_of(runner, function_arn)
    assert run["error"] is None, run["log"]
    written = json.loads(aws("ssm").get_parameter(Name=f"/lambda-runner-test/{message_id}")["Parameter"]["Value"])
    assert written["account"] == "123456789012" and written["reservations"] >= 1


def test_the_function_runs_isolated_from_the_sandbox(runner, function):
    run = runner.invoke(function(), {"probe": "isolation"})
    assert run["result"]["seen"]["sandbox_importable"] is False


def test_the_uploaded_zip_is_what_runs(runner, function, awslambda, box):
    first = package("1")
    function_arn = function(code=first)
    run = box.call("lambda/invoke", function=function_arn, event={})
    assert run["result"]["seen"]["version"] == "1"
    assert run["code_sha256"] == base64.b64encode(hashlib.sha256(first).digest()).decode()

    second = package("2")
    awslambda.update_function_code(FunctionName=function_arn, ZipFile=second)
    run = box.call("lambda/invoke", function=function_arn.split(":")[-1], event={})
    assert run["result"]["seen"]["version"] == "2"
    assert run["code_sha256"] == base64.b64encode(hashlib.sha256(second).digest()).decode()


def test_an_eventbridge_rule_invokes_the_function_asynchronously(runner, function, aws, box):
    events = aws("events")
    function_arn = function()
    rule = unique("runner-rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["sandbox.lambda-runner"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": function_arn}])
    try:
        events.put_events(
            Entries=[
                {
                    "Source": "sandbox.lambda-runner",
                    "DetailType": "Lambda Runner Test",
                    "Detail": json.dumps({"instance-id": "i-0abc"}),
                }
            ]
        )
        box.call("lambda/drain")
    finally:
        events.remove_targets(Rule=rule, Ids=["fn"])
        events.delete_rule(Name=rule)

    [run] = runs_of(runner, function_arn)
    assert run["source"] == "eventbridge" and run["error"] is None
    event = run["result"]["seen"]["event"]
    assert event["detail-type"] == "Lambda Runner Test" and event["detail"] == {"instance-id": "i-0abc"}
    assert event["account"] == "123456789012" and event["source"] == "sandbox.lambda-runner"
    assert box.records("lambda_invocations") == []


def test_a_failed_asynchronous_invocation_is_retried_twice(runner, function, box):
    function_arn = function()
    CONTEXT.lambda_handlers.get(function_arn)({"detail-type": "Lambda Runner Test", "detail": {"crash": True}})
    runner.drain()
    assert len(runs_of(runner, function_arn)) == 1
    box.advance(61)
    runner.drain()
    assert len(runs_of(runner, function_arn)) == 2
    box.advance(121)
    runner.drain()
    box.advance(600)
    runner.drain()
    runs = runs_of(runner, function_arn)
    assert [run["attempt"] for run in runs] == [0, 1, 2] and all(run["error"] for run in runs)
    [dropped] = box.records("lambda_async_dropped")
    assert dropped["reason"] == "retries exhausted"


def test_the_timeout_is_enforced(runner, function, source_queue, mapping, sqs):
    function_arn = function(Timeout=1)
    url, arn, dummy_dlq = source_queue()
    mapping(function_arn, arn)
    limit = runner.min_real_timeout
    runner.min_real_timeout = 1.0
    try:
        send(sqs, url, "sleep")
        runner.drain()
    finally:
        runner.min_real_timeout = limit
    [run] = runs_of(runner, function_arn)
    assert (
        run["error"]["errorType"] == "Sandbox.Timedout"
        and "Task timed out after 1.00 seconds" in run["error"]["errorMessage"]
    )
    assert run["duration"] < 10 and len(run["kept"]) == 1


def test_invoke_api_runs_the_function(runner, function, awslambda):
    function_arn = function()
    answer = awslambda.invoke(
        FunctionName=function_arn, Payload=json.dumps({"Records": [{"body": "ok"}]}), LogType="Tail"
    )
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read())["seen"]["event"] == {"Records": [{"body": "ok"}]}
    assert "handled" in base64.b64decode(answer["LogResult"]).decode()

    failed = awslambda.invoke(FunctionName=function_arn, Payload=json.dumps({"Records": [{"body": "crash"}]}))
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "RuntimeError"

    queued = awslambda.invoke(FunctionName=function_arn, InvocationType="Event", Payload=b"{}")
    assert queued["StatusCode"] == 202
    runner.drain()
    assert len(runs_of(runner, function_arn)) == 3


def test_a_mapping_to_a_queue_with_a_shorter_visibility_timeout_is_refused(function, source_queue, awslambda):
    function_arn = function(Timeout=60)
    dummy_url, arn, dummy_dlq = source_queue(visibility=30)
    with pytest.raises(ClientError) as excinfo:
        awslambda.create_event_source_mapping(EventSourceArn=arn, FunctionName=function_arn)
    assert error_code(excinfo) == "InvalidParameterValueException"
    assert "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds" in str(excinfo.value)


def test_a_disabled_mapping_is_not_polled(runner, function, source_queue, mapping, sqs, awslambda):
    function_arn = function()
    url, arn, dummy_dlq = source_queue()
    mapping_id = mapping(function_arn, arn)
    awslambda.update_event_source_mapping(UUID=mapping_id, Enabled=False)
    send(sqs, url, "ok")
    runner.drain()
    assert runs_of(runner, function_arn) == [] and counts(sqs, url) == (1, 0)
    awslambda.update_event_source_mapping(UUID=mapping_id, Enabled=True)
    runner.drain()
    assert len(runs_of(runner, function_arn)) == 1 and counts(sqs, url) == (0, 0)


def test_import_errors_have_the_runtimes_shape(runner, function):
    run = runner.invoke(function(Handler="missing.module.handler"), {})
    assert run["error"]["errorType"] == "Runtime.ImportModuleError"
    assert run["error"]["errorMessage"].startswith("Unable to import module 'missing.module'")
    run = runner.invoke(function(Handler="app.handler.absent"), {})
    assert run["error"]["errorType"] == "Runtime.HandlerNotFound"


def test_on_the_scaled_clock_the_visibility_timeout_is_scaled(runner, function, source_queue, mapping, sqs, box):
    function_arn = function()
    url, arn, dlq_url = source_queue(visibility=30, max_receive=2)
    mapping(function_arn, arn)
    box.set_scale(1000.0)  # 30 modeled seconds: 0.03 real seconds
    try:
        send(sqs, url, "crash")
        for dummy_attempt in range(3):
            runner.drain()
            time.sleep(0.2)
        runner.drain()
    finally:
        box.set_scale(0.0)
    assert len(runs_of(runner, function_arn)) == 2
    assert counts(sqs, url) == (0, 0) and counts(sqs, dlq_url) == (1, 0)


def test_a_warm_environment_is_reused_until_the_code_changes(runner, function, awslambda):
    """Lambda runs the init phase (the import) once per execution environment and reuses a warm one."""
    function_arn = function(code=package("1"))
    cold = runner.invoke(function_arn, {})
    warm = runner.invoke(function_arn, {})
    assert (cold["environment"], warm["environment"]) == ("cold", "warm")
    assert warm["result"]["seen"]["pid"] == cold["result"]["seen"]["pid"]
    assert (cold["result"]["seen"]["invocation"], warm["result"]["seen"]["invocation"]) == (1, 2)
    assert "Init Duration:" in cold["log"] and "Init Duration:" not in warm["log"]
    assert cold["init_duration"] > 0 and warm["init_duration"] is None
    assert warm["log_stream"] == cold["log_stream"]  # one log stream per environment

    awslambda.update_function_code(FunctionName=function_arn, ZipFile=package("2"))
    updated = runner.invoke(function_arn, {})
    assert updated["environment"] == "cold" and updated["result"]["seen"]["version"] == "2"
    assert (
        updated["result"]["seen"]["invocation"] == 1
        and updated["result"]["seen"]["pid"] != cold["result"]["seen"]["pid"]
    )


def test_concurrent_invocations_get_their_own_environments(runner, function):
    import threading

    function_arn = function()
    runs = []
    threads = [
        threading.Thread(target=lambda: runs.append(runner.invoke(function_arn, {"Records": [{"body": "pause"}]})))
        for _thread in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({run["result"]["seen"]["pid"] for run in runs}) == 2
    assert [run["environment"] for run in runs] == ["cold", "cold"]
    again = runner.invoke(function_arn, {})
    assert again["environment"] == "warm" and again["result"]["seen"]["pid"] in {
        run["result"]["seen"]["pid"] for run in runs
    }


def test_a_timed_out_or_crashed_environment_is_not_reused(runner, function):
    function_arn = function(Timeout=1)
    first = runner.invoke(function_arn, {})
    limit = runner.min_real_timeout
    runner.min_real_timeout = 1.0
    try:
        timed_out = runner.invoke(function_arn, {"Records": [{"body": "sleep"}]})
    finally:
        runner.min_real_timeout = limit
    assert timed_out["error"]["errorType"] == "Sandbox.Timedout" and timed_out["environment"] == "warm"
    after = runner.invoke(function_arn, {})
    assert after["environment"] == "cold" and after["result"]["seen"]["pid"] != first["result"]["seen"]["pid"]

    failed_import = function(Handler="missing.module.handler")
    assert [runner.invoke(failed_import, {})["error"]["errorType"] for _attempt in range(2)] == [
        "Runtime.ImportModuleError"
    ] * 2
