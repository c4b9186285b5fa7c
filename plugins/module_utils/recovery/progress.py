# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a recovery's progress lives: tags on the instances it concerns, and the outcomes they record.

Why tags and not a table: they live with the resources the recovery is about (the
interrupted instance stays describable for about an hour after it terminates, the
replacement for as long as it lives), they survive a crashed handler, they need no table
to provision, secure or clean up, an operator sees them in the console, and ``CreateTags``
is idempotent, so recording a step twice is harmless. Each step writes one tag
``ec2spot:progress:<step>`` whose value starts with the modeled time it completed (ISO 8601)
and may carry a short outcome after a space. A step whose tag exists is never redone, which
makes duplicate, late and redelivered events do nothing twice.

A step whose outcome the handler reads back to decide something records a structured value,
one class per kind (``STRUCTURED`` names the steps): ``record`` writes it with its
``describe()`` and refuses anything else for that step, and ``read_outcome`` reads it back with
its ``parse()``. What ``describe()`` writes is, byte for byte, what the handler wrote before
these classes existed (the console, the drill and the benchmarks read the same words), and
``parse()`` also reads what older handlers wrote (a token-less lifecycle completion): a
recovery in flight survives an upgrade of the function
(tests/unit/recovery/test_progress_outcomes.py keeps that table). A value in no form a handler
ever wrote (a tag edited by hand) is unknown (None), never half-read. The other outcomes are
words for the operator (``stopped``: ``ok`` or why not) or one id (``replaces``), read whole
with ``outcome_of``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from .aws import call
from .tags import PREFIX

PROGRESS = PREFIX + "progress:"
# A moment inside a structured outcome: to the second, without separators (it sits among words), written as the
# moment's own fields (the handler's moments are UTC) and read back as UTC.
COMPACT_TIME = "%Y%m%dT%H%M%SZ"
_COMPACT_TIME = r"[0-9]{8}T[0-9]{6}Z"
# A backup set's name (backups.SET_NAME, without its length bound: a tag's value is cut at 255 characters anyway).
_SET_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def _compact(moment):
    return moment.strftime(COMPACT_TIME)


def _moment(text):
    return datetime.strptime(text, COMPACT_TIME).replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Origin:
    """``attached``: where the replacement's data came from."""

    volume_id: str
    snapshot_id: str | None = None  # None: the very volume moved
    data_age_seconds: float = 0.0  # the snapshot's age when the volume was made from it
    staged: bool = False  # a backup restore.yml staged for the group (the operator's choice)

    @property
    def restored(self):
        """Whether the data was restored from a snapshot (not the very volume moved)."""
        return self.snapshot_id is not None

    def describe(self):
        """``<volume> same volume`` or ``<volume> from <snapshot> age <seconds>s[ staged]``."""
        if self.snapshot_id is None:
            return f"{self.volume_id} same volume"
        staged = " staged" if self.staged else ""
        return f"{self.volume_id} from {self.snapshot_id} age {self.data_age_seconds:g}s{staged}"

    @classmethod
    def parse(cls, text):
        """The origin ``text`` names, or None."""
        matched = _ORIGIN.fullmatch(text or "")
        if not matched:
            return None
        if matched["snapshot"] is None:
            return cls(matched["volume"])
        return cls(matched["volume"], matched["snapshot"], float(matched["age"]), bool(matched["staged"]))


# The age as ``{:g}`` writes it: ``42``, ``0.5``, and past a million seconds (11.6 days, a staged weekly backup)
# ``1.0368e+06``, which the handler wrote and, before these classes, could not read back.
_ORIGIN = re.compile(
    r"(?P<volume>vol-[0-9a-f]+) "
    r"(?:same volume|from (?P<snapshot>snap-[0-9a-f]+) age (?P<age>[0-9]+(?:\.[0-9]*)?(?:e[+-][0-9]+)?)s)"
    r"(?P<staged> staged)?"
)


@dataclass(frozen=True)
class SnapshotSet:
    """``snapshot``: the interruption's snapshot set, and whether it is consistent (taken after the application
    was stopped cleanly) or crash-consistent."""

    backup_set: str
    consistent: bool

    def describe(self):
        """``<set> consistent`` or ``<set> crash-consistent``."""
        return f"{self.backup_set} {'consistent' if self.consistent else 'crash-consistent'}"

    @classmethod
    def parse(cls, text):
        """The snapshot set ``text`` names, or None."""
        matched = _SNAPSHOT_SET.fullmatch(text or "")
        return cls(matched["set"], matched["consistency"] == "consistent") if matched else None


