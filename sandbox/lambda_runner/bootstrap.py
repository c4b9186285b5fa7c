"""The program each Lambda execution environment runs: the sandbox's stand-in for the Python runtime's bootstrap.

The runner (``environments.py``) starts this file by path, ``python -s -u -P bootstrap.py``, in the directory the
function's zip is extracted to. It uses the standard library only and never imports the ``sandbox`` package: the
function's process must see nothing of the sandbox, only the interpreter (with boto3, as the Lambda runtime has)
and its own deployment package, which is put first on ``sys.path``.

Its stdin stands in for the Lambda runtime API, one JSON document a line, answered in order on stdout:

* the first line, ``{"task_root": dir, "handler": "module.function"}``, starts the init phase: the handler is
  imported once and the answer is ``INIT_MARKER {"init_ms": ms, "failed": bool}``;
* every further line is one invocation, ``{"event": ..., "deadline": epoch seconds, "ratio": modeled seconds per
  real second, "context": {...}}``; the answer is ``MARKER {"result": ...}`` or ``MARKER {"error": {...}}`` with
  the runtime's error shape (``errorMessage``, ``errorType``, ``requestId``, ``stackTrace``).

Everything else on stdout (the function's prints, its log records in the runtime's format) is the run's log. An
environment whose init failed answers its first invocation with the init error and ends, as Lambda discards it.
"""

import importlib
import json
import logging
import os
import sys
import time
import traceback

MARKER = "__SANDBOX_LAMBDA_RESULT__ "  # precedes an invocation's outcome on stdout
INIT_MARKER = "__SANDBOX_LAMBDA_INIT__ "  # precedes the init phase's outcome

# The invocation under way: the context object, the log records and the error answers read it.
invocation = {"context": {"aws_request_id": ""}}


class LambdaContext:
    """The handler's ``context`` argument, as the Python runtime builds it."""

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
        self._deadline, self._ratio = invocation["deadline"], invocation["ratio"]

    def get_remaining_time_in_millis(self):
        """The modeled ``Timeout`` counted down over the real time limit the run was given."""
        return max(0, int((self._deadline - time.time()) * self._ratio * 1000))


class RequestIdFilter(logging.Filter):
    """Gives every log record the request id of the invocation under way, as the runtime's log format shows it."""

    def filter(self, record):
        record.aws_request_id = invocation["context"]["aws_request_id"]
        return True


def install_log_handler():
    """The runtime's root log handler: level, UTC time, request id and message on stdout (the run's log)."""
    log_handler = logging.StreamHandler(sys.stdout)
    log_handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S"
        )
    )
    log_handler.formatter.converter = time.gmtime
    log_handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(log_handler)


def user_frames(exc):
    """The traceback without the bootstrap's own frame, as the runtime reports it."""
    return traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])


def error_of(error_type, message, stack=None):
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": invocation["context"]["aws_request_id"],
        "stackTrace": stack or [],
    }


def load(handler):
    """The init phase: ``(handler function, None)``, or ``(None, (error type, message, stack))``."""
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
    except Exception as exc:  # whatever the module raises at import is the init error
        return None, (type(exc).__name__, str(exc), user_frames(exc))
    function = getattr(module, function_name, None)
    if function is None:
        return None, ("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'", None)
    return function, None


def answer(answers, prefix, outcome):
    """One marked answer line, after whatever the function printed (on its own line, so the runner finds it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    answers.write("\n" + prefix + json.dumps(outcome) + "\n")
    answers.flush()


def invoke(function):
    """Run the invocation under way: ``{"result": ...}`` or ``{"error": ...}``."""
    try:
        result = function(invocation["event"], LambdaContext(invocation["context"]))
    except Exception as exc:  # the function's error is the invocation's outcome
        outcome = {"error": error_of(type(exc).__name__, str(exc), user_frames(exc))}
        print(
            f"[ERROR] {type(exc).__name__}: {exc}\nTraceback (most recent call last):\n"
            + "".join(outcome["error"]["stackTrace"]),
            flush=True,
        )
        return outcome
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return {"error": error_of("Runtime.MarshalError", f"Unable to marshal response: {exc}")}
    return {"result": result}


def main():
    invocations = sys.stdin  # the runtime API's stand-in: one invocation per line, answered in order
    answers = sys.__stdout__
    sys.stdin = open(os.devnull, encoding="utf-8")  # the function reads nothing of the protocol
    init = json.loads(invocations.readline())
    sys.path[:] = [init["task_root"]] + [entry for entry in sys.path if entry not in ("", init["task_root"])]
    install_log_handler()
    began = time.monotonic()
    function, failure = load(init["handler"])  # the init phase: once per execution environment
    answer(answers, INIT_MARKER, {"init_ms": round((time.monotonic() - began) * 1000, 2), "failed": function is None})
    for line in invocations:
        invocation.clear()
        invocation.update(json.loads(line))
        if function is None:
            error = error_of(*failure)
            print(f"[ERROR] {error['errorType']}: {error['errorMessage']}", flush=True)
            answer(answers, MARKER, {"error": error})
            return  # an environment whose init failed is not used again
        answer(answers, MARKER, invoke(function))


if __name__ == "__main__":
    main()
