"""Invoking a function: one run in an execution environment and its result; synchronous and asynchronous invocation.

* **a run** (``Invocations.execute``): the function's ``Timeout`` is enforced in real seconds
  (``context.clock.duration``: divided by the scale on the scaled clock, at least ``min_real_timeout``);
  ``get_remaining_time_in_millis()`` counts down the modeled ``Timeout`` over that real limit. Errors have the
  runtime's shapes (``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``, ``Runtime.MarshalError``,
  ``Runtime.ExitError``, ``Sandbox.Timedout``, or the exception's type). Output goes to the run's log
  (``START``/``END``/``REPORT`` lines; a cold start's REPORT adds ``Init Duration``) and to CloudWatch Logs
  (``/aws/lambda/<name>``). Each run records ``environment`` (``cold``/``warm``) and ``init_duration``, and is
  recorded (``records`` name ``lambda_runs``, and ``runs``).

* **asynchronous invocation** (EventBridge Lambda targets, ``Invoke`` with ``InvocationType=Event``): the
  invocation is queued and returns at once; the runner thread runs it. A failed one is retried twice (or the
  function's ``MaximumRetryAttempts``), one modeled minute and then two after the failure ("Error handling and
  automatic retries in Lambda"); one that still fails, or whose function is gone, is recorded as
  ``lambda_async_dropped``.

* **synchronous invocation** (``Invoke``, ``RequestResponse``): runs the function with the sandbox lock released
  while it runs, returns its result, or its error with ``FunctionError: Unhandled``; ``LogType=Tail`` returns the
  last 4 KB of the log.
"""

from __future__ import annotations

import base64
import collections
import json
import queue
import signal
import threading
import time
import uuid
import zipfile

MIN_REAL_TIMEOUT = 5.0  # real seconds a run gets at least (interpreter start, imports)
ASYNC_RETRY_DELAYS = (60.0, 120.0)  # modeled seconds before the first and the second retry
ASYNC_RETRY_ATTEMPTS = 2  # Lambda's default MaximumRetryAttempts
LOG_TAIL_BYTES = 4096
RUNS_KEPT = 200


def split_arn(arn):
    """An ARN's parts (``arn``, partition, service, region, account, resource...), or None."""
    parts = arn.split(":")
    return parts if len(parts) >= 6 and parts[0] == "arn" else None


def _lambda_backend_for(function_arn):
    from moto.awslambda.models import lambda_backends

    parts = split_arn(function_arn)
    if not parts or parts[2] != "lambda":
        return None
    if parts[4] not in dict.keys(lambda_backends) or parts[3] not in dict.keys(lambda_backends[parts[4]]):
        return None
    return lambda_backends[parts[4]][parts[3]]


def find_function(name_or_arn, context=None):
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


def served(function):
    """Whether the sandbox runs this function: Python zip functions only."""
    runtime = function.get("runtime") or ""
    return function.get("package_type", "Zip") == "Zip" and runtime.startswith("python3")


def snapshot(model):
    """What a run needs from moto's function model, read under the lock."""
    retry_attempts = ASYNC_RETRY_ATTEMPTS
    for config in getattr(model, "event_invoke_config", None) or []:
        if "MaximumRetryAttempts" in (config.config or {}):
            retry_attempts = int(config.config["MaximumRetryAttempts"])
    return {
        "name": model.function_name,
        "arn": model.function_arn,
        "version": str(model.version),
        "handler": model.handler,
        "runtime": model.run_time,
        "package_type": model.package_type,
        "code": bytes(getattr(model, "code_bytes", b"") or b""),
        "code_sha256": model.code_sha_256,
        "environment": dict(model.environment_vars or {}),
        "timeout": int(model.timeout or 3),
        "memory": int(model.memory_size or 128),
        "region": model.region,
        "account": model.account_id,
        "reserved_concurrency": model.reserved_concurrency,
        "max_retry_attempts": retry_attempts,
        "logs": (model.logs_backend, model.logs_group_name),
    }