_SNAPSHOT_SET = re.compile(rf"(?P<set>{_SET_NAME}) (?P<consistency>consistent|crash-consistent)")


@dataclass(frozen=True)
class LifecycleCompletion:
    """``continued``, ``abandoned``, ``terminate-completed``: a lifecycle action was completed. Its token tells a
    redelivery of that action (done) from a later lifecycle of the same instance, back from a warm pool (to do);
    an abandon also keeps the code of the error that made it.

    ``token`` is None for a completion an older handler recorded without its token (``continued`` with no
    outcome, ``abandoned`` with the error's code only): which action it completed is unknown."""

    token: str | None
    error_code: str | None = None

    def describe(self):
        """``token=<token>[ <error code>]``."""
        if self.token is None:
            raise ValueError("a lifecycle completion is recorded with its token")
        return f"token={self.token}" + (f" {self.error_code}" if self.error_code else "")

    def is_for(self, token):
        """Whether this completion may be the one of the action ``token`` names: its own token, or none recorded
        (an older handler's; the action is then taken as done, never redone)."""
        return self.token in (None, token)

    @classmethod
    def parse(cls, text):
        """The completion ``text`` records. Any recorded value is one: the token is the word ``token=<token>``
        wherever it stands (None when there is none, or it is empty), the error's code the other word."""
        words = (text or "").split()
        token_at = next((index for index, word in enumerate(words) if word.startswith("token=")), None)
        if token_at is None:
            return cls(None, words[0] if words else None)
        others = words[:token_at] + words[token_at + 1 :]
        return cls(words[token_at][len("token=") :] or None, others[0] if others else None)


@dataclass(frozen=True)
class PlannedNotice:
    """``planned``: a planned interruption (its code and start) was announced and snapshotted, and when the data's
    hand-off is due. One notice is acted on once; another (a new start, another code) again."""

    code: str
    start: datetime
    handoff_at: datetime
    backup_set: str

    def is_notice(self, code, start):
        """Whether this is the notice of ``code`` at ``start`` (to the second)."""
        return self.code == code and _compact(self.start) == _compact(start)

    def describe(self):
        """``<code>@<start> handoff=<moment> snapshot=<set>``."""
        return f"{self.code}@{_compact(self.start)} handoff={_compact(self.handoff_at)} snapshot={self.backup_set}"

    @classmethod
    def parse(cls, text):
        """The planned notice ``text`` records, or None."""
        matched = _PLANNED.fullmatch(text or "")
        if not matched:
            return None
        return cls(matched["code"], _moment(matched["start"]), _moment(matched["handoff"]), matched["set"])


_PLANNED = re.compile(
    rf"(?P<code>[a-z][a-z0-9-]*)@(?P<start>{_COMPACT_TIME}) handoff=(?P<handoff>{_COMPACT_TIME}) "
    rf"snapshot=(?P<set>{_SET_NAME})"
)


@dataclass(frozen=True)
class PausedNotice:
    """``paused``: a Spot ``stop`` or ``hibernate`` notice (its action and time) was handled, and the verdict of
    the application's stop (``ok``, ``failed``, ``skipped``, ``not stopped``: the message carries the reason)."""

    action: str
    noticed_at: datetime
    stop: str

    def is_notice(self, action, noticed_at):
        """Whether this is the ``action`` notice given at ``noticed_at`` (to the second)."""
        return self.action == action and _compact(self.noticed_at) == _compact(noticed_at)

    def describe(self):
        """``<action>@<moment> stop=<verdict>``."""
        return f"{self.action}@{_compact(self.noticed_at)} stop={self.stop}"

    @classmethod
    def parse(cls, text):
        """The Spot notice ``text`` records, or None."""
        matched = _PAUSED.fullmatch(text or "")
        return cls(matched["action"], _moment(matched["at"]), matched["stop"]) if matched else None


_PAUSED = re.compile(rf"(?P<action>stop|hibernate)@(?P<at>{_COMPACT_TIME}) stop=(?P<stop>[^:]*)")


@dataclass(frozen=True)
class CutOverDeadline:
    """``armed``: a make-before-break cut-over is armed: the interruption's time (the notice's end) and the deadline
    by which the data moves whether or not a replacement is ready (``cutover_by``)."""

    interruption_at: datetime
    cutover_by: datetime

    def describe(self):
        """``interruption=<moment> cutover-by=<moment>``."""
        return f"interruption={_compact(self.interruption_at)} cutover-by={_compact(self.cutover_by)}"

    @classmethod
    def parse(cls, text):
        """The armed deadline ``text`` records, or None."""
        matched = _DEADLINE.fullmatch(text or "")
        return cls(_moment(matched["at"]), _moment(matched["by"])) if matched else None


