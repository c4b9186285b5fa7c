"""The Lambda service and the SQS event source mapping, played by the sandbox: functions really run.

moto 5.2.5 stores a function (its zip in ``code_bytes``, ``handler``, ``environment_vars``, ``timeout``) and its
event source mappings, but runs code only in a container engine, which the sandbox does not have: a message
sent to a mapped queue is received once by moto, handed to Docker, fails, and is made visible again (its
``ApproximateReceiveCount`` grows with every send). The runner replaces that:

* **event source mapping** (Lambda developer guide, "Using Lambda with Amazon SQS", "Handling errors for an SQS
  event source", "Implementing partial batch responses"): for every enabled SQS mapping, a poller receives up to
  ``BatchSize`` messages through moto's SQS backend with the queue's visibility timeout (moto counts
  ``ApproximateReceiveCount`` and moves a message whose count reached the redrive policy's ``maxReceiveCount``
  to the dead-letter queue on the next receive, as SQS does), builds the event exactly as Lambda does
  (``Records`` of ``messageId``, ``receiptHandle``, ``body``, ``attributes``, ``messageAttributes``,
  ``md5OfBody``, ``eventSource``, ``eventSourceARN``, ``awsRegion``), invokes the function, then:

  - success, mapping with ``ReportBatchItemFailures``: deletes every message but those whose ``itemIdentifier``
    is in ``batchItemFailures``. A null or empty response, or a null or empty ``batchItemFailures``, is a complete
    success; a response that is not an object, an item without ``itemIdentifier``, an empty or null identifier, or
    one naming no message of the batch is a complete failure (nothing deleted), as AWS documents;
  - success without it: deletes the whole batch;
  - an error (exception, timeout, crash): deletes nothing; the messages return after the visibility timeout.

* **execution environments** (Lambda developer guide, "Lambda execution environment lifecycle"): a function runs
  in an environment process that imports its handler once (the init phase) and then runs invocations one at a
  time, keeping module state between them, as a warm Lambda environment does. An idle environment of the same
  configuration (code, handler, timeout, memory, environment variables) takes the next invocation; otherwise a new
  one starts (a cold start: the REPORT line adds ``Init Duration``). A change of code or configuration retires
  the old ones; a timeout, a crash or a failed init discards the environment; one idle for ``IDLE_SECONDS`` is
  reclaimed; at most ``IDLE_ENVIRONMENTS`` idle ones are kept per configuration. Each run records ``environment``
  (``cold``/``warm``) and ``init_duration``.

* **the function** runs in a subprocess, as Lambda isolates it: the zip moto stores (the bytes the deploy
  uploaded, so ``UpdateFunctionCode`` changes what runs) is extracted to a directory that is the only
  ``PYTHONPATH`` entry (boto3 comes from the interpreter, as in the Lambda runtime); a bootstrap imports
  ``module.function`` from the ``Handler`` (``recovery.handler.lambda_handler``), installs the runtime's root
  log handler, calls it with the event and a context object (``function_name``, ``function_version``,
  ``invoked_function_arn``, ``memory_limit_in_mb``, ``aws_request_id``, ``log_group_name``,
  ``log_stream_name``, ``get_remaining_time_in_millis()``) and prints the result on a marker line. The
  environment is the function's ``Environment.Variables`` plus the runtime's reserved variables
  (``AWS_REGION``, ``AWS_LAMBDA_FUNCTION_NAME``...), the sandbox's ``AWS_ENDPOINT_URL``, dummy credentials and
  ``AWS_CONFIG_FILE``/``AWS_SHARED_CREDENTIALS_FILE`` = ``/dev/null``; nothing of the sandbox's own environment
  leaks in. The function ``Timeout`` is enforced in real seconds (``context.clock.duration``: divided by the
  scale on the scaled clock, at least ``min_real_timeout``); ``get_remaining_time_in_millis()`` counts down the
  modeled ``Timeout`` over that real limit. Errors have the runtime's shapes (``Runtime.ImportModuleError``,
  ``Runtime.HandlerNotFound``, ``Runtime.MarshalError``, ``Runtime.ExitError``, ``Sandbox.Timedout``, or the
  exception's type). Output goes to the run's log (``START``/``END``/``REPORT`` lines) and to CloudWatch Logs
  (``/aws/lambda/<name>``).

* **asynchronous invocation** (EventBridge Lambda targets, ``Invoke`` with ``InvocationType=Event``): the
  invocation is queued and returns at once; the runner thread runs it. A failed one is retried twice (or the
  function's ``MaximumRetryAttempts``), one modeled minute and then two after the failure ("Error handling and
  automatic retries in Lambda").

* **synchronous invocation** (``Invoke``, ``RequestResponse``): runs the function with the sandbox lock released
  while it runs, returns its result, or its error with ``FunctionError: Unhandled``; ``LogType=Tail`` returns the
  last 4 KB of the log.

* ``CreateEventSourceMapping`` for a queue whose visibility timeout is shorter than the function's timeout fails
  with ``InvalidParameterValueException`` "Queue visibility timeout: 30 seconds is less than Function timeout:
  60 seconds", as AWS answers (moto accepts it).

Every run is recorded (``records`` control, name ``lambda_runs``; ``lambda/runs`` control). Polling is real-time
(every ``POLL_SECONDS``), independent of the modeled clock; the sandbox lock is held only while moto's state is
read or changed, never while a function runs (a function calls the sandbox over HTTP). Visibility timeouts and
retry delays are on the modeled clock (moto's timestamps are). ``drain()`` (control ``lambda/drain``) processes
until every mapped queue holds no visible message and no asynchronous invocation is queued.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile

POLL_SECONDS = 0.2
MIN_REAL_TIMEOUT = 5.0          # real seconds a run gets at least (interpreter start, imports)
ASYNC_RETRY_DELAYS = (60.0, 120.0)  # modeled seconds before the first and the second retry
LOG_TAIL_BYTES = 4096
RUNS_KEPT = 200
MARKER = "__SANDBOX_LAMBDA_RESULT__ "
INIT_MARKER = "__SANDBOX_LAMBDA_INIT__ "
IDLE_ENVIRONMENTS = 4           # warm environments kept per function configuration
IDLE_SECONDS = 300.0            # real seconds an unused environment is kept (Lambda reclaims idle ones)
DUMMY_CREDENTIALS = "sandbox"

# Never taken from a function's environment: they would point boto3 elsewhere than the sandbox.
BLOCKED_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
                     "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
                     "AWS_CA_BUNDLE", "HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
BLOCKED_PREFIXES = ("AWS_ENDPOINT_URL", "AWS_CONTAINER_")

BOOTSTRAP = r'''
import importlib, json, logging, os, sys, time, traceback

MARKER = "__SANDBOX_LAMBDA_RESULT__ "
INIT_MARKER = "__SANDBOX_LAMBDA_INIT__ "
invocations = sys.stdin          # the runtime API's stand-in: one invocation per line, answered in order
answers = sys.__stdout__
sys.stdin = open(os.devnull, encoding="utf-8")
init = json.loads(invocations.readline())
sys.path[:] = [init["task_root"]] + [entry for entry in sys.path if entry not in ("", init["task_root"])]
spec = {"context": {"aws_request_id": ""}}   # the invocation under way


class LambdaContext:
    def __init__(self, values):
        self.function_name = values["function_name"]
        self.function_version = values["function_version"]
        self.invoked_function_arn = values["invoked_function_arn"]
        self.memory_limit_in_mb = values["memory_limit_in_mb"]
        self.aws_request_id = values["aws_request_id"]
        self.log_group_name = values["log_group_name"]
        self.log_stream_name = values["log_stream_name"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline, self._ratio = spec["deadline"], spec["ratio"]

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.time()) * self._ratio * 1000))


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = spec["context"]["aws_request_id"]
        return True


log_handler = logging.StreamHandler(sys.stdout)
log_handler.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                                           "%Y-%m-%dT%H:%M:%S"))
log_handler.formatter.converter = time.gmtime
log_handler.addFilter(RequestIdFilter())
logging.getLogger().addHandler(log_handler)


def user_frames(exc):
    """The traceback without the bootstrap's own frame, as the runtime reports it."""
    return traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])


