"""Python API for the sandbox's controls (``POST /_sandbox/<name>``).

from sandbox.control import Sandbox
box = Sandbox(os.environ["EC2SPOT_SANDBOX_ENDPOINT"])
box.advance(30)                         # manual clock: move modeled time
box.call("spot/interrupt", instance_id="i-...", lead=120)
box.fire_schedule("ec2spot-autorecover-backup-pg")   # a scheduled rule's next due time
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class SandboxError(RuntimeError):
    pass


class Sandbox:
    def __init__(self, endpoint):
        self.endpoint = endpoint.rstrip("/")

    def call(self, control, **payload):
        request = urllib.request.Request(
            f"{self.endpoint}/_sandbox/{control}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as exc:
            raise SandboxError(json.load(exc).get("error", str(exc))) from exc

    def clock(self):
        return self.call("clock")

    def advance(self, seconds):
        return self.call("clock", advance=seconds)

    def settle(self):
        return self.call("clock", settle=True)

    def set_scale(self, scale):
        return self.call("clock", scale=scale)

    def events(self, detail_type=None):
        return self.call("events", **({"detail-type": detail_type} if detail_type else {}))["events"]

    def records(self, name):
        return self.call("records", name=name)["records"]

    def schedules(self):
        """The scheduled EventBridge rules: ``[{"rule", "expression", "next", "fired", "state"}]``."""
        return self.call("schedules")["schedules"]

    def fire_schedule(self, rule, count=1):
        """Run the rule's next ``count`` due times (manual clock: by advancing to each); returns the firings."""
        return self.call("schedules/fire", rule=rule, count=count)["fired"]
