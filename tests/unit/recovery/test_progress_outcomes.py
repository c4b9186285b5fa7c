"""The structured progress outcomes (recovery/progress.py) as tables: what each handler wrote, what the new code reads.

A recovery in flight when the function is upgraded has tags written by the handler before: the interrupted
instance's ``snapshot`` and ``paused``, a planned ``planned``, the replacement's ``attached`` and its lifecycle
completions. The new code reads every form a handler wrote (the first handler recorded a lifecycle completion without
its token and the age of restored data unrounded), and writes exactly what the handler before it wrote, so that the
console, the drill, the benchmarks and a rolled-back function read the same words.
"""

from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import outcomes, progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.progress import (
    LifecycleCompletion,
    Origin,
    PausedNotice,
    PlannedNotice,
    SnapshotSet,
)

STAMP = "2026-12-07T10:00:00.00Z"
TOKEN = "c613620e-07e2-4ed2-a9e2-ef8258911ade"
START = datetime(2026, 12, 9, 6, 30, tzinfo=timezone.utc)
NOTICE = datetime(2026, 12, 7, 10, 0, 4, tzinfo=timezone.utc)
FIRST = "the first handler (Nov 2026)"
PREVIOUS = "the one-module handler before the package"


# (step, outcome as that handler wrote it, which handler, what the new code reads)
# fmt: off
WRITTEN = [
    ("attached", "vol-0aa same volume", FIRST, Origin("vol-0aa")),
    # the first handler wrote the age as Python prints a float
    ("attached", "vol-0bb from snap-0cc age 42.5s", FIRST, Origin("vol-0bb", "snap-0cc", 42.5)),
    ("attached", "vol-0bb from snap-0cc age 0.0s", FIRST, Origin("vol-0bb", "snap-0cc", 0.0)),
    ("attached", "vol-0bb from snap-0cc age 1036800.0s", FIRST, Origin("vol-0bb", "snap-0cc", 1036800.0)),
    ("attached", "vol-0aa same volume", PREVIOUS, Origin("vol-0aa")),
    ("attached", "vol-0bb from snap-0cc age 42s", PREVIOUS, Origin("vol-0bb", "snap-0cc", 42.0)),
    ("attached", "vol-0bb from snap-0cc age 0.5s", PREVIOUS, Origin("vol-0bb", "snap-0cc", 0.5)),
    ("attached", "vol-0bb from snap-0cc age 86400s staged", PREVIOUS,
     Origin("vol-0bb", "snap-0cc", 86400.0, staged=True)),
    # past a million seconds {:g} writes an exponent: a staged backup 12 days old (the handler before could not read it)
    ("attached", "vol-0bb from snap-0cc age 1.0368e+06s staged", PREVIOUS,
     Origin("vol-0bb", "snap-0cc", 1036800.0, staged=True)),
    ("snapshot", "pg-interruption consistent", FIRST, SnapshotSet("pg-interruption", True)),
    ("snapshot", "pg-interruption crash-consistent", PREVIOUS, SnapshotSet("pg-interruption", False)),
    ("snapshot", "pg.data_1-interruption consistent", PREVIOUS, SnapshotSet("pg.data_1-interruption", True)),
    ("planned", "instance-retirement@20261209T063000Z handoff=20261209T060000Z snapshot=pg-planned-202612090630",
     PREVIOUS, PlannedNotice("instance-retirement", START, START - timedelta(minutes=30), "pg-planned-202612090630")),
    ("planned", "system-reboot@20261209T063000Z handoff=20261209T063000Z snapshot=pg-planned-202612090630",
     PREVIOUS, PlannedNotice("system-reboot", START, START, "pg-planned-202612090630")),
    ("paused", "stop@20261207T100004Z stop=ok", PREVIOUS, PausedNotice("stop", NOTICE, "ok")),
    ("paused", "stop@20261207T100004Z stop=failed", PREVIOUS, PausedNotice("stop", NOTICE, "failed")),
    ("paused", "hibernate@20261207T100004Z stop=not stopped", PREVIOUS,
     PausedNotice("hibernate", NOTICE, "not stopped")),
    # the first handler completed a launch with no outcome, and an abandon with the error's code only
    ("continued", "", FIRST, LifecycleCompletion(None)),
    ("abandoned", "NotFound", FIRST, LifecycleCompletion(None, "NotFound")),
    ("continued", f"token={TOKEN}", PREVIOUS, LifecycleCompletion(TOKEN)),
    ("abandoned", f"token={TOKEN} FenceViolation", PREVIOUS, LifecycleCompletion(TOKEN, "FenceViolation")),
    ("terminate-completed", f"token={TOKEN}", PREVIOUS, LifecycleCompletion(TOKEN)),
]
# fmt: on


@pytest.mark.parametrize("step, written, by, read", WRITTEN, ids=[f"{s}: {w or '(none)'}" for s, w, b, r in WRITTEN])
def test_what_any_handler_wrote_reads_back(step, written, by, read):
    tag_value = f"{STAMP} {written}" if written else STAMP
    assert progress.read_outcome({step: tag_value}, step) == read, by


