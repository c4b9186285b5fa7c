"""Lambda execution environments: the processes a function runs in, and the pool that keeps warm ones.

Lambda developer guide, "Lambda execution environment lifecycle": a function runs in an environment process that
imports its handler once (the init phase) and then runs invocations one at a time, keeping module state between
them, as a warm Lambda environment does. An idle environment of the same configuration (code, handler, timeout,
memory, environment variables) takes the next invocation; otherwise a new one starts (a cold start). A change of
code or configuration retires the old ones; a timeout, a crash or a failed init discards the environment; one idle
for ``IDLE_SECONDS`` is reclaimed; at most ``IDLE_ENVIRONMENTS`` idle ones are kept per configuration.

The process runs ``bootstrap.py`` (by path, with only the standard library and the deployment package on its
path), as Lambda isolates a function: the zip moto stores (the bytes the deploy uploaded, so ``UpdateFunctionCode``
changes what runs) is extracted once per distinct content to a directory that is the process's working directory
and only ``PYTHONPATH`` entry (boto3 comes from the interpreter, as in the Lambda runtime). Its environment
variables are made in one place, ``EnvironmentPool.environment_variables``; nothing of the sandbox's own
environment leaks in. Its credentials are the sandbox's unrestricted dummy key, or, while IAM is enforced
(``sandbox.iam.enforce``), the temporary credentials of the function's execution role, assumed through moto's STS
when the environment starts, as Lambda does (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``);
a warm environment keeps the credentials it started with.
"""

from __future__ import annotations

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

from ..iam import enforce, principals
from .bootstrap import INIT_MARKER, MARKER
from .invoke import find_function

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap.py")
IDLE_ENVIRONMENTS = 4  # warm environments kept per function configuration
IDLE_SECONDS = 300.0  # real seconds an unused environment is kept (Lambda reclaims idle ones)
DUMMY_CREDENTIALS = "sandbox"
ROLE_SESSION_SECONDS = 43200  # Lambda's execution-role sessions outlive any environment the sandbox keeps

# Never taken from a function's environment: they would point boto3 elsewhere than the sandbox.
BLOCKED_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CA_BUNDLE",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
)
BLOCKED_PREFIXES = ("AWS_ENDPOINT_URL", "AWS_CONTAINER_")


def kill(process):
    """End a run's process group (the run's own process and whatever it started)."""
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _marked(line, marker):
    try:
        return json.loads(line[len(marker) :])
    except ValueError:
        return {}