def outside_lock(context, work, timeout=None):
    """Run ``work()`` on another thread while this one waits with the sandbox lock fully released (a caller
    inside a request or a control holds it; the function calls the sandbox)."""
    outcome = {}
    condition = threading.Condition(context.lock)

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


class Invocations:
    """Runs functions in the pool's environments and keeps their runs; queues asynchronous invocations for the
    runner thread (``run_queued``), which ``wake`` tells of new ones and ``stopping`` of the runner's end."""

    def __init__(self, context, environments, stopping, wake, min_real_timeout=MIN_REAL_TIMEOUT):
        self.context = context
        self.environments = environments
        self.min_real_timeout = min_real_timeout
        self.runs = collections.deque(maxlen=RUNS_KEPT)
        self._queued = queue.Queue()  # asynchronous invocations (and their retries) not yet run
        self._stopping = stopping
        self._wake = wake

    # ---- synchronous invocations (Invoke API, lambda/invoke control) ---------------------------
    def invoke(self, function, event, source="invoke"):
        """Run ``function`` (name, ARN or moto model) with ``event`` now; returns the run record. Call without
        the sandbox lock (``outside_lock`` does that for a caller holding it)."""
        with self.context.lock:
            model = function if not isinstance(function, str) else find_function(function, self.context)
            if model is None:
                raise KeyError(f"no Lambda function {function!r}")
            function_snapshot = snapshot(model)
        run = self.execute(function_snapshot, event, source)
        with self.context.lock:
            self.finish(run, function_snapshot)
        return run

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
        run = outside_lock(self.context, lambda: self.invoke(model, event, source="invoke"))
        response_headers["x-amz-executed-version"] = str(model.version)
        log_tail = run["log"].encode("utf-8")[-LOG_TAIL_BYTES:]
        response_headers["x-amz-log-result"] = base64.b64encode(log_tail).decode("ascii")
        if run.get("error") is not None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(run["error"]).encode("utf-8")
        return json.dumps(run["result"]).encode("utf-8")

    # ---- asynchronous invocations (EventBridge targets, InvocationType=Event) -----------------
    def dispatcher(self, function_arn):
        """``handler(event)`` for ``context.lambda_handlers`` if ``function_arn`` names a function moto has."""
        if not isinstance(function_arn, str) or find_function(function_arn) is None:
            return None

        def handler(event):
            return self.invoke_async(function_arn, event, source="eventbridge")

        return handler

    def invoke_async(self, function, event, source="event"):
        """Queue an asynchronous invocation (returns its request id at once; the runner thread runs it)."""
        request_id = str(uuid.uuid4())
        self._queued.put(
            {"function": function, "event": event, "source": source, "attempt": 0, "request_id": request_id}
        )
        self._wake.set()
        return request_id

    def pending(self):
        """Whether an asynchronous invocation waits to run (a retry not yet due is not queued yet)."""
        return not self._queued.empty()

    def run_queued(self):
        """Run the asynchronous invocations queued now (not those queued meanwhile); returns how many ran."""
        count = 0
        for dummy_index in range(self._queued.qsize()):
            if self._stopping.is_set():
                return count
            try:
                item = self._queued.get_nowait()
            except queue.Empty:
                break
            self._run_async(item)
            count += 1
        return count

    def _run_async(self, item):
        with self.context.lock:
            model = find_function(item["function"], self.context)
            function = snapshot(model) if model is not None else None
        if function is None:
            with self.context.lock:
                self.context.record("lambda_async_dropped", dict(item, reason="function not found"))
            return
        run = self.execute(function, item["event"], item["source"], request_id=item["request_id"])
        run["attempt"] = item["attempt"]
        retries = min(len(ASYNC_RETRY_DELAYS), function["max_retry_attempts"])
        with self.context.lock:
            self.finish(run, function)
            if run.get("error") is None:
                return
            if item["attempt"] < retries:
                retry = dict(item, attempt=item["attempt"] + 1)
                self.context.after(
                    ASYNC_RETRY_DELAYS[item["attempt"]],
                    lambda: self._requeue(retry),
                    f"lambda async retry {function['name']} {item['request_id']}",
                )
            else:
                self.context.record("lambda_async_dropped", dict(item, reason="retries exhausted", error=run["error"]))

    def _requeue(self, item):
        self._queued.put(item)
        self._wake.set()

    # ---- one run -------------------------------------------------------------------------------
    def execute(self, function, event, source, request_id=None):
        """Run the function (a ``snapshot``) once in an execution environment (warm if one is idle); returns the
        run record (not yet recorded: ``finish`` does that)."""
        request_id = request_id or str(uuid.uuid4())
        now = self.context.now()
        run = {
            "function": function["name"],
            "function_arn": function["arn"],
            "request_id": request_id,
            "source": source,
            "code_sha256": function["code_sha256"],
            "time": now.isoformat(),
            "result": None,
            "error": None,
            "log": "",
            "duration": 0.0,
        }
        if not served(function):
            run["error"] = {
                "errorType": "Sandbox.UnsupportedRuntime",
                "errorMessage": f"the sandbox runs Python zip functions only, not {function['runtime']!r}",
            }
            return run
        try:
            task_root = self.environments.task_root(function)
        except (zipfile.BadZipFile, OSError) as exc:
            run["error"] = {
                "errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": f"cannot unpack the deployment package: {exc}",
            }
            return run
        real_limit = max(self.min_real_timeout, self.context.clock.duration(function["timeout"]))
        started = time.monotonic()
        environment, cold = self.environments.acquire(function, task_root)
        spec = {
            "event": event,
            "deadline": time.time() + real_limit,
            "ratio": function["timeout"] / real_limit,
            "context": {
                "function_name": function["name"],
                "function_version": function["version"],
                "invoked_function_arn": function["arn"],
                "memory_limit_in_mb": str(function["memory"]),
                "aws_request_id": request_id,
                "log_group_name": function["logs"][1],
                "log_stream_name": environment.log_stream,
            },
        }
        lines, outcome, how = self.environments.run(environment, spec, real_limit)
        run["duration"] = round(time.monotonic() - started, 3)
        run["environment"] = "cold" if cold else "warm"
        run["log_stream"] = environment.log_stream
        init_ms = environment.init_ms if cold else None
        if how == "timeout":
            message = (
                f"{self.context.now():%Y-%m-%dT%H:%M:%S.%f}"[:-3]
                + f"Z {request_id} Task timed out after {function['timeout']:.2f} seconds"
            )
            run["error"] = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            lines.append(message)
        elif outcome is None:
            status = environment.process.returncode  # known: an environment that ended was discarded (waited for)
            reason = f"signal: {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
            run["error"] = {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {reason}",
            }
            lines.append(run["error"]["errorMessage"])
        elif outcome.get("error") is not None:
            run["error"] = outcome["error"]
        else:
            run["result"] = outcome.get("result")
        # Lambda's REPORT: the invocation's duration; a cold start's init phase apart, as "Init Duration".
        duration_ms = max(0.0, run["duration"] * 1000 - (init_ms or 0.0))
        run["init_duration"] = round(init_ms / 1000, 3) if init_ms is not None else None
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {int(duration_ms) + 1} ms\tMemory Size: {function['memory']} MB"
            + (f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else "")
        )
        start = f"START RequestId: {request_id} Version: {function['version']}"
        run["log"] = "\n".join([start] + lines + [f"END RequestId: {request_id}", report]) + "\n"
        return run

    def finish(self, run, function):
        """Record a finished run (caller holds the lock) and write its log to CloudWatch Logs, as Lambda does."""
        logs_backend, group = function["logs"]
        try:
            from moto.core.utils import unix_time_millis

            logs_backend.ensure_log_group(group)
            logs_backend.create_log_stream(group, run["log_stream"])
            stamp = int(unix_time_millis())
            events = [{"timestamp": stamp, "message": line} for line in run["log"].splitlines() if line]
            logs_backend.put_log_events(group, run["log_stream"], events)
        except Exception as exc:  # logs are a convenience; the run stands without them
            run["log_error"] = repr(exc)
        summary = dict(run, log=run["log"][-LOG_TAIL_BYTES:])
        self.runs.append(summary)
        self.context.record("lambda_runs", summary)
