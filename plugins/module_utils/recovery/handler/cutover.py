# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make-before-break: the old instance serves until its replacement is up, then the data moves in one short cut-over.

For a service with ``cutover: make-before-break`` (config.py), a Spot ``terminate`` warning for the holder of the
lineage's data:

1. **Warning** (``arm``): published (``warning``); the group narrowed to the data's zone (``steering``: the
   replacement comes from another Spot pool of that zone, so the very volume moves; given back once the data has
   moved, or at the fallback); the instance marked Unhealthy, so its group launches the replacement now; a
   **pre-snapshot** of the data while the application keeps serving (crash-consistent: the base that makes the final
   snapshot incremental, and a safety net); the **deadline** armed: a message on the function's
   own queue (``queue_arn``) delayed until the interruption less the service's ``cutover_reserve`` (SQS
   ``DelaySeconds``, at most 900 s; the notice is 120 s). Recorded as ``presnapshot`` and ``armed`` on the holder.
2. **Launch** (``hold``): the replacement's launch action stays in ``Pending:Wait``: its hook and token are
   recorded on it (``held``) and the holder names it (``successor``).
3. **Ready** (``on_ready``): the replacement's agent says it is up and waiting for its data (``readiness``).
4. **Cut-over** (``cut_over``), on whichever comes first: the replacement both ready and held (the later of the two
   events triggers it), or the deadline. Recorded once on the holder (``cutover``: trigger and replacement), then
   the hand-off (``warning.hand_off``): the application stopped through SSM, the final snapshot (consistent,
   incremental on the pre-snapshot), the volume released, only after a confirmed stop (the fence); then the launch's
   own path (``launch.take_data``): the very volume attached in the same zone, or in another zone a volume restored
   from the final snapshot; the address moved; the held action continued.
5. **Deadline without a held replacement** (no capacity, a slow launch): the fallback is the break-before-make
   hand-off before the reclaim (stop, consistent snapshot, early release): nothing is lost, and the replacement,
   whenever it comes, finds the holder stopped and takes the data the usual way.

At most once: ``cutover`` is recorded before the stop, and every later trigger resumes that cut-over (each step is
recorded and skipped when present) instead of deciding again. Two triggers handled at the same moment by two
invocations resume the same cut-over to the same successor; the volume itself is then the lock (it attaches to one
instance only, and the second move finds it there). Which trigger does what is one table, ``decide``.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import timedelta

from .. import progress
from .. import tags as t
from ..aws import call
from ..backups import backup_instance
from ..errors import InvalidInput
from ..instances import GONE_STATES
from ..lineage import current_volume
from . import launch, lifecycle, readiness, retries, steering, warning
from .holder import AWAY_STATES
from .notice import NOTICE_LEAD

LOG = logging.getLogger("ec2spot.autorecover.handler")

# The deadline's own event: the handler sends it to its queue, delayed; EventBridge never routes it.
DEADLINE_SOURCE, DEADLINE_DETAIL_TYPE = "ec2spot.autorecover", "EC2Spot Cut-over Deadline"
MAX_DELAY = 900  # SQS: DelaySeconds is 0 to 900

# What a trigger does (``decide``).
WAIT, CUT_OVER, FALLBACK, RESUME, NOT_ARMED = "wait", "cut-over", "fallback", "resume", "not-armed"


