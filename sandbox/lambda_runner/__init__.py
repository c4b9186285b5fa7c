"""The Lambda service and the SQS event source mapping, played by the sandbox: functions really run.

moto 5.2.5 stores a function (its zip in ``code_bytes``, ``handler``, ``environment_vars``, ``timeout``) and its
event source mappings, but runs code only in a container engine, which the sandbox does not have: a message
sent to a mapped queue is received once by moto, handed to Docker, fails, and is made visible again (its
``ApproximateReceiveCount`` grows with every send). The runner replaces that, by concern:

* ``environments.py``: the execution environments, processes that import the handler once and run its
  invocations, kept warm in a pool; the one function that makes an environment's variables and credentials;
* ``bootstrap.py``: the program each environment process runs (standard library only, never this package);
* ``invoke.py``: one run and its result (timeout, error shapes, log, CloudWatch Logs), synchronous invocation
  (``Invoke``) and asynchronous invocation (EventBridge targets, ``InvocationType=Event``) with its retries;
* ``poller.py``: the SQS event source mappings, polled one batch at a time, with partial batch responses;
* here: ``LambdaRunner`` (its thread, ``drain`` and controls), ``active(context)`` and ``install(context)``, which
  patches moto: no Docker delivery to mapped queues, ``Invoke`` through the active runner, and
  ``CreateEventSourceMapping`` for a queue whose visibility timeout is shorter than the function's timeout fails
  with ``InvalidParameterValueException`` "Queue visibility timeout: 30 seconds is less than Function timeout:
  60 seconds", as AWS answers (moto accepts it).

Every run is recorded (``records`` control, name ``lambda_runs``; ``lambda/runs`` control). The runner thread
works in real time (every ``POLL_SECONDS``), independent of the modeled clock; the sandbox lock is held only while
moto's state is read or changed, never while a function runs (a function calls the sandbox over HTTP). Visibility
timeouts and retry delays are on the modeled clock (moto's timestamps are). ``drain()`` (control ``lambda/drain``)
processes until every mapped queue holds no visible message and no asynchronous invocation is queued.
"""

from __future__ import annotations

import threading
import time

from .environments import EnvironmentPool
from .invoke import MIN_REAL_TIMEOUT, Invocations, outside_lock
from .poller import POLL_SECONDS, EventSourcePoller, sqs_queue

__all__ = ["LambdaRunner", "active", "install"]

_ACTIVE = {}  # id(context) -> the running LambdaRunner
_INSTALLED = False


def active(context):
    """The runner started for ``context``, if any."""
    return _ACTIVE.get(id(context))


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
        found, dummy_backend = sqs_queue(spec.get("EventSourceArn") or "")
        if found is not None and spec.get("FunctionName"):
            function = self.get_function(spec["FunctionName"])
            visibility, timeout = int(found.visibility_timeout or 0), int(function.timeout or 3)
            if visibility < timeout:
                raise InvalidParameterValueException(
                    f"Queue visibility timeout: {visibility} seconds is less than Function timeout: {timeout} seconds"
                )
        return moto_create_mapping(self, spec)

    moto_invoke = LambdaFunction.invoke

    def invoke(self, body, request_headers, response_headers):
        runner = active(context)
        if runner is None:
            return moto_invoke(self, body, request_headers, response_headers)
        return runner.invocations.api_invoke(self, body, request_headers, response_headers)

    LambdaBackend.create_event_source_mapping = create_event_source_mapping
    LambdaFunction.invoke = invoke
    _INSTALLED = True


class _Handlers(dict):
    """``context.lambda_handlers`` while a runner is active: explicit entries first, else any function moto has."""

    def __init__(self, invocations, initial):
        super().__init__(initial)
        self.invocations = invocations

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        handler = self.invocations.dispatcher(key)
        return default if handler is None else handler

    def __contains__(self, key):
        return self.get(key) is not None

    def __missing__(self, key):
        handler = self.invocations.dispatcher(key)
        if handler is None:
            raise KeyError(key)
        return handler


