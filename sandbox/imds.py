"""An IMDSv2 test double: the instance metadata service as the instance agent sees it.

Follows the documented service (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html):

- ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1-21600) returns a
  token; without the header, or with a TTL out of range, 400.
- ``GET`` needs ``X-aws-ec2-metadata-token`` with a live token: missing, unknown or expired
  tokens get **401** (IMDSv2 required, as our launch templates set it), so a client that
  does not refresh its token is caught.
- A path that has no value is **404** — which is how ``spot/instance-action`` and
  ``events/recommendations/rebalance`` say "no notice".
- A directory path (ending in ``/``) lists its children, one per line.

``values`` maps paths under ``/latest/`` (``meta-data/instance-id``,
``dynamic/instance-identity/document``) to strings; tests change them while the agent runs.
``fail(count, status)`` makes the next ``count`` requests fail with ``status`` (500, 503) or
with a dropped connection (``status=None``), to show the agent retries without acting.

Time comes from ``clock`` (seconds, monotonic): tests give a fake clock to expire tokens.
"""

import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_TTL = 21600


class ImdsDouble:
    def __init__(self, values=None, clock=time.monotonic):
        self.values = dict(values or {})
        self.clock = clock
        self.tokens = {}  # token -> expiry (clock seconds)
        self.requests = []  # (method, path, status) in order, for assertions
        self._faults = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # ---- the data ------------------------------------------------------------------------------
    @classmethod
    def for_instance(cls, instance_id, zone, role="ec2spot-instance", tags=None, clock=time.monotonic):
        """The metadata an instance agent reads at boot, with credentials for ``role``."""
        region = zone[:-1]
        values = {
            "meta-data/instance-id": instance_id,
            "meta-data/placement/availability-zone": zone,
            "meta-data/placement/region": region,
            "meta-data/iam/security-credentials/" + role: (
                '{"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIASANDBOX", '
                '"SecretAccessKey": "sandbox", "Token": "sandbox-token", "Expiration": "2099-01-01T00:00:00Z"}'
            ),
            "dynamic/instance-identity/document": (
                '{"instanceId": "%s", "availabilityZone": "%s", "region": "%s", "accountId": "123456789012"}'
                % (instance_id, zone, region)
            ),
        }
        for key, value in (tags or {}).items():
            values["meta-data/tags/instance/" + key] = value
        return cls(values, clock=clock)

    def set(self, path, value):
        with self._lock:
            self.values[path] = value

    def delete(self, path):
        with self._lock:
            self.values.pop(path, None)

    def fail(self, count, status=500):
        with self._lock:
            self._faults.extend([status] * count)

    def lookup(self, path):
        """(status, body) for a GET of ``/latest/<path>``."""
        with self._lock:
            if path in self.values:
                return 200, self.values[path]
            if path.endswith("/") or path in ("meta-data", "dynamic"):
                prefix = path.rstrip("/") + "/"
                children = sorted(
                    {
                        key[len(prefix) :].split("/")[0] + ("/" if "/" in key[len(prefix) :] else "")
                        for key in self.values
                        if key.startswith(prefix)
                    }
                )
                if children:
                    return 200, "\n".join(children)
        return 404, "Not Found"

    # ---- the server ----------------------------------------------------------------------------
    @property
    def endpoint(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status, body=""):
                payload = body.encode("utf-8")
                double.requests.append((self.command, self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _fault(self):
                with double._lock:
                    if not double._faults:
                        return False
                    status = double._faults.pop(0)
                if status is None:
                    double.requests.append((self.command, self.path, None))
                    self.close_connection = True
                    self.connection.close()
                else:
                    self._reply(status, "injected fault")
                return True

            def do_PUT(self):  # noqa: N802 (http.server's naming)
                if self._fault():
                    return
                if self.path != "/latest/api/token":
                    return self._reply(404, "Not Found")
                try:
                    ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
                except ValueError:
                    return self._reply(400, "Missing or invalid TTL header")
                if not 1 <= ttl <= MAX_TTL:
                    return self._reply(400, "TTL out of range")
                token = secrets.token_urlsafe(24)
                with double._lock:
                    double.tokens[token] = double.clock() + ttl
                return self._reply(200, token)

            def do_GET(self):  # noqa: N802
                if self._fault():
                    return
                token = self.headers.get("X-aws-ec2-metadata-token")
                with double._lock:
                    expiry = double.tokens.get(token)
                if expiry is None or expiry <= double.clock():
                    return self._reply(401, "Unauthorized")
                if not self.path.startswith("/latest/"):
                    return self._reply(404, "Not Found")
                status, body = double.lookup(self.path[len("/latest/") :])
                return self._reply(status, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="imds-double", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
