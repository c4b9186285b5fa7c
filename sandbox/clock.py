"""The sandbox's own state beside moto: one modeled clock, a scheduler, events, controls.

moto models state, not time. The sandbox adds time: every delayed AWS behaviour (an EBS
attachment finishing, a snapshot completing, a lifecycle hook timing out, a Spot instance
being reclaimed at its notice time) is a scheduled action on **one modeled clock**:

* ``manual`` mode (``scale`` 0, tests): time stands still until ``advance(seconds)`` moves
  it, running every action that falls due, in time order, at full modeled durations.
  Nothing sleeps.
* ``scaled`` mode (``scale`` > 0, the server, the demo): the clock is the wall clock and
  every modeled duration is divided by ``scale``; a ticker runs actions as they fall due.
  The code under test (which rightly uses the wall clock), moto's timestamps and the
  schedule therefore agree; a measured duration times ``scale`` is the modeled figure.

moto's own timestamps (``LaunchTime``, ``StartTime``...) come from the same clock (see
``install_moto_clock``), so ages computed from them agree with the sandbox's schedule.

Everything here runs under ``lock``: the server holds it around each request and each tick,
so a scheduled action never interleaves with an API call.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

# Modeled durations (seconds) from ../shared/FIGURES.md, middle values unless noted.
LATENCY = {
    "ebs_attach": 2.0,  # "mostly 1-4 s"
    "ebs_detach": 2.0,  # "mostly 1-4 s"
    "snapshot_base": 30.0,  # "pending for minutes": 30 s plus the per-GiB part
    "snapshot_per_gib": 1.0,  # per GiB a snapshot stores: the volume's size, or what changed since its parent
    "volume_write_mib_per_second": 5.0,  # assumed: what a busy small database changes (incremental snapshots)
    "image_base": 120.0,  # an AMI is slower than its snapshots
    "image_per_gib": 30.0,  # 50 GiB running instance ~ 30 min in FIGURES.md
    "instance_boot": 4.9,  # pending -> running
    "os_boot": 25.8,  # launch -> user data runs (~ reachable by SSH; sandbox/runtime.py)
    "spot_notice_lead": 120.0,  # the two-minute warning
    "ssm_command": 2.0,  # Pending -> InProgress -> final, when not scripted
    "ssm_pending": 0.5,
    "lifecycle_heartbeat": 3600.0,  # AWS's default heartbeat timeout
    # A setting, not a duration: 1 counts an instance being replaced in its zone's balance (sandbox/rules/capacity.py).
    "asg_balance_counts_replaced": 0.0,
}


class ModeledClock:
    def __init__(self, scale=0.0):
        self._origin = datetime.now(timezone.utc)
        self._mono_origin = time.monotonic()
        self._offset = 0.0
        self.scale = scale  # 0: manual (advance only); > 0: wall clock, durations divided by scale

    def elapsed(self):
        real = (time.monotonic() - self._mono_origin) if self.scale else 0.0
        return self._offset + real

    def duration(self, modeled_seconds):
        """How long a modeled duration lasts on this clock."""
        return modeled_seconds / self.scale if self.scale else modeled_seconds

    def now(self):
        return self._origin + timedelta(seconds=self.elapsed())

    def set_scale(self, scale):
        current = self.elapsed()
        self._mono_origin = time.monotonic()
        if not self.scale and scale and not current:
            # A clock that never moved becomes the wall clock: the code under test reads the wall clock,
            # and a clock anchored when this object was made would lag it by the server's start-up time.
            self._origin = datetime.now(timezone.utc)
        # Otherwise modeled time stays continuous across the change.
        self._offset = current
        self.scale = scale

    def anchor_to_wall(self):
        """Make ``now()`` the wall clock again without moving ``elapsed()`` (scheduled actions keep their due times).

        Manual-clock runs (benchmarks, tests) move modeled time ahead of the wall clock; code that reads the wall
        clock (a module's "7 days ago") and timestamps made afterwards then agree again."""
        self._origin = datetime.now(timezone.utc) - timedelta(seconds=self.elapsed())

    def _advance_offset(self, seconds):
        self._offset += seconds


class SandboxContext:
    """The sandbox's state that moto does not keep. One per process (``CONTEXT``)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.clock = ModeledClock(scale=0.0)
        self.latency = dict(LATENCY)
        self._queue = []
        self._sequence = itertools.count()
        self.controls = {}
        self.emitted = []  # every event the sandbox emitted, newest last
        self.records = {}  # rule-specific records tests assert on (e.g. forced detaches)
        self.imds = {}  # instance id -> {path: value} served by the IMDS double
        self.account_id = ACCOUNT_ID
        self.region = REGION
        self.lambda_handlers = {}  # function ARN -> callable(event) run for Lambda targets
        self.api_requests = {}  # signing service -> requests served (the ``requests`` control)
        self.controls_state = {}  # state of controls such as ``throttle``
        self._state_dir = os.environ.get("EC2SPOT_SANDBOX_STATE_DIR")

    @property
    def state_dir(self):
        if not self._state_dir:
            self._state_dir = tempfile.mkdtemp(prefix="ec2spot-sandbox-state-")
        return self._state_dir

    def instance_root(self, instance_id):
        """The directory standing in for an instance's filesystem (commands run there)."""
        root = os.path.join(self.state_dir, "instances", instance_id)
        os.makedirs(root, exist_ok=True)
        return root

    def reset(self):
        """Forget everything but the clock (moto's backends were reset under us)."""
        with self.lock:
            self._queue.clear()
            self.emitted.clear()
            self.records.clear()
            self.imds.clear()
            self.api_requests.clear()
            self.controls_state.clear()
            self.latency = dict(LATENCY)

    # ---- time -------------------------------------------------------------------------
    def now(self):
        return self.clock.now()

    def after(self, seconds, action, label=""):
        """Run ``action()`` once the modeled duration ``seconds`` has passed."""
        return self.at(self.clock.elapsed() + max(0.0, self.clock.duration(seconds)), action, label)

    def at(self, elapsed, action, label=""):
        entry = [elapsed, next(self._sequence), action, label, True]
        heapq.heappush(self._queue, entry)
        return entry

    @staticmethod
    def cancel(entry):
        entry[4] = False

    def pending(self):
        return [{"due_in": round(e[0] - self.clock.elapsed(), 3), "label": e[3]} for e in sorted(self._queue) if e[4]]

    def tick(self):
        """Run every action that is due, in modeled-time order (an action may schedule more)."""
        with self.lock:
            while self._queue and self._queue[0][0] <= self.clock.elapsed():
                action, label, live = heapq.heappop(self._queue)[2:]
                if live:
                    self._run(action, label)

    def _run(self, action, label):
        try:
            action()
        except Exception as exc:  # one broken action must not stop the clock
            self.records.setdefault("action_errors", []).append(f"{label}: {exc!r}")

    def advance(self, seconds):
        """Manual mode: move modeled time forward, running due actions at their own times."""
        with self.lock:
            target = self.clock.elapsed() + seconds
            while self._queue and self._queue[0][0] <= target:
                due = self._queue[0][0]
                self.clock._advance_offset(max(0.0, due - self.clock.elapsed()))
                self.tick()
            self.clock._advance_offset(max(0.0, target - self.clock.elapsed()))
            self.tick()

    def settle(self, limit=7 * 86400):
        """Finish what is under way (bounded by ``limit`` modeled seconds), e.g. let every
        snapshot complete. Manual clock: advance to each due time. Scaled clock (the wall
        clock): run the backlog now, in order, without moving time."""
        with self.lock:
            start = self.clock.elapsed()
            horizon = start + self.clock.duration(limit)
            while self._queue and self._queue[0][0] <= horizon:
                if self.clock.scale:
                    action, label, live = heapq.heappop(self._queue)[2:]
                    if live:
                        self._run(action, label)
                else:
                    self.advance(max(0.0, self._queue[0][0] - self.clock.elapsed()))

    # ---- moto ---------------------------------------------------------------------------
    def backend(self, service):
        from moto.backends import get_backend

        return get_backend(service)[self.account_id][self.region]

    # ---- events -------------------------------------------------------------------------
    def emit(self, source, detail_type, detail, resources=()):
        """Put an event on the default bus as AWS would, and remember it."""
        event = {
            "Source": source,
            "DetailType": detail_type,
            "Detail": json.dumps(detail),
            "Resources": list(resources),
            "EventBusName": "default",
        }
        self.emitted.append(
            {
                "source": source,
                "detail-type": detail_type,
                "detail": detail,
                "resources": list(resources),
                "time": self.now().isoformat(),
            }
        )
        return self.backend("events").put_events([event])

    def record(self, name, value):
        self.records.setdefault(name, []).append(value)

    # ---- controls -----------------------------------------------------------------------
    def control(self, name):
        """Register ``fn(payload) -> dict`` as ``POST /_sandbox/<name>``."""

        def register(fn):
            self.controls[name] = fn
            return fn

        return register

    def call_control(self, name, payload):
        if name not in self.controls:
            raise KeyError(f"no sandbox control {name!r}; known: {', '.join(sorted(self.controls))}")
        with self.lock:
            self.tick()
            return self.controls[name](payload or {})


class CoreClock:
    """The recovery core's ``Clock`` on the sandbox's modeled time: when the core waits,
    modeled time advances and whatever AWS would finish meanwhile does (manual clock)."""

    def __init__(self, context=None):
        self.context = context or CONTEXT
        self.slept = []

    def now(self):
        return self.context.now()

    def monotonic(self):
        return self.context.clock.elapsed()

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.context.advance(seconds)


def new_token():
    return str(uuid.uuid4())


CONTEXT = SandboxContext()


def _modeled_utcnow():
    return CONTEXT.now().replace(tzinfo=None)


def install_moto_clock():
    """Make moto's timestamps come from the modeled clock (naive UTC, as moto's own)."""
    import moto.core.utils as moto_utils

    original = moto_utils.utcnow
    if getattr(original, "__sandbox__", False):
        return
    _modeled_utcnow.__sandbox__ = True
    moto_utils.utcnow = _modeled_utcnow
    # EC2 writes its timestamps with whole seconds (".000Z"). On the scaled clock one real second is `scale`
    # modeled seconds, so whole real seconds would blur a launch time by up to `scale` modeled seconds: the
    # sandbox keeps the milliseconds (a resolution of 1/scale modeled seconds at most, as fine as AWS's).
    from moto.core.serialize import TimestampSerializer

    TimestampSerializer._timestamp_iso8601_zeroed = lambda self, value: (  # noqa: E731
        value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        if CONTEXT.clock.scale
        else value.strftime(self.ISO8601_MICRO_ZEROED)
    )
    # Modules already imported hold their own reference: rebind those too.
    for module in list(sys.modules.values()):
        if (
            module is not None
            and getattr(module, "__name__", "").startswith("moto.")
            and getattr(module, "utcnow", None) is original
        ):
            module.utcnow = _modeled_utcnow


@CONTEXT.control("clock")
def _clock_control(payload):
    """``{"advance": seconds}`` / ``{"scale": factor}`` / ``{}``: move or read the clock."""
    if payload.get("scale") is not None:
        CONTEXT.clock.set_scale(float(payload["scale"]))
    if payload.get("advance"):
        CONTEXT.advance(float(payload["advance"]))
    if payload.get("settle"):
        CONTEXT.settle()
    return {"now": CONTEXT.now().isoformat(), "scale": CONTEXT.clock.scale, "pending": CONTEXT.pending()}


@CONTEXT.control("latency")
def _latency_control(payload):
    """Override modeled durations, e.g. ``{"ebs_attach": 0}``; returns them all."""
    for key, value in payload.items():
        if key not in CONTEXT.latency:
            raise KeyError(f"unknown latency {key!r}")
        CONTEXT.latency[key] = float(value)
    return dict(CONTEXT.latency)


@CONTEXT.control("events")
def _events_control(payload):
    """The events the sandbox emitted (optionally filtered by ``detail-type``)."""
    wanted = payload.get("detail-type")
    return {"events": [e for e in CONTEXT.emitted if not wanted or e["detail-type"] == wanted]}


@CONTEXT.control("records")
def _records_control(payload):
    name = payload.get("name")
    return {"records": CONTEXT.records.get(name, []) if name else CONTEXT.records}