class LambdaRunner:
    """Polls the SQS event source mappings and runs functions; see the package's documentation."""

    def __init__(self, context, endpoint, poll_seconds=POLL_SECONDS, min_real_timeout=MIN_REAL_TIMEOUT):
        self.context = context
        self.endpoint = endpoint.rstrip("/")
        self.poll_seconds = poll_seconds
        self._cycle_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self.environments = EnvironmentPool(context, self.endpoint)
        self.invocations = Invocations(context, self.environments, self._stop, self._wake, min_real_timeout)
        self.poller = EventSourcePoller(context, self.invocations, self._stop)

    @property
    def runs(self):
        """The recent runs, oldest first."""
        return self.invocations.runs

    @property
    def min_real_timeout(self):
        """Real seconds a run gets at least, whatever its scaled ``Timeout``."""
        return self.invocations.min_real_timeout

    @min_real_timeout.setter
    def min_real_timeout(self, seconds):
        self.invocations.min_real_timeout = seconds

    # ---- life cycle ----------------------------------------------------------------------
    def start(self):
        if active(self.context) is not None:
            raise RuntimeError("a Lambda runner is already active for this sandbox")
        install(self.context)
        self.environments.open()
        with self.context.lock:
            _ACTIVE[id(self.context)] = self
            self.context.lambda_handlers = _Handlers(self.invocations, self.context.lambda_handlers)
            for name, control in self._controls().items():
                self.context.control(name)(control)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sandbox-lambda-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._wake.set()
        self.environments.close()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        with self.context.lock:
            if active(self.context) is self:
                del _ACTIVE[id(self.context)]
                self.context.lambda_handlers = dict(self.context.lambda_handlers)
            for name in self._controls():
                self.context.controls.pop(name, None)
        self.environments.remove_code()

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

    def _cycle(self):
        """Queued asynchronous invocations, then one batch per enabled mapping. Returns the invocations made."""
        with self._cycle_lock:
            count = self.invocations.run_queued()
            if self._stop.is_set():
                return count
            return count + self.poller.poll_all()

    def drain(self, timeout=60.0):
        """Process until no mapped queue has a visible message and no asynchronous invocation is queued
        (in-flight and delayed messages may remain). Returns ``{"drained", "invocations", "queues"}``."""
        deadline = time.monotonic() + timeout
        invocations = 0
        while True:
            done = self._cycle()
            invocations += done
            if not done and not self.invocations.pending():
                return {"drained": True, "invocations": invocations, "queues": self.queue_status()}
            if time.monotonic() > deadline:
                return {"drained": False, "invocations": invocations, "queues": self.queue_status()}

    def queue_status(self):
        """Each mapped queue's visible, in-flight and delayed message counts."""
        return self.poller.queue_status()

    # ---- invocations ---------------------------------------------------------------------------
    def invoke(self, function, event, source="invoke"):
        """Run ``function`` (name, ARN or moto model) now; returns the run record (see ``Invocations.invoke``)."""
        return self.invocations.invoke(function, event, source)

    def invoke_async(self, function, event, source="event"):
        """Queue an asynchronous invocation; returns its request id."""
        return self.invocations.invoke_async(function, event, source)

    # ---- controls --------------------------------------------------------------------------
    def _controls(self):
        return {
            "lambda/drain": self._drain_control,
            "lambda/runs": self._runs_control,
            "lambda/invoke": self._invoke_control,
        }

    def _drain_control(self, payload):
        """``{"timeout": s}``: process every mapped queue and queued invocation (``drain``)."""
        timeout = float(payload.get("timeout", 60))
        return outside_lock(self.context, lambda: self.drain(timeout=timeout), timeout + 60)

    def _runs_control(self, payload):
        """``{"function": name, "limit": n}``: recent runs, newest last."""
        wanted = payload.get("function")
        runs = [run for run in self.runs if not wanted or wanted in (run["function"], run["function_arn"])]
        limit = int(payload.get("limit") or 0)
        return {"runs": runs[-limit:] if limit else runs}

    def _invoke_control(self, payload):
        """``{"function": name or ARN, "event": {...}, "async": false}``: invoke now (or queue it)."""
        if "function" not in payload:
            raise KeyError("lambda/invoke needs a function")
        event = payload.get("event", {})
        if payload.get("async"):
            return {"request_id": self.invoke_async(payload["function"], event, source="control")}
        return outside_lock(self.context, lambda: self.invoke(payload["function"], event, source="control"))
