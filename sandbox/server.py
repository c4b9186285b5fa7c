"""The sandbox's AWS endpoint: moto's server with the sandbox's AWS rules, on loopback only.

Run by ``python -m sandbox start`` (a process of its own) or, for the sandbox's own tests,
in a thread (``start_in_thread``). It binds 127.0.0.1 on a port the OS picks, never a fixed
one that another run could hold. ``POST /_sandbox/<control>`` with a JSON body drives the
sandbox (the modeled clock, injected interruptions, scripted outcomes; see ``control.py``).
Every request and every tick of the modeled clock runs under one lock.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from . import rules
from .clock import CONTEXT
from .iam import enforce
from .lambda_runner import LambdaRunner
from .runtime import Runtime

LOOPBACK = "127.0.0.1"
TICK_SECONDS = 0.02


def control_app(moto_app):
    """Route ``/_sandbox/*`` to the sandbox's controls, everything else to moto."""

    def reply(start_response, status, document):
        body = json.dumps(document, default=str).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_sandbox/health":
            return reply(start_response, "200 OK", {"ok": True, "pid": os.getpid()})
        if path.startswith("/_sandbox/"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b"{}"
            try:
                return reply(start_response, "200 OK", CONTEXT.call_control(path[len("/_sandbox/") :], json.loads(raw)))
            except (KeyError, ValueError, TypeError) as exc:
                return reply(start_response, "400 Bad Request", {"error": str(exc)})
        service = _service_of(environ)
        with CONTEXT.lock:
            CONTEXT.tick()
            CONTEXT.api_requests[service] = CONTEXT.api_requests.get(service, 0) + 1
            if _throttled(service):
                return reply_throttled(start_response, service)
            return moto_app(environ, start_response)

    return app


def _service_of(environ):
    """The signing service of a request (``Credential=<key>/<date>/<region>/<service>/aws4_request``)."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    try:
        return authorization.split("Credential=", 1)[1].split("/")[3]
    except IndexError:
        return "unsigned"


def _throttled(service):
    """``throttle`` control: every ``every``-th request to the named services is refused as AWS throttles."""
    rule = CONTEXT.controls_state.get("throttle")
    if not rule or service not in rule["services"]:
        return False
    rule["seen"] += 1
    if rule["seen"] % rule["every"]:
        return False
    CONTEXT.record("throttled", service)
    return True


def reply_throttled(start_response, service):
    # EC2 (query protocol) answers 503 RequestLimitExceeded; botocore's retry modes retry it with backoff.
    body = (
        f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>"
        f"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>{service}-throttled</RequestID></Response>"
    ).encode()
    start_response("503 Service Unavailable", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


@CONTEXT.control("throttle")
def _throttle_control(payload):
    """``{"every": 10, "services": ["ec2"]}``: refuse every 10th EC2 request with RequestLimitExceeded; ``{}`` stops."""
    if payload.get("every"):
        CONTEXT.controls_state["throttle"] = {
            "every": int(payload["every"]),
            "services": list(payload.get("services") or ["ec2"]),
            "seen": 0,
        }
    else:
        CONTEXT.controls_state.pop("throttle", None)
    return {"throttle": CONTEXT.controls_state.get("throttle"), "throttled": len(CONTEXT.records.get("throttled", []))}


@CONTEXT.control("requests")
def _requests_control(payload):
    """API requests served per signing service; ``{"reset": true}`` starts counting again."""
    counted = dict(CONTEXT.api_requests)
    if payload.get("reset"):
        CONTEXT.api_requests.clear()
    return {"requests": counted, "total": sum(counted.values())}


def make(scale, iam_default="off"):
    """The server and its endpoint. IAM is enforced as ``EC2SPOT_SANDBOX_IAM`` says, else as ``iam_default`` says
    (``"enforce"`` or ``"off"``; the ``iam`` control switches it at run time)."""
    rules.install()
    enforce.install()
    chosen = os.environ.get(enforce.ENVIRONMENT_VARIABLE) or iam_default
    enforce.enforce_from_environment({enforce.ENVIRONMENT_VARIABLE: chosen})
    CONTEXT.clock.set_scale(scale)
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    server = make_server(
        LOOPBACK,
        0,
        control_app(DomainDispatcherApplication(create_backend_app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    return server, f"http://{LOOPBACK}:{server.server_address[1]}"


def _ticker(stop):
    while not stop.wait(TICK_SECONDS):
        if CONTEXT.clock.scale:
            CONTEXT.tick()


def start_in_thread(scale=0.0, iam_default="off"):
    """Serve in this process (tests that also drive ``CONTEXT`` directly). Returns (endpoint, stop). IAM: off for the
    rules' own tests, which sign as the administrator and switch it per test; the benchmarks pass ``"enforce"``, the
    default of every server ``python -m sandbox`` starts; ``EC2SPOT_SANDBOX_IAM`` overrides either."""
    server, endpoint = make(scale, iam_default)
    stop_ticker = threading.Event()
    threads = [
        threading.Thread(target=server.serve_forever, daemon=True),
        threading.Thread(target=_ticker, args=(stop_ticker,), daemon=True),
    ]
    for thread in threads:
        thread.start()
    runner = LambdaRunner(CONTEXT, endpoint).start()
    runtime = Runtime(CONTEXT, endpoint).start()

    def stop():
        runtime.stop()
        runner.stop()
        stop_ticker.set()
        server.shutdown()

    return endpoint, stop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--scale", type=float, default=100.0, help="modeled seconds per real second (0: manual clock)")
    args = parser.parse_args(argv)
    server, endpoint = make(args.scale)
    threading.Thread(target=_ticker, args=(threading.Event(),), daemon=True).start()
    runner = LambdaRunner(CONTEXT, endpoint).start()
    runtime = Runtime(CONTEXT, endpoint).start()
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as ready:
        json.dump({"endpoint": endpoint, "pid": os.getpid(), "scale": args.scale}, ready)
    os.replace(tmp, args.ready_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        runtime.stop()
        runner.stop()


if __name__ == "__main__":
    main()
