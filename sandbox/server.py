"""The sandbox's AWS endpoint: moto's server with the sandbox's AWS rules, on loopback only.

Run by ``python -m sandbox start``; not meant to be started by hand. It binds 127.0.0.1 on
a port the OS picks (never a fixed one that another run could hold), writes
``{"endpoint": ..., "pid": ...}`` to the ready file once it accepts requests, and serves
until terminated. Paths under ``/_sandbox/`` are the sandbox's own controls.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from . import fidelity

LOOPBACK = "127.0.0.1"


def control_app(moto_app):
    """Route ``/_sandbox/*`` to the sandbox's controls, everything else to moto."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_sandbox/health":
            body = json.dumps({"ok": True, "pid": os.getpid()}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return moto_app(environ, start_response)

    return app


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args(argv)

    fidelity.install()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from werkzeug.serving import make_server

    server = make_server(LOOPBACK, 0, control_app(DomainDispatcherApplication(create_backend_app)), threaded=True,
                         request_handler=MotoRequestHandler)
    endpoint = f"http://{LOOPBACK}:{server.server_address[1]}"
    tmp = args.ready_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as ready:
        json.dump({"endpoint": endpoint, "pid": os.getpid()}, ready)
    os.replace(tmp, args.ready_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