_DEADLINE = re.compile(rf"interruption=(?P<at>{_COMPACT_TIME}) cutover-by=(?P<by>{_COMPACT_TIME})")


@dataclass(frozen=True)
class CutOver:
    """``cutover``: the cut-over started, once per interruption: what triggered it (``ready``: the replacement said
    it was up; ``deadline``: the deadline came first) and the replacement the data goes to (None: none was held, the
    fallback hand-off releases the data for whichever replacement comes)."""

    trigger: str
    replacement: str | None

    def describe(self):
        """``<trigger> to=<instance id>`` or ``<trigger> fallback``."""
        return f"{self.trigger} " + (f"to={self.replacement}" if self.replacement else "fallback")

    @classmethod
    def parse(cls, text):
        """The cut-over ``text`` records, or None."""
        matched = _CUTOVER.fullmatch(text or "")
        return cls(matched["trigger"], matched["to"]) if matched else None


_CUTOVER = re.compile(r"(?P<trigger>ready|deadline) (?:to=(?P<to>i-[0-9a-f]{8,17})|fallback)")


@dataclass(frozen=True)
class HeldLaunch:
    """``held``: the replacement's launch lifecycle action is held (``Pending:Wait``) until the cut-over gives it
    the data; ``awaiting-start``: held, with the data, until its agent reports the application started (a group
    behind target groups, ``launch.hold_for_start``); ``terminate-held``: the old holder's terminate action is held
    (``Terminating:Wait``) until the cut-over has released its data. The hook and the action's token, so the
    cut-over, started by another event, completes that action."""

    hook: str
    token: str

    def describe(self):
        """``token=<token> hook=<hook name>``."""
        return f"token={self.token} hook={self.hook}"

    @classmethod
    def parse(cls, text):
        """The held action ``text`` records, or None."""
        matched = _HELD.fullmatch(text or "")
        return cls(matched["hook"], matched["token"]) if matched else None


# The token as events.TOKEN takes it (no spaces), then the hook's name, whatever it holds, to the end.
_HELD = re.compile(r"token=(?P<token>[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}) hook=(?P<hook>.{1,255})")


@dataclass(frozen=True)
class ZoneSteering:
    """``steered``: the holder's group was narrowed to the subnets of the data's zone (``zone``) so that its
    replacement launches there; ``restore``: the group's subnets before (its ``VPCZoneIdentifier``, in order), given
    back once the cut-over is done or has fallen back."""

    zone: str
    restore: tuple

    def describe(self):
        """``zone=<zone> restore=<subnet>,<subnet>...``."""
        return f"zone={self.zone} restore={','.join(self.restore)}"

    @classmethod
    def parse(cls, text):
        """The steering ``text`` records, or None."""
        matched = _STEERED.fullmatch(text or "")
        return cls(matched["zone"], tuple(matched["restore"].split(","))) if matched else None


# A zone as EC2 names it (us-east-1a; Local Zones such as us-west-2-lax-1a; Wavelength Zones such as
# us-east-1-wl1-bos-wlz-1, which end in a digit), then the subnets' ids.
_STEERED = re.compile(
    r"zone=(?P<zone>[a-z]{2}-[a-z0-9]+(?:-[a-z0-9]+)*) restore=(?P<restore>subnet-[0-9a-f]+(?:,subnet-[0-9a-f]+)*)"
)


@dataclass(frozen=True)
class PoolAvoidance:
    """``avoided``: the holder's group leaves its instance type (``instance_type``) out of its mixed instances
    policy's overrides until ``until``, so that no replacement comes from the pool being reclaimed; ``restore``: the
    overrides as they were (``(instance type, weighted capacity or None)``, in order), given back after ``until``."""

    instance_type: str
    until: datetime
    restore: tuple

    def describe(self):
        """``type=<type> until=<moment> restore=<type>[:<weight>],...``."""
        overrides = ",".join(kind if weight is None else f"{kind}:{weight}" for kind, weight in self.restore)
        return f"type={self.instance_type} until={_compact(self.until)} restore={overrides}"

    @classmethod
    def parse(cls, text):
        """The avoidance ``text`` records, or None."""
        matched = _AVOIDED.fullmatch(text or "")
        if not matched:
            return None
        restore = tuple(
            (kind, weight or None)
            for kind, unused_colon, weight in (item.partition(":") for item in matched["restore"].split(","))
        )
        return cls(matched["type"], _moment(matched["until"]), restore)