def decide(trigger, holder_steps, replacement_steps):
    """What ``trigger`` (``launch``, ``ready`` or ``deadline``) does now, given the holder's and the replacement's
    progress (``replacement_steps`` None: no replacement held or named):

    ============================  =====================================================
    holder not armed              ``not-armed``: no make-before-break here (the usual launch path)
    holder's cut-over recorded    ``resume`` it (whatever the trigger: never decided twice)
    launch, replacement ready     ``cut-over``      launch, not ready yet        ``wait``
    ready, replacement held       ``cut-over``      ready, not held yet          ``wait`` (its launch cuts over)
    deadline, replacement held    ``cut-over``      deadline, none held          ``fallback``
    ============================  =====================================================
    """
    if "armed" not in holder_steps:
        return NOT_ARMED
    if "cutover" in holder_steps:
        return RESUME
    replacement_steps = replacement_steps or {}
    if trigger == "launch":
        return CUT_OVER if readiness.READY in replacement_steps else WAIT
    if trigger == "ready":
        return CUT_OVER if "held" in replacement_steps else WAIT
    if trigger == "deadline":
        return CUT_OVER if "held" in replacement_steps else FALLBACK
    raise ValueError(f"unknown cut-over trigger {trigger!r}")


def arm(handler, event, instance, service, done):
    """The warning of a make-before-break service: Unhealthy, the pre-snapshot, the deadline; the application keeps
    serving. ``done``: the holder's progress (updated)."""
    ec2, clock, instance_id = handler.clients["ec2"], handler.clock, event.instance_id
    interruption_at = event.time + NOTICE_LEAD
    cutover_by = interruption_at - timedelta(seconds=service.cutover_reserve)
    # Before Unhealthy, which makes the group launch: the replacement comes from the data's zone.
    steering.narrow(handler, instance, service, done)
    steering.avoid_pool(handler, instance, service, done)
    warning.mark_unhealthy(handler, instance_id, service, done)
    if "presnapshot" not in done:
        backup = backup_instance(
            ec2, instance_id, f"{service.name}-presnapshot", extra_tags={t.LINEAGE: service.lineage}, clock=clock
        )
        done["presnapshot"] = progress.record(
            ec2, instance_id, "presnapshot", clock.now(), progress.SnapshotSet(backup.backup_set, consistent=False)
        )
    if "armed" not in done:
        delay = (cutover_by - clock.now()).total_seconds()
        if delay > 0:
            _send_deadline(handler, instance_id, cutover_by, delay)
        done["armed"] = progress.record(
            ec2, instance_id, "armed", clock.now(), progress.CutOverDeadline(interruption_at, cutover_by)
        )
        if delay <= 0:  # handled late: the deadline has passed already
            return on_deadline_of(handler, instance_id, service)
    if "cutover" in done:  # a redelivered warning after the cut-over began: resume it
        return on_deadline_of(handler, instance_id, service)
    return (
        f"serving until the replacement is ready or {cutover_by:%H:%M:%S}Z "
        f"(pre-snapshot {progress.outcome_of(done['presnapshot']).split(' ')[0]})"
    )