def error_of(error_type, message, stack=None):
    return {"errorMessage": message, "errorType": error_type, "requestId": spec["context"]["aws_request_id"], "stackTrace": stack or []}


def load(handler):
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as exc:
        return None, ("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}", None)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        return None, ("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}", None)
    except SyntaxError as exc:
        return None, ("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", None)
    except Exception as exc:
        return None, (type(exc).__name__, str(exc), user_frames(exc))
    function = getattr(module, function_name, None)
    if function is None:
        return None, ("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'", None)
    return function, None


def answer(prefix, outcome):
    sys.stdout.flush()
    sys.stderr.flush()
    answers.write("\n" + prefix + json.dumps(outcome) + "\n")
    answers.flush()


def invoke(function):
    try:
        result = function(spec["event"], LambdaContext(spec["context"]))
    except Exception as exc:
        outcome = {"error": error_of(type(exc).__name__, str(exc), user_frames(exc))}
        print(f"[ERROR] {type(exc).__name__}: {exc}\nTraceback (most recent call last):\n" + "".join(outcome["error"]["stackTrace"]), flush=True)
        return outcome
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return {"error": error_of("Runtime.MarshalError", f"Unable to marshal response: {exc}")}
    return {"result": result}


def main():
    began = time.monotonic()
    function, failure = load(init["handler"])       # the init phase: once per execution environment
    answer(INIT_MARKER, {"init_ms": round((time.monotonic() - began) * 1000, 2), "failed": function is None})
    for line in invocations:
        spec.clear()
        spec.update(json.loads(line))
        if function is None:
            error = error_of(*failure)
            print(f"[ERROR] {error['errorType']}: {error['errorMessage']}", flush=True)
            answer(MARKER, {"error": error})
            return                                   # an environment whose init failed is not used again
        answer(MARKER, invoke(function))


