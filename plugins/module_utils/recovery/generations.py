# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Generations: the rules that order a lineage's copies, written once.

A copy of a lineage's data (a volume, a snapshot) carries ``ec2spot:generation``; the data
on a volume carries the generation it was last mounted at in its marker
(``.ec2spot/lineage.json``). These functions decide, from those values alone, which copy is
current and whether a volume's data may be mounted under its tags. The recovery core
(``lineage.current_volume``, ``tags.generation_of``) and the instance agent both decide with
them: the agent runs on a bare image with one file, so it carries a verbatim copy of this
module between its ``BEGIN generations.py`` and ``END generations.py`` lines;
``tools/build_agent.py`` writes that copy and ``tests/unit/recovery/test_generations.py`` fails
when it differs, then runs one table of cases against both.

Standard library only, no imports from this package, nothing that reads AWS.
"""

from __future__ import annotations

import re

LINEAGE_TAG = "ec2spot:lineage"
GENERATION_TAG = "ec2spot:generation"
HOLDER_TAG = "ec2spot:holder"  # the instance the generation was issued for
PREVIOUS_HOLDER_TAG = "ec2spot:previous-holder"  # written by a move: the instance the volume came from
RESTORED_FROM_TAG = "ec2spot:restored-from"  # written by a restore: the snapshot the volume was made from

# What the collection writes is str(int): decimal ASCII digits, no sign, no leading zero, no
# space. int() would also take " 7", "+7", "0_7", "٧" (an Arabic-Indic seven) and "7\n";
# a value that is not exactly what we write was written by someone else, so it orders nothing.
_CANONICAL = re.compile(r"(?:0|[1-9][0-9]{0,17})")


def parse_generation(value):
    """The generation in a tag value or a marker field, or None when it is absent or malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**18 else None
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return int(value)
    return None


def rank_copies(copies):
    """Which of a lineage's copies is current: ``copies`` is ``[(resource_id, generation tag value), ...]``.

    Returns ``(verdict, detail)``:
    ``("none", None)`` no copy; ``("current", (resource_id, generation))`` exactly one copy holds
    the highest generation; ``("malformed", [ids])`` a copy's generation is absent or malformed,
    so no order can be trusted; ``("fork", (generation, [ids]))`` two or more copies share the
    highest generation (two copies that both claim to be current: picking one loses the other's
    writes). Both refusals are for a human; neither is resolved by guessing.
    """
    parsed = [(resource_id, parse_generation(value)) for resource_id, value in copies]
    if not parsed:
        return "none", None
    malformed = sorted(resource_id for resource_id, generation in parsed if generation is None)
    if malformed:
        return "malformed", malformed
    top = max(generation for unused, generation in parsed)
    tied = sorted(resource_id for resource_id, generation in parsed if generation == top)
    if len(tied) > 1:
        return "fork", (top, tied)
    return "current", (tied[0], top)


def judge_marker(lineage, volume_id, volume_tags, volume_snapshot_id, marker, snapshot_tags=None):
    """Whether the data whose ``marker`` was read from volume ``volume_id`` may be mounted as its tags say.

    ``volume_tags`` are the volume's tags (a dict), ``volume_snapshot_id`` the snapshot EC2 says it
    was created from ('' or None for none), ``snapshot_tags`` the tags of the snapshot its
    ``ec2spot:restored-from`` tag names (None when not looked up). Returns ``(accepted, reason)``:

    accepted: ``current`` (the marker's generation is the tag's), ``moved`` (this very volume was
    moved one generation on: the marker was last written on this volume, by the instance the move
    recorded as its previous holder), ``restored`` (the volume was made from a snapshot of this
    lineage whose generation is the marker's, and EC2 agrees it was made from that snapshot).

    refused: ``other-lineage``, ``malformed-marker``, ``malformed-tag``, ``newer`` (the data is
    ahead of its tags), ``older`` (an older marker nothing on the volume explains: a stale copy).
    """
    if not isinstance(marker, dict):
        return False, "malformed-marker"
    if marker.get("lineage") != lineage:
        return False, "other-lineage"
    held = parse_generation(marker.get("generation"))
    if held is None:
        return False, "malformed-marker"
    tagged = parse_generation((volume_tags or {}).get(GENERATION_TAG))
    if tagged is None:
        return False, "malformed-tag"
    if held == tagged:
        return True, "current"
    if held > tagged:
        return False, "newer"
    tags = volume_tags or {}
    previous_holder = tags.get(PREVIOUS_HOLDER_TAG)
    if (
        tagged == held + 1
        and previous_holder
        and marker.get("last_instance") == previous_holder
        and marker.get("last_volume") == volume_id
    ):
        return True, "moved"
    restored_from = tags.get(RESTORED_FROM_TAG)
    if (
        restored_from
        and volume_snapshot_id == restored_from
        and isinstance(snapshot_tags, dict)
        and snapshot_tags.get(LINEAGE_TAG) == lineage
        and parse_generation(snapshot_tags.get(GENERATION_TAG)) == held
    ):
        return True, "restored"
    return False, "older"