def _send_deadline(handler, instance_id, cutover_by, delay):
    """The deadline message on the function's own queue, delayed ``delay`` seconds (rounded up: never early)."""
    account, region = handler.identity
    body = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "source": DEADLINE_SOURCE,
        "detail-type": DEADLINE_DETAIL_TYPE,
        "account": account,
        "region": region,
        "time": handler.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": [],
        "detail": {"instance-id": instance_id, "cutover-by": cutover_by.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    call(
        handler.clients["sqs"],
        "send_message",
        QueueUrl=retries.queue_url(handler, handler.config.queue_arn),
        MessageBody=json.dumps(body),
        DelaySeconds=min(MAX_DELAY, math.ceil(delay)),
    )


def on_deadline(handler, event, instance, service):
    """The deadline of a cut-over (``event.instance_id``: the holder it was armed for)."""
    if instance is None or instance["State"]["Name"] in GONE_STATES:
        return f"ignored: {event.instance_id} is gone"
    return on_deadline_of(handler, event.instance_id, service)


def on_deadline_of(handler, holder_id, service):
    holder = handler.describe(holder_id)
    if holder is None:
        return f"ignored: {holder_id} is gone"
    steps = progress.read(holder)
    successor_id = progress.outcome_of(steps.get("successor", "")) or None
    successor = handler.describe(successor_id) if successor_id else None
    if successor is not None and successor["State"]["Name"] in GONE_STATES:
        successor = None
    decision = decide("deadline", steps, progress.read(successor) if successor else None)
    if decision == NOT_ARMED:
        return f"ignored: no cut-over is armed for {holder_id}"
    if decision == RESUME:
        recorded = progress.read_outcome(steps, "cutover")
        return cut_over(handler, service, holder, recorded.replacement if recorded else None, "deadline")
    return cut_over(handler, service, holder, successor_id if decision == CUT_OVER else None, "deadline")


def hold(handler, event, replacement, service, done):
    """A make-before-break launch: hold the replacement until the cut-over (or cut over now, when it is ready
    already). None: no cut-over concerns this launch (none armed, or one that already released the data to whoever
    comes): the usual launch path gives it the data."""
    ec2, replacement_id = handler.clients["ec2"], replacement["InstanceId"]
    holder = _holder(handler, service, replacement_id)
    if holder is None:
        return None
    steps = progress.read(holder)
    if "cutover" in steps:
        recorded = progress.read_outcome(steps, "cutover")
        if recorded is not None and recorded.replacement == replacement_id:
            return cut_over(handler, service, holder, replacement_id, recorded.trigger)
        return None  # the fallback's hand-off (or a cut-over to an instance since gone): the usual path
    if "armed" not in steps:
        return None
    held = progress.HeldLaunch(event.hook, event.token)
    if not progress.fits(held):
        LOG.warning("hook name of %s too long to record; the launch takes the usual path", replacement_id)
        return None
    if "held" not in done or progress.read_outcome(done, "held") != held:
        done["held"] = progress.record(ec2, replacement_id, "held", handler.clock.now(), held)
    progress.record(ec2, holder["InstanceId"], "successor", handler.clock.now(), replacement_id)
    if decide("launch", steps, done) == CUT_OVER:
        return cut_over(handler, service, holder, replacement_id, "ready")
    armed = progress.read_outcome(steps, "armed")
    by = f" or {armed.cutover_by:%H:%M:%S}Z" if armed else ""
    return f"holding {replacement_id} in Pending:Wait until it is ready{by}; {holder['InstanceId']} serves until then"


def on_ready(handler, replacement, service):
    """The replacement said it is ready: cut over when its launch is held and its holder armed."""
    replacement_id = replacement["InstanceId"]
    holder = _holder(handler, service, replacement_id)
    if holder is None:
        return "no cut-over waits for it"
    decision = decide("ready", progress.read(holder), progress.read(handler.describe(replacement_id) or replacement))
    if decision == NOT_ARMED:
        return "no cut-over waits for it"
    if decision == WAIT:
        return "its launch action is not held yet: the launch cuts over"
    recorded = progress.read_outcome(progress.read(holder), "cutover")
    if decision == RESUME and (recorded is None or recorded.replacement != replacement_id):
        return f"the cut-over of {holder['InstanceId']} is not to it"
    return cut_over(handler, service, holder, replacement_id, "ready")


def _holder(handler, service, replacement_id):
    """The instance the lineage's current volume is attached to, other than ``replacement_id`` and still there."""
    current = current_volume(handler.clients["ec2"], service.lineage)
    attachments = (current or {}).get("Attachments") or []
    holder_id = attachments[0]["InstanceId"] if attachments else None
    if not holder_id or holder_id == replacement_id:
        return None
    holder = handler.describe(holder_id)
    return holder if holder is not None and holder["State"]["Name"] not in GONE_STATES else None


def cut_over(handler, service, holder, replacement_id, trigger):
    """The cut-over of ``holder``'s data to ``replacement_id`` (None: the fallback, released for whoever comes),
    recorded once, each step resumed where it stopped."""
    ec2, clock, holder_id = handler.clients["ec2"], handler.clock, holder["InstanceId"]
    steps = progress.read(holder)
    if "cutover" not in steps:
        steps["cutover"] = progress.record(
            ec2, holder_id, "cutover", clock.now(), progress.CutOver(trigger, replacement_id)
        )
        handler.metric(service, "CutOvers" if replacement_id else "CutOverFallbacks", 1, "Count")
    armed = progress.read_outcome(steps, "armed")
    if replacement_id is None:
        # The bound of zone steering: the data's zone had no replacement by the deadline; widened first, the group's
        # next try may go to any zone while the hand-off runs (and even if it fails and is retried).
        steering.restore(handler, holder_id, service, steps)
    state = holder["State"]["Name"]
    if state in AWAY_STATES and "stopped" not in steps:
        # Going away before its cut-over (reclaimed early, the deadline lost): nothing answers a stop or can be
        # snapshotted any more. The pre-snapshot is the safety net; the volume moves once the reclaim lets go of it.
        steps["stopped"] = progress.record(
            ec2, holder_id, "stopped", clock.now(), f"skipped: it was {state} before its cut-over"
        )
    if "skipped: it was" in progress.outcome_of(steps.get("stopped", "")):
        stop = f"stop {progress.outcome_of(steps['stopped'])}"
    else:
        try:
            stop = warning.hand_off(handler, holder_id, service, armed.interruption_at, steps)
        except InvalidInput:
            # Reclaimed during its hand-off (after the stop, before the final snapshot could be asked of it): as for
            # a holder away before its cut-over, the volume moves once the reclaim lets go of it, and another zone
            # restores the newest snapshot (the pre-snapshot at worst).
            now = handler.describe(holder_id)
            state = now["State"]["Name"] if now is not None else "terminated"
            if state not in AWAY_STATES:
                raise
            stop = f"stop {progress.outcome_of(steps.get('stopped', '')) or 'not sent'}, then it was {state}"
    _let_the_holder_go(handler, service, holder_id, steps)
    if replacement_id is None:
        return f"cut-over deadline with no replacement held: fallback hand-off of {holder_id} ({stop}); the data waits"
    replacement = handler.describe(replacement_id)
    if replacement is None or replacement["State"]["Name"] in GONE_STATES:
        steering.restore(handler, holder_id, service, steps)
        return f"cut-over of {holder_id} ({stop}): replacement {replacement_id} is gone; the data waits for the next"
    done = progress.read(replacement)
    held = progress.read_outcome(done, "held")
    if any(step in done for step in ("continued", "abandoned")) or held is None:
        steering.restore(handler, holder_id, service, steps)
        return f"cut-over of {holder_id} to {replacement_id}: already complete"
    if service.address and "address" not in done and progress.outcome_of(steps.get("stopped", "")) == "ok":
        # The address moves while the volume does (off the critical path): the old application is stopped, so
        # nothing answers there any more, and the replacement answers as soon as its application starts.
        done["address"] = launch.move_service_address(handler, service, replacement_id)
    hook = lifecycle.held_hook(service.group, held)
    # No heartbeat: the action was held at most the notice's two minutes, well inside its hook's timeout, and every
    # call here is downtime.
    took = launch.take_data(handler, hook, replacement, service, done)
    # After the data is attached (off the critical path): the group may launch in every zone again.
    steering.restore(handler, holder_id, service, steps)
    return f"cut-over ({trigger}) of {holder_id}, {stop}: {took}"


def _let_the_holder_go(handler, service, holder_id, steps):
    """The holder's terminate action, held while it served (``termination``), completed once its data is released
    (a stop that failed keeps it: the volume stays, and the action's own timeout lets it go)."""
    held = progress.read_outcome(steps, "terminate-held")
    if held is None or "released" not in steps or "terminate-completed" in steps:
        return
    hook = lifecycle.held_hook(service.group, held)
    lifecycle.complete_and_record(handler, hook, "CONTINUE", holder_id, "terminate-completed")
