"""The terminal verdict of a recovery (recovery/outcomes.py) as a table: what the data is, what the previous
holder's steps say, and whether anything written was lost."""

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import outcomes
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.outcomes import (
    RECOVERED,
    RECOVERED_WITH_LOSS,
    Origin,
)

OLD = "i-0123456789abcdef0"
STAMP = "2026-12-07T10:00:00.00Z"
MOVED = Origin("vol-0aa")
RESTORED = Origin("vol-0bb", "snap-0cc", 42.0)
STAGED = Origin("vol-0bb", "snap-0cc", 86400.0, staged=True)


def steps(stopped=None, snapshot=None, **more):
    found = {"warned": STAMP, **{k: f"{STAMP} {v}" for k, v in more.items()}}
    if stopped is not None:
        found["stopped"] = f"{STAMP} {stopped}"
    if snapshot is not None:
        found["snapshot"] = f"{STAMP} {snapshot}"
    return found


@pytest.mark.parametrize(
    "origin, previous, old_steps, snapshot_set, verdict, lost",
    [
        # the very volume, after a clean stop: nothing lost
        (MOVED, OLD, steps("ok", "pg-interruption consistent"), None, RECOVERED, None),
        # the very volume, stop failed / not delivered / never configured / no warning at all: crash-consistent
        (
            MOVED,
            OLD,
            steps("failed: the stop did not finish before the interruption", "s crash-consistent"),
            None,
            RECOVERED_WITH_LOSS,
            "the stop on i-0123456789abcdef0 did not succeed (failed: the stop did not finish",
        ),
        (
            MOVED,
            OLD,
            steps("skipped: no stop commands configured"),
            None,
            RECOVERED_WITH_LOSS,
            "did not succeed (skipped",
        ),
        (
            MOVED,
            OLD,
            {"protected": f"{STAMP} crash-consistent snapshot s"},
            None,
            RECOVERED_WITH_LOSS,
            "no interruption warning was handled for i-0123456789abcdef0",
        ),
        # the old instance can no longer be described: nothing proves a clean stop
        (MOVED, OLD, {}, None, RECOVERED_WITH_LOSS, "its application was never stopped"),
        # restored from the interruption's own set after a clean stop: nothing lost, whatever the snapshot's age
        (RESTORED, OLD, steps("ok", "pg-interruption consistent"), "pg-interruption", RECOVERED, None),
        # the interruption's set, but taken while the application ran
        (
            RESTORED,
            OLD,
            steps("failed: Undeliverable", "pg-interruption crash-consistent"),
            "pg-interruption",
            RECOVERED_WITH_LOSS,
            "snap-0cc (the interruption's snapshot set pg-interruption) was taken while the application ran",
        ),
        # a clean stop, but the restored snapshot is an older one (the interruption's failed): its later writes are lost
        (
            RESTORED,
            OLD,
            steps("ok", "pg-interruption consistent"),
            "pg-nightly",
            RECOVERED_WITH_LOSS,
            "the data is snap-0cc, 42 s old when restored, not a snapshot taken at the interruption: writes on i-0123456789abcdef0",
        ),
        (
            RESTORED,
            OLD,
            steps("ok", "pg-interruption consistent"),
            None,
            RECOVERED_WITH_LOSS,
            "not a snapshot taken at the interruption",
        ),
        # a look-alike: a set name that only starts like the recorded one
        (
            RESTORED,
            OLD,
            steps("ok", "pg-interruption consistent"),
            "pg-interruption-2",
            RECOVERED_WITH_LOSS,
            "not a snapshot taken",
        ),
        # no holder: the lineage's volume was deleted, the newest snapshot restored
        (
            RESTORED,
            None,
            {},
            "pg-nightly",
            RECOVERED_WITH_LOSS,
            "writes to the lineage's lost volume after it began are lost",
        ),
        # a backup restore.yml staged: the operator chose that data
        (STAGED, None, {}, "pg-nightly", RECOVERED, None),
        (STAGED, OLD, steps("failed: x"), None, RECOVERED, None),
        # an origin the handler cannot read is never called complete
        (None, OLD, steps("ok", "s consistent"), None, RECOVERED_WITH_LOSS, "where the data came from is not recorded"),
    ],
)
def test_a_recovery_is_lossless_only_when_the_data_provably_holds_every_write(
    origin, previous, old_steps, snapshot_set, verdict, lost
):
    found, losses = outcomes.judge(origin, previous, old_steps, snapshot_set)
    assert found == verdict
    if lost is None:
        assert losses == []
    else:
        assert len(losses) == 1 and lost in losses[0], losses


@pytest.mark.parametrize("origin", [MOVED, RESTORED, STAGED, Origin("vol-0dd", "snap-0ee", 0.5)])
def test_the_recorded_origin_reads_back_as_written(origin):
    assert outcomes.parse_origin(origin.describe()) == origin


@pytest.mark.parametrize(
    "value",
    [
        "",
        "vol-0aa",
        "vol-0aa same volume extra",
        "vol-0aa from snap-0cc",
        "vol-0aa from snap-0cc age -1s",
        "vol-0aa from snap-0cc age 4s staged\n",
        "vol-0AA same volume",
        None,
    ],
)
def test_an_origin_that_is_not_the_handlers_wording_is_unknown(value):
    assert outcomes.parse_origin(value) is None