class Environment:
    """One execution environment: a process that imported the function once (the init phase) and runs its
    invocations one at a time, as Lambda reuses a warm environment; module state survives between them."""

    def __init__(self, key, process, log_stream):
        self.key, self.process, self.log_stream = key, process, log_stream
        self.started = time.monotonic()
        self.last_used = self.started
        self.init_ms = None  # known once the bootstrap reports its init phase
        self.init_failed = False  # the handler could not be loaded: the environment answers once, then ends
        self.invocations = 0
        self._lines = queue.Queue()
        threading.Thread(target=self._read, name="sandbox-lambda-output", daemon=True).start()

    def _read(self):
        for raw in iter(self.process.stdout.readline, b""):
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)  # the process ended

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
            elif line or lines:  # the blank line before a marker is the bootstrap's, not the function's
                lines.append(line)

    def close(self):
        kill(self.process)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class EnvironmentPool:
    """The runner's execution environments: warm ones by configuration, the processes of runs under way, and the
    extracted deployment packages (under a working directory made by ``open`` and removed by ``remove_code``)."""

    def __init__(self, context, endpoint):
        self.context = context
        self.endpoint = endpoint
        self._idle = {}  # configuration key -> warm environments not running anything
        self._running = set()  # processes of invocations under way
        self._lock = threading.Lock()
        self._extract_lock = threading.Lock()
        self._workdir = None
        self._closed = False

    # ---- life cycle ----------------------------------------------------------------------
    def open(self):
        self._workdir = tempfile.mkdtemp(prefix="ec2spot-sandbox-lambda-")
        self._closed = False

    def close(self):
        """Kill the runs under way (they end as the service goes away) and every warm environment; an environment
        released from now on is discarded."""
        self._closed = True
        for process in list(self._running):
            kill(process)
        with self._lock:
            idle, self._idle = [e for environments in self._idle.values() for e in environments], {}
        for environment in idle:
            environment.close()

    def remove_code(self):
        """Remove the extracted deployment packages (once no run can use them)."""
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # ---- what an environment runs ----------------------------------------------------------
    def task_root(self, function):
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

    def environment_variables(self, function, task_root, log_stream):
        """An environment's variables, credentials included: the one place they are made.

        The function's ``Environment.Variables`` (but those that would point boto3 elsewhere), then the runtime's
        reserved variables, the sandbox's ``AWS_ENDPOINT_URL``, the credentials (``function_credentials``), and
        ``AWS_CONFIG_FILE`` / ``AWS_SHARED_CREDENTIALS_FILE`` = ``/dev/null``; nothing of the sandbox's own
        environment."""
        env = {
            str(key): str(value)
            for key, value in function["environment"].items()
            if key not in BLOCKED_VARIABLES and not str(key).startswith(BLOCKED_PREFIXES)
        }
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                **self.function_credentials(function),
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
            }
        )
        return env

    def function_credentials(self, function):
        """``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) of a new environment: the
        sandbox's dummy key, or while IAM is enforced the execution role's temporary credentials (moto's STS
        ``AssumeRole`` on the function's role, session named after the function, as Lambda names it)."""
        if not enforce.enforcing():
            return {"AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS, "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS}
        with self.context.lock:
            model = find_function(function["arn"])
            if model is None or not model.role:
                raise LookupError(f"function {function['arn']} has no execution role to assume")
            assumed = principals.assume_role(
                function["account"], function["region"], model.role, function["name"], ROLE_SESSION_SECONDS
            )
        return {
            "AWS_ACCESS_KEY_ID": assumed["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": assumed["SecretAccessKey"],
            "AWS_SESSION_TOKEN": assumed["Token"],
        }

    # ---- the pool ----------------------------------------------------------------------------
    @staticmethod
    def configuration_key(function):
        """What makes an environment: Lambda starts new ones after a code or configuration change."""
        return (
            function["arn"],
            function["code_sha256"],
            function["handler"] or "",
            function["timeout"],
            function["memory"],
            json.dumps(function["environment"], sort_keys=True),
            enforce.enforcing(),  # credentials differ: switching enforcement starts new environments
        )

    def acquire(self, function, task_root):
        """A warm environment of this configuration if one is idle, else a new one (a cold start): ``(env, cold)``."""
        key = self.configuration_key(function)
        retired = []
        with self._lock:
            for other in [k for k in self._idle if k[0] == key[0] and k != key]:
                retired += self._idle.pop(other)  # an older version of the function: never used again
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
        # -P: the bootstrap's own directory (this package) is not put on the function's path; -s: nor the user's
        # site-packages.
        process = subprocess.Popen(
            [sys.executable, "-s", "-u", "-P", BOOTSTRAP],
            cwd=task_root,
            env=self.environment_variables(function, task_root, log_stream),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        init = {"task_root": task_root, "handler": function["handler"] or ""}
        process.stdin.write(json.dumps(init).encode("utf-8") + b"\n")
        process.stdin.flush()
        return Environment(key, process, log_stream), True

    def run(self, environment, spec, real_limit):
        """One invocation in ``environment`` (see ``Environment.invoke``); then the environment goes back to the
        pool after a clean invocation, or is discarded after a timeout, a crash or a failed init, as Lambda resets
        it. Returns ``(log lines, outcome or None, how)``."""
        self._running.add(environment.process)
        try:
            lines, outcome, how = environment.invoke(spec, real_limit)
        finally:
            self._running.discard(environment.process)
        self._release(environment, healthy=how == "done")
        return lines, outcome, how

    def _release(self, environment, healthy):
        environment.last_used = time.monotonic()
        if healthy and not environment.init_failed:
            with self._lock:  # checked under the lock: ``close`` empties the pool under it
                if not self._closed and len(self._idle.get(environment.key, [])) < IDLE_ENVIRONMENTS:
                    self._idle.setdefault(environment.key, []).append(environment)
                    return
        environment.close()