@pytest.mark.parametrize(
    "step, written, by, read",
    [row for row in WRITTEN if row[2] == PREVIOUS],
    ids=[f"{s}: {w}" for s, w, b, r in WRITTEN if b == PREVIOUS],
)
def test_the_new_code_writes_what_the_handler_before_it_wrote(step, written, by, read):
    assert read.describe() == written


def test_the_previous_handlers_own_expressions_give_the_same_words():
    """The f-strings the one-module handler wrote each structured outcome with, next to the classes that write them."""
    set_name, handoff = "pg-planned-202612090630", START - timedelta(minutes=30)
    assert SnapshotSet(set_name, False).describe() == f"{set_name} {'crash-consistent'}"
    assert PlannedNotice("instance-retirement", START, handoff, set_name).describe() == (
        f"instance-retirement@{START:%Y%m%dT%H%M%SZ} handoff={handoff:%Y%m%dT%H%M%SZ} snapshot={set_name}"
    )
    stop = "failed: the stop did not finish before the interruption"
    assert (
        PausedNotice("stop", NOTICE, "failed").describe()
        == f"stop@{NOTICE:%Y%m%dT%H%M%SZ} stop={stop.split(':', maxsplit=1)[0]}"
    )
    assert LifecycleCompletion(TOKEN, "NotFound").describe() == f"token={TOKEN} NotFound"


# (step, outcome, why it is no form any handler wrote): unknown, never half-read
UNKNOWN = [
    ("attached", "vol-0aa", "no origin"),
    ("attached", "vol-0aa same volume extra", "a word more"),
    ("attached", "vol-0aa from snap-0cc age -1s", "a negative age"),
    ("attached", "vol-0aa from snap-0cc age 1.2.3s", "not a number"),
    ("attached", "vol-0AA same volume", "not an id"),
    ("snapshot", "pg-interruption", "no consistency"),
    ("snapshot", "pg-interruption consistent extra", "a word more"),
    ("snapshot", "pg interruption consistent", "a set name with a space"),
    ("planned", "instance-retirement@20261209T063000Z", "no hand-off"),
    ("planned", "instance-retirement@2026-12-09 handoff=20261209T060000Z snapshot=s", "not a compact moment"),
    ("paused", "reboot@20261207T100004Z stop=ok", "not a pause"),
    ("paused", "stop@20261207T100004Z", "no stop verdict"),
]


@pytest.mark.parametrize("step, written, why", UNKNOWN, ids=[f"{s}: {why}" for s, w, why in UNKNOWN])
def test_a_value_no_handler_wrote_is_unknown(step, written, why):
    assert progress.read_outcome({step: f"{STAMP} {written}"}, step) is None, why


def test_an_unrecorded_step_has_no_outcome():
    assert all(progress.read_outcome({}, step) is None for step in progress.STRUCTURED)


@pytest.mark.parametrize(
    "step, outcome",
    [
        ("attached", "vol-0aa same volume"),  # text where the step records an Origin
        ("snapshot", Origin("vol-0aa")),  # another structured kind
        ("continued", LifecycleCompletion(None)),  # a completion is recorded with its token
        ("stopped", SnapshotSet("s", True)),  # a structured value where the step records words
    ],
)
def test_record_refuses_a_value_its_step_does_not_record_before_writing(step, outcome):
    class NoClient:
        def create_tags(self, **unused):
            raise AssertionError("nothing is written")

    with pytest.raises((TypeError, ValueError)):
        progress.record(NoClient(), "i-0123456789abcdef0", step, datetime(2026, 12, 7, tzinfo=timezone.utc), outcome)


@pytest.mark.parametrize(
    "completion, token, same",
    [
        (LifecycleCompletion(TOKEN), TOKEN, True),
        (LifecycleCompletion(TOKEN), "0b9b1a3e-6f0c-4a8e-9d55-3c1f6a2b7e10", False),  # a later lifecycle (warm pool)
        (LifecycleCompletion(None), TOKEN, True),  # an older handler's: taken as done, never redone
        (LifecycleCompletion(None, "NotFound"), TOKEN, True),
    ],
)
def test_a_completion_is_for_its_own_token_or_any_when_none_was_recorded(completion, token, same):
    assert completion.is_for(token) is same


@pytest.mark.parametrize(
    "code, start, same",
    [
        ("instance-retirement", START, True),
        ("instance-retirement", START + timedelta(microseconds=5), True),
        ("instance-retirement", START + timedelta(seconds=1), False),  # another notice: a new start
        ("system-reboot", START, False),  # another code
    ],
)
def test_a_planned_notice_is_the_same_notice_to_the_second(code, start, same):
    assert PlannedNotice("instance-retirement", START, START, "s").is_notice(code, start) is same


def test_the_verdict_reads_the_interruption_snapshot_set_an_older_handler_recorded():
    old_steps = {"warned": STAMP, "stopped": f"{STAMP} ok", "snapshot": f"{STAMP} pg-interruption consistent"}
    origin = progress.read_outcome({"attached": f"{STAMP} vol-0bb from snap-0cc age 42.5s"}, "attached")
    assert outcomes.judge(origin, "i-0123456789abcdef0", old_steps, "pg-interruption") == (outcomes.RECOVERED, [])