main()
'''

_ACTIVE = {}        # id(context) -> the running LambdaRunner
_INSTALLED = False


def active(context):
    """The runner started for ``context``, if any."""
    return _ACTIVE.get(id(context))


def _split_arn(arn):
    parts = arn.split(":")
    return parts if len(parts) >= 6 and parts[0] == "arn" else None


def _sqs_queue(queue_arn):
    """moto's queue model (and its backend) for an SQS ARN, or ``(None, None)``."""
    from moto.sqs.models import sqs_backends
    parts = _split_arn(queue_arn)
    if not parts or parts[2] != "sqs":
        return None, None
    backend = sqs_backends[parts[4]][parts[3]]
    found = backend.queues.get(parts[5])
    return (found, backend) if found is not None else (None, None)


def _lambda_backends():
    from moto.awslambda.models import lambda_backends
    for account_backends in list(dict.values(lambda_backends)):
        yield from list(dict.values(account_backends))


def _lambda_backend_for(function_arn):
    from moto.awslambda.models import lambda_backends
    parts = _split_arn(function_arn)
    if not parts or parts[2] != "lambda":
        return None
    if parts[4] not in dict.keys(lambda_backends) or parts[3] not in dict.keys(lambda_backends[parts[4]]):
        return None
    return lambda_backends[parts[4]][parts[3]]


def _find_function(name_or_arn, context=None):
    """moto's function model for a name (in the context's account and region) or an ARN, or None."""
    if name_or_arn.startswith("arn:"):
        backend = _lambda_backend_for(name_or_arn)
    else:
        backend = context.backend("lambda") if context is not None else None
    if backend is None:
        return None
    try:
        return backend.get_function(name_or_arn)
    except Exception:  # moto's UnknownFunctionException and friends
        return None


def _served(function):
    runtime = function.get("runtime") or ""
    return function.get("package_type", "Zip") == "Zip" and runtime.startswith("python3")


def install(context):
    """Patch moto (idempotent): no Docker delivery to mapped queues, the visibility-timeout check on
    ``CreateEventSourceMapping``, and ``Invoke`` through the active runner."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.awslambda.exceptions import InvalidParameterValueException
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.sqs.models import Queue

    # moto delivers each sent message to a mapped queue's function through Docker, under the sender's request,
    # receiving it (and counting a receive) once: the runner's poller is the mapping instead.
    Queue.lambda_event_source_mappings = property(lambda self: {}, lambda self, value: None)

    moto_create_mapping = LambdaBackend.create_event_source_mapping

    def create_event_source_mapping(self, spec):
        found, dummy_backend = _sqs_queue(spec.get("EventSourceArn") or "")
        if found is not None and spec.get("FunctionName"):
            function = self.get_function(spec["FunctionName"])
            visibility, timeout = int(found.visibility_timeout or 0), int(function.timeout or 3)
            if visibility < timeout:
                raise InvalidParameterValueException(
                    f"Queue visibility timeout: {visibility} seconds is less than Function timeout: {timeout} seconds")
        return moto_create_mapping(self, spec)

    moto_invoke = LambdaFunction.invoke

    def invoke(self, body, request_headers, response_headers):
        runner = active(context)
        if runner is None:
            return moto_invoke(self, body, request_headers, response_headers)
        return runner.api_invoke(self, body, request_headers, response_headers)

    LambdaBackend.create_event_source_mapping = create_event_source_mapping
    LambdaFunction.invoke = invoke
    _INSTALLED = True


class _Handlers(dict):
    """``context.lambda_handlers`` while a runner is active: explicit entries first, else any function moto has."""

    def __init__(self, runner, initial):
        super().__init__(initial)
        self.runner = runner

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        handler = self.runner.dispatcher(key)
        return default if handler is None else handler

    def __contains__(self, key):
        return self.get(key) is not None

    def __missing__(self, key):
        handler = self.runner.dispatcher(key)
        if handler is None:
            raise KeyError(key)
        return handler


def _kill(process):
    """End a run's process group (the run's own process and whatever it started)."""
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Environment:
    """One execution environment: a process that imported the function once (the init phase) and runs its
    invocations one at a time, as Lambda reuses a warm environment; module state survives between them."""

    def __init__(self, key, process, log_stream):
        self.key, self.process, self.log_stream = key, process, log_stream
        self.started = time.monotonic()
        self.last_used = self.started
        self.init_ms = None          # known once the bootstrap reports its init phase
        self.init_failed = False     # the handler could not be loaded: the environment answers once, then ends
        self.invocations = 0
        self._lines = queue.Queue()
        threading.Thread(target=self._read, name="sandbox-lambda-output", daemon=True).start()

    def _read(self):
        for raw in iter(self.process.stdout.readline, b""):
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)        # the process ended

    def invoke(self, spec, real_limit):
        """Send one invocation; returns ``(log lines, outcome or None, how)`` with ``how`` done, timeout or exit."""
        self.invocations += 1
        lines, deadline = [], time.monotonic() + real_limit
        try:
            self.process.stdin.write(json.dumps(spec, default=str).encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            return lines, None, "exit"
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return lines, None, "timeout"
            if line is None:
                return lines, None, "exit"
            if line.startswith(INIT_MARKER):
                init = _marked(line, INIT_MARKER)
                self.init_ms, self.init_failed = init.get("init_ms"), bool(init.get("failed"))
            elif line.startswith(MARKER):
                while lines and not lines[-1]:
                    lines.pop()
                return lines, _marked(line, MARKER), "done"
            elif line or lines:          # the blank line before a marker is the bootstrap's, not the function's
                lines.append(line)

    def close(self):
        _kill(self.process)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _marked(line, marker):
    try:
        return json.loads(line[len(marker):])
    except ValueError:
        return {}


class LambdaRunner:
    """Polls the SQS event source mappings and runs functions; see the module's documentation."""

    def __init__(self, context, endpoint, poll_seconds=POLL_SECONDS, min_real_timeout=MIN_REAL_TIMEOUT):
        self.context = context
        self.endpoint = endpoint.rstrip("/")
        self.poll_seconds = poll_seconds
        self.min_real_timeout = min_real_timeout
        self.runs = collections.deque(maxlen=RUNS_KEPT)
        self._async = queue.Queue()
        self._cycle_lock = threading.Lock()
        self._extract_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self._processes = set()
        self._idle = {}               # configuration key -> warm environments not running anything
        self._pool_lock = threading.Lock()
        self._workdir = None

    # ---- life cycle ----------------------------------------------------------------------
    def start(self):
        if active(self.context) is not None:
            raise RuntimeError("a Lambda runner is already active for this sandbox")
        install(self.context)
        self._workdir = tempfile.mkdtemp(prefix="ec2spot-sandbox-lambda-")
        with self.context.lock:
            _ACTIVE[id(self.context)] = self
            self.context.lambda_handlers = _Handlers(self, self.context.lambda_handlers)
            for name, control in (("lambda/drain", self._drain_control), ("lambda/runs", self._runs_control),
                                  ("lambda/invoke", self._invoke_control)):
                self.context.control(name)(control)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sandbox-lambda-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._wake.set()
        for process in list(self._processes):  # runs under way end as the service goes away
            _kill(process)
        with self._pool_lock:
            idle, self._idle = [e for environments in self._idle.values() for e in environments], {}
        for environment in idle:
            environment.close()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        with self.context.lock:
            if active(self.context) is self:
                del _ACTIVE[id(self.context)]
                self.context.lambda_handlers = dict(self.context.lambda_handlers)
            for name in ("lambda/drain", "lambda/runs", "lambda/invoke"):
                self.context.controls.pop(name, None)
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _loop(self):
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._cycle()
            except Exception as exc:  # the poller must survive anything one function or queue does
                with self.context.lock:
                    self.context.record("lambda_runner_errors", repr(exc))

    def drain(self, timeout=60.0):
        """Process until no mapped queue has a visible message and no asynchronous invocation is queued
        (in-flight and delayed messages may remain). Returns ``{"drained", "invocations", "queues"}``."""
        deadline = time.monotonic() + timeout
        invocations = 0
        while True:
            done = self._cycle()
            invocations += done
            if not done and self._async.empty():
                return {"drained": True, "invocations": invocations, "queues": self.queue_status()}
            if time.monotonic() > deadline:
                return {"drained": False, "invocations": invocations, "queues": self.queue_status()}

    def queue_status(self):
        """Each mapped queue's visible, in-flight and delayed message counts."""
        status = {}
        with self.context.lock:
            for mapping in self._mappings(enabled_only=False):
                found, dummy_backend = _sqs_queue(mapping["queue_arn"])
                if found is not None:
                    status[mapping["queue_arn"]] = {"visible": found.approximate_number_of_messages,
                                                    "in_flight": found.approximate_number_of_messages_not_visible,
                                                    "delayed": found.approximate_number_of_messages_delayed,
                                                    "enabled": mapping["enabled"]}
        return status

    # ---- one pass --------------------------------------------------------------------------
    def _cycle(self):
        """Queued asynchronous invocations, then one batch per enabled mapping. Returns the invocations made."""
        with self._cycle_lock:
            count = 0
            for dummy_index in range(self._async.qsize()):
                if self._stop.is_set():
                    return count
                try:
                    item = self._async.get_nowait()
                except queue.Empty:
                    break
                self._run_async(item)
                count += 1
            with self.context.lock:
                mappings = self._mappings()
            for mapping in mappings:
                if self._stop.is_set():
                    return count
                if self._poll(mapping):
                    count += 1
            return count

    def _mappings(self, enabled_only=True):
        found = []
        for backend in _lambda_backends():
            for esm in backend.list_event_source_mappings(None, None):
                if esm.event_source_arn.split(":")[2] != "sqs" or (enabled_only and not esm.enabled):
                    continue
                found.append({"uuid": esm.uuid, "function_arn": esm.function_arn, "queue_arn": esm.event_source_arn,
                              "batch_size": int(esm.batch_size or 10), "enabled": bool(esm.enabled),
                              "report_failures": "ReportBatchItemFailures" in (esm.function_response_types or [])})
        return found

    def _poll(self, mapping):
        with self.context.lock:
            model = _find_function(mapping["function_arn"])
            function = self._snapshot(model) if model is not None else None
            if function is None or not _served(function) or str(function["reserved_concurrency"]) == "0":
                return False  # deleted, not runnable here, or throttled: AWS would not invoke either
            found, backend = _sqs_queue(mapping["queue_arn"])
            if found is None:
                return False
            messages = backend.receive_message(found.name, mapping["batch_size"], 0, int(found.visibility_timeout or 0),
                                               message_attribute_names=["All"])
            if not messages:
                return False
            self._scale_visibility(found, messages)
            records = [self._record(message, mapping["queue_arn"], found) for message in messages]
        run = self._execute(function, {"Records": records}, "sqs")
        run["event_source_arn"] = mapping["queue_arn"]
        run["records"] = [record["messageId"] for record in records]
        failed = self._failed_ids(mapping, records, run)
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
            self._finish(run, function)
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

    def _record(self, message, queue_arn, found):
        """One message as Lambda hands it to the function (Lambda developer guide, "Using Lambda with Amazon SQS")."""
        attributes = {"ApproximateReceiveCount": str(message.approximate_receive_count),
                      "SentTimestamp": str(message.sent_timestamp),
                      "SenderId": message.sender_id,
                      "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp)}
        if found.fifo_queue:
            attributes.update({"SequenceNumber": message.sequence_number, "MessageGroupId": message.group_id,
                               "MessageDeduplicationId": message.deduplication_id})
        trace_header = (message.system_attributes or {}).get("AWSTraceHeader")
        if trace_header:
            attributes["AWSTraceHeader"] = trace_header.get("StringValue") if isinstance(trace_header, dict) else trace_header
        message_attributes = {}
        for name, value in (message.message_attributes or {}).items():
            converted = {"stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
            if value.get("StringValue") is not None:
                converted["stringValue"] = value["StringValue"]
            if value.get("BinaryValue") is not None:
                binary = value["BinaryValue"]
                converted["binaryValue"] = base64.b64encode(binary).decode("ascii") if isinstance(binary, bytes) else binary
            message_attributes[name] = converted
        record = {"messageId": message.id, "receiptHandle": message.receipt_handle, "body": message.body,
                  "attributes": attributes, "messageAttributes": message_attributes, "md5OfBody": message.body_md5}
        if message_attributes:
            record["md5OfMessageAttributes"] = message.attribute_md5
        record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": queue_arn.split(":")[3]})
        return record

    @staticmethod
    def _failed_ids(mapping, records, run):
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

    # ---- asynchronous invocations (EventBridge targets, InvocationType=Event) -----------------
    def dispatcher(self, function_arn):
        """``handler(event)`` for ``context.lambda_handlers`` if ``function_arn`` names a function moto has."""
        if not isinstance(function_arn, str) or _find_function(function_arn) is None:
            return None

        def handler(event):
            return self.invoke_async(function_arn, event, source="eventbridge")
        return handler

    def invoke_async(self, function, event, source="event"):
        """Queue an asynchronous invocation (returns its request id at once; the runner thread runs it)."""
        request_id = str(uuid.uuid4())
        self._async.put({"function": function, "event": event, "source": source, "attempt": 0, "request_id": request_id})
        self._wake.set()
        return request_id

    def _run_async(self, item):
        with self.context.lock:
            model = _find_function(item["function"], self.context)
            function = self._snapshot(model) if model is not None else None
        if function is None:
            with self.context.lock:
                self.context.record("lambda_async_dropped", dict(item, reason="function not found"))
            return
        run = self._execute(function, item["event"], item["source"], request_id=item["request_id"])
        run["attempt"] = item["attempt"]
        retries = min(len(ASYNC_RETRY_DELAYS), function["max_retry_attempts"])
        with self.context.lock:
            self._finish(run, function)
            if run.get("error") is None:
                return
            if item["attempt"] < retries:
                retry = dict(item, attempt=item["attempt"] + 1)
                self.context.after(ASYNC_RETRY_DELAYS[item["attempt"]], lambda: self._requeue(retry),
                                   f"lambda async retry {function['name']} {item['request_id']}")
            else:
                self.context.record("lambda_async_dropped", dict(item, reason="retries exhausted", error=run["error"]))

    def _requeue(self, item):
        self._async.put(item)
        self._wake.set()

    # ---- synchronous invocations (Invoke API, lambda/invoke control) ---------------------------
    def invoke(self, function, event, source="invoke"):
        """Run ``function`` (name, ARN or moto model) with ``event`` now; returns the run record. Call without
        the sandbox lock (``outside_lock`` does that for a caller holding it)."""
        with self.context.lock:
            model = function if not isinstance(function, str) else _find_function(function, self.context)
            if model is None:
                raise KeyError(f"no Lambda function {function!r}")
            snapshot = self._snapshot(model)
        run = self._execute(snapshot, event, source)
        with self.context.lock:
            self._finish(run, snapshot)
        return run

    def outside_lock(self, work, timeout=None):
        """Run ``work()`` on another thread while this one waits with the sandbox lock fully released (a caller
        inside a request or a control holds it; the function calls the sandbox)."""
        outcome = {}
        condition = threading.Condition(self.context.lock)

        def target():
            try:
                outcome["value"] = work()
            except BaseException as exc:  # handed back to the caller
                outcome["error"] = exc
            finally:
                with condition:
                    outcome["done"] = True
                    condition.notify_all()

        threading.Thread(target=target, name="sandbox-lambda-call", daemon=True).start()
        with condition:
            if not condition.wait_for(lambda: outcome.get("done"), timeout):
                raise TimeoutError("the Lambda runner did not answer in time")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def api_invoke(self, model, body, request_headers, response_headers):
        """moto's ``LambdaFunction.invoke`` (the Invoke API), run here."""
        invocation_type = request_headers.get("x-amz-invocation-type") or "RequestResponse"
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            event = body
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            self.invoke_async(model.function_arn, event, source="invoke")
            return b""
        run = self.outside_lock(lambda: self.invoke(model, event, source="invoke"))
        response_headers["x-amz-executed-version"] = str(model.version)
        response_headers["x-amz-log-result"] = base64.b64encode(run["log"].encode("utf-8")[-LOG_TAIL_BYTES:]).decode("ascii")
        if run.get("error") is not None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(run["error"]).encode("utf-8")
        return json.dumps(run["result"]).encode("utf-8")

    # ---- running a function --------------------------------------------------------------
    def _snapshot(self, model):
        """What a run needs from moto's function model, read under the lock."""
        retry_attempts = 2
        for config in getattr(model, "event_invoke_config", None) or []:
            if "MaximumRetryAttempts" in (config.config or {}):
                retry_attempts = int(config.config["MaximumRetryAttempts"])
        return {"name": model.function_name, "arn": model.function_arn, "version": str(model.version),
                "handler": model.handler, "runtime": model.run_time, "package_type": model.package_type,
                "code": bytes(getattr(model, "code_bytes", b"") or b""), "code_sha256": model.code_sha_256,
                "environment": dict(model.environment_vars or {}), "timeout": int(model.timeout or 3),
                "memory": int(model.memory_size or 128), "region": model.region, "account": model.account_id,
                "reserved_concurrency": model.reserved_concurrency, "max_retry_attempts": retry_attempts,
                "logs": (model.logs_backend, model.logs_group_name)}

    def _task_root(self, function):
        """The function's zip extracted once per distinct content (Lambda's /var/task)."""
        digest = hashlib.sha256(function["code"]).hexdigest()
        root = os.path.join(self._workdir or tempfile.gettempdir(), "code", digest)
        with self._extract_lock:
            if not os.path.isdir(root):
                os.makedirs(os.path.dirname(root), exist_ok=True)
                staging = tempfile.mkdtemp(prefix=".extract-", dir=os.path.dirname(root))
                with zipfile.ZipFile(io.BytesIO(function["code"])) as archive:
                    archive.extractall(staging)
                os.replace(staging, root)
        return root

    def _environment(self, function, task_root, log_stream):
        env = {str(key): str(value) for key, value in function["environment"].items()
               if key not in BLOCKED_VARIABLES and not str(key).startswith(BLOCKED_PREFIXES)}
        env.update({
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS,
            "AWS_REGION": function["region"],
            "AWS_DEFAULT_REGION": function["region"],
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_LAMBDA_FUNCTION_NAME": function["name"],
            "AWS_LAMBDA_FUNCTION_VERSION": function["version"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function["memory"]),
            "AWS_LAMBDA_LOG_GROUP_NAME": function["logs"][1],
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function['runtime']}",
            "_HANDLER": function["handler"] or "",
            "LAMBDA_TASK_ROOT": task_root,
            "PYTHONPATH": task_root,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
        })
        return env

    def _execute(self, function, event, source, request_id=None):
        """Run the function once in an execution environment (warm if one is idle); returns the run record (not yet
        recorded)."""
        request_id = request_id or str(uuid.uuid4())
        now = self.context.now()
        run = {"function": function["name"], "function_arn": function["arn"], "request_id": request_id, "source": source,
               "code_sha256": function["code_sha256"], "time": now.isoformat(), "result": None, "error": None,
               "log": "", "duration": 0.0}
        if not _served(function):
            run["error"] = {"errorType": "Sandbox.UnsupportedRuntime",
                            "errorMessage": f"the sandbox runs Python zip functions only, not {function['runtime']!r}"}
            return run
        try:
            task_root = self._task_root(function)
        except (zipfile.BadZipFile, OSError) as exc:
            run["error"] = {"errorType": "Runtime.InvalidEntrypoint", "errorMessage": f"cannot unpack the deployment package: {exc}"}
            return run
        real_limit = max(self.min_real_timeout, self.context.clock.duration(function["timeout"]))
        started = time.monotonic()
        environment, cold = self._environment_for(function, task_root)
        spec = {"event": event, "deadline": time.time() + real_limit, "ratio": function["timeout"] / real_limit,
                "context": {"function_name": function["name"], "function_version": function["version"],
                            "invoked_function_arn": function["arn"], "memory_limit_in_mb": str(function["memory"]),
                            "aws_request_id": request_id, "log_group_name": function["logs"][1],
                            "log_stream_name": environment.log_stream}}
        self._processes.add(environment.process)
        try:
            lines, outcome, how = environment.invoke(spec, real_limit)
        finally:
            self._processes.discard(environment.process)
        timed_out = how == "timeout"
        self._release(environment, healthy=how == "done")
        run["duration"] = round(time.monotonic() - started, 3)
        run["environment"] = "cold" if cold else "warm"
        run["log_stream"] = environment.log_stream
        init_ms = environment.init_ms if cold else None
        process = environment.process
        if timed_out:
            message = f"{self.context.now():%Y-%m-%dT%H:%M:%S.%f}"[:-3] + f"Z {request_id} Task timed out after {function['timeout']:.2f} seconds"
            run["error"] = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            lines.append(message)
        elif outcome is None:
            status = process.returncode
            reason = f"signal: {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
            run["error"] = {"errorType": "Runtime.ExitError",
                            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {reason}"}
            lines.append(run["error"]["errorMessage"])
        elif outcome.get("error") is not None:
            run["error"] = outcome["error"]
        else:
            run["result"] = outcome.get("result")
        # Lambda's REPORT: the invocation's duration; a cold start's init phase apart, as "Init Duration".
        duration_ms = max(0.0, run["duration"] * 1000 - (init_ms or 0.0))
        run["init_duration"] = round(init_ms / 1000, 3) if init_ms is not None else None
        run["log"] = "\n".join([f"START RequestId: {request_id} Version: {function['version']}"] + lines + [
            f"END RequestId: {request_id}",
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {int(duration_ms) + 1} ms\t"
            f"Memory Size: {function['memory']} MB" + (f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else "")]) + "\n"
        return run

    # ---- execution environments ------------------------------------------------------------
    @staticmethod
    def _configuration_key(function):
        """What makes an environment: Lambda starts new ones after a code or configuration change."""
        return (function["arn"], function["code_sha256"], function["handler"] or "", function["timeout"], function["memory"],
                json.dumps(function["environment"], sort_keys=True))

    def _environment_for(self, function, task_root):
        """A warm environment of this configuration if one is idle, else a new one (a cold start): ``(env, cold)``."""
        key = self._configuration_key(function)
        retired = []
        with self._pool_lock:
            for other in [k for k in self._idle if k[0] == key[0] and k != key]:
                retired += self._idle.pop(other)       # an older version of the function: never used again
            now = time.monotonic()
            for other, environments in list(self._idle.items()):
                keep = [e for e in environments if now - e.last_used <= IDLE_SECONDS]
                retired += [e for e in environments if e not in keep]
                self._idle[other] = keep
            idle = self._idle.get(key) or []
            environment = idle.pop() if idle else None
        for old in retired:
            old.close()
        if environment is not None:
            return environment, False
        log_stream = f"{self.context.now():%Y/%m/%d}/[{function['version']}]{uuid.uuid4().hex}"
        process = subprocess.Popen([sys.executable, "-s", "-u", "-c", BOOTSTRAP], cwd=task_root,
                                   env=self._environment(function, task_root, log_stream), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        process.stdin.write(json.dumps({"task_root": task_root, "handler": function["handler"] or ""}).encode("utf-8") + b"\n")
        process.stdin.flush()
        return _Environment(key, process, log_stream), True

    def _release(self, environment, healthy):
        """Back to the pool after a clean invocation; a timed-out or crashed environment is discarded, as Lambda
        resets it."""
        environment.last_used = time.monotonic()
        if healthy and not environment.init_failed and not self._stop.is_set():
            with self._pool_lock:
                idle = self._idle.setdefault(environment.key, [])
                if len(idle) < IDLE_ENVIRONMENTS:
                    idle.append(environment)
                    return
        environment.close()

    def _finish(self, run, function):
        """Record a finished run (caller holds the lock) and write its log to CloudWatch Logs, as Lambda does."""
        logs_backend, group = function["logs"]
        try:
            from moto.core.utils import unix_time_millis
            logs_backend.ensure_log_group(group)
            logs_backend.create_log_stream(group, run["log_stream"])
            stamp = int(unix_time_millis())
            logs_backend.put_log_events(group, run["log_stream"],
                                        [{"timestamp": stamp, "message": line} for line in run["log"].splitlines() if line])
        except Exception as exc:  # logs are a convenience; the run stands without them
            run["log_error"] = repr(exc)
        summary = dict(run, log=run["log"][-LOG_TAIL_BYTES:])
        self.runs.append(summary)
        self.context.record("lambda_runs", summary)

    # ---- controls --------------------------------------------------------------------------
    def _drain_control(self, payload):
        """``{"timeout": s}``: process every mapped queue and queued invocation (``drain``)."""
        timeout = float(payload.get("timeout", 60))
        return self.outside_lock(lambda: self.drain(timeout=timeout), timeout + 60)

    def _runs_control(self, payload):
        """``{"function": name, "limit": n}``: recent runs, newest last."""
        runs = [run for run in self.runs if not payload.get("function") or payload["function"] in (run["function"], run["function_arn"])]
        limit = int(payload.get("limit") or 0)
        return {"runs": runs[-limit:] if limit else runs}

    def _invoke_control(self, payload):
        """``{"function": name or ARN, "event": {...}, "async": false}``: invoke now (or queue it)."""
        if "function" not in payload:
            raise KeyError("lambda/invoke needs a function")
        event = payload.get("event", {})
        if payload.get("async"):
            return {"request_id": self.invoke_async(payload["function"], event, source="control")}
        return self.outside_lock(lambda: self.invoke(payload["function"], event, source="control"))