# An instance type as EC2 names it (m6i.large, m7i-flex.large, u-6tb1.metal), a weight as Auto Scaling takes it
# (1-999).
_INSTANCE_TYPE = r"[a-z0-9][a-z0-9-]*\.[a-z0-9-]+"
_AVOIDED = re.compile(
    rf"type=(?P<type>{_INSTANCE_TYPE}) until=(?P<until>{_COMPACT_TIME}) "
    rf"restore=(?P<restore>{_INSTANCE_TYPE}(?::[1-9][0-9]{{0,2}})?(?:,{_INSTANCE_TYPE}(?::[1-9][0-9]{{0,2}})?)*)"
)


# The steps whose outcome is structured, and its class.
STRUCTURED = {
    "attached": Origin,
    "snapshot": SnapshotSet,
    "presnapshot": SnapshotSet,
    "armed": CutOverDeadline,
    "cutover": CutOver,
    "held": HeldLaunch,
    "awaiting-start": HeldLaunch,
    "steered": ZoneSteering,
    "avoided": PoolAvoidance,
    "terminate-held": HeldLaunch,
    "planned": PlannedNotice,
    "paused": PausedNotice,
    "continued": LifecycleCompletion,
    "abandoned": LifecycleCompletion,
    "terminate-completed": LifecycleCompletion,
}


def read(instance):
    """``{step: value}`` of the progress tags of a described instance."""
    return {
        tag["Key"][len(PROGRESS) :]: tag["Value"] for tag in instance.get("Tags", []) if tag["Key"].startswith(PROGRESS)
    }


# A value is ``<stamp> <outcome>`` in a tag's 255 characters; the stamp takes 23 of them and the space one.
OUTCOME_ROOM = 255 - 24


def fits(outcome):
    """Whether a structured ``outcome`` is recorded whole (a cut one would be misread, or read as nothing)."""
    return len(outcome.describe()) <= OUTCOME_ROOM


def record(ec2, instance_id, step, when, outcome=""):
    """Record ``step`` as done at ``when`` with its ``outcome``: for a step in ``STRUCTURED``, a value of its class
    (anything else is a bug, refused before anything is written); for the others, text. Returns the tag's value."""
    kind = STRUCTURED.get(step)
    if kind is not None and not isinstance(outcome, kind):
        raise TypeError(f"progress step {step} records a {kind.__name__}, not {outcome!r}")
    if kind is None and not isinstance(outcome, str):
        raise TypeError(f"progress step {step} records text, not {outcome!r}")
    text = outcome.describe() if kind is not None else outcome
    value = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z" + (f" {text}" if text else "")
    call(ec2, "create_tags", Resources=[instance_id], Tags=[{"Key": PROGRESS + step, "Value": value[:255]}])
    return value


def read_outcome(steps, step):
    """The structured outcome of ``step`` (a key of ``STRUCTURED``) in ``steps`` (``read``'s), or None when the step
    is not recorded or its value is in no form a handler wrote."""
    if step not in steps:
        return None
    return STRUCTURED[step].parse(outcome_of(steps[step]))


# The instance agent's boot phases kept as progress (boot-<phase>): the drill and the console read them.
BOOT_PHASES = ("mounted", "app_started")


def record_boot(ec2, instance_id, phases):
    """Keep the agent's reported boot phases (ISO 8601 stamps) as ``boot-<phase>`` steps, in one call.

    Stamps that do not parse are left out: they come from the instance, not from us."""
    kept = []
    for phase in BOOT_PHASES:
        stamp = phases.get(phase) if isinstance(phases, dict) else None
        try:
            time_of(str(stamp))
        except ValueError:
            continue
        kept.append({"Key": f"{PROGRESS}boot-{phase}", "Value": str(stamp)[:40]})
    if kept:
        call(ec2, "create_tags", Resources=[instance_id], Tags=kept)
    return {tag["Key"][len(PROGRESS) :]: tag["Value"] for tag in kept}


# A progress value is ``<stamp>`` or ``<stamp> <outcome>``: the stamp never holds a space, the outcome may.
def outcome_of(value):
    """The outcome part of a progress value (``"ok"``, ``"failed: ..."``), or ``""``."""
    return value.split(" ", 1)[1] if value and " " in value else ""


def stamp_of(value):
    """The timestamp part of a progress value (ISO 8601, ``Z``)."""
    return value.split(" ", 1)[0]


def time_of(value):
    return datetime.fromisoformat(stamp_of(value).replace("Z", "+00:00"))
