# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a recovery cost: the terminal verdict of a replacement that took a lineage's data.

One rule, used by the handler's success message and tested as a table (tests/unit/recovery/test_outcomes.py):

* ``recovered``: nothing the application had written was lost. The very volume moved after the application on
  the previous holder was stopped cleanly (the handler's ``stopped`` step is ``ok``); or the data was restored
  from the interruption's own snapshot set, taken after that clean stop; or it is a backup the operator chose
  (``restore.yml`` staged it for the group: its age is the operator's decision, not a loss).
* ``recovered-with-loss``: the service is back, and the message says what was lost. A volume moved while its
  application was never stopped cleanly is crash-consistent (every write that reached the volume is there; what
  the application had not flushed is not, and it replays its own journal); a snapshot taken while it ran is the
  same, frozen at its start; any other snapshot (the interruption's failed, the volume was deleted) lacks every
  write made after it.

The previous holder's steps are its progress tags (``progress.read``); the structured ones this reads, the
replacement's ``attached`` (``Origin``) and the interruption's ``snapshot`` (``SnapshotSet``), are written and read
by ``progress`` alone. An instance that can no longer be described has no steps, so nothing proves its application
stopped: that is reported as a loss, never assumed away.
"""

from __future__ import annotations

from . import progress
from .progress import Origin  # the ``attached`` step's value, defined with the other structured outcomes

RECOVERED = "recovered"
RECOVERED_WITH_LOSS = "recovered-with-loss"


def parse_origin(value):
    """The ``Origin`` an ``attached`` outcome names, or None when it names none (a tag edited by hand)."""
    return Origin.parse(value)


def _stop_of(previous_id, old_steps):
    """Why the application on the previous holder cannot count as stopped cleanly, or None when it was."""
    if "stopped" not in old_steps:
        return (
            f"no interruption warning was handled for {previous_id}, so its application was never stopped"
            if previous_id
            else "no previous holder's stop is recorded"
        )
    outcome = progress.outcome_of(old_steps["stopped"])
    return None if outcome == "ok" else f"the stop on {previous_id} did not succeed ({outcome})"


def judge(origin, previous_id, old_steps, snapshot_set=None):
    """``(verdict, losses)`` for a replacement whose data came from ``origin``.

    ``previous_id`` is the instance the data was taken from (None when no instance held it), ``old_steps`` its
    progress steps ({} when unknown), ``snapshot_set`` the backup-set tag of the snapshot restored (None when the
    volume moved, or the snapshot cannot be read). ``losses`` are sentences for the operator, empty when recovered.
    """
    old_steps = old_steps or {}
    if origin is None:
        return RECOVERED_WITH_LOSS, ["where the data came from is not recorded, so nothing proves it is complete"]
    unclean = _stop_of(previous_id, old_steps)
    if origin.snapshot_id is None:
        if unclean is None:
            return RECOVERED, []
        return RECOVERED_WITH_LOSS, [
            f"crash-consistent data: {unclean}; the volume kept every write that reached it, "
            f"the application replays its own journal, and what it had not flushed is lost"
        ]
    if origin.staged:
        return RECOVERED, []
    interruption = progress.read_outcome(old_steps, "snapshot")
    if snapshot_set is not None and interruption is not None and snapshot_set == interruption.backup_set:
        if unclean is None and interruption.consistent:
            return RECOVERED, []
        return RECOVERED_WITH_LOSS, [
            f"crash-consistent data: {origin.snapshot_id} (the interruption's snapshot set "
            f"{snapshot_set}) was taken while the application ran ({unclean or 'not confirmed stopped'}); "
            f"writes after it began are lost"
        ]
    source = f"on {previous_id}" if previous_id else "to the lineage's lost volume"
    return RECOVERED_WITH_LOSS, [
        f"the data is {origin.snapshot_id}, {origin.data_age_seconds:.0f} s old when restored, not "
        f"a snapshot taken at the interruption: writes {source} after it began are lost"
    ]
