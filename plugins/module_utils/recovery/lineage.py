# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lineage: the identity of one service's data across instances, volumes and snapshots.

Every volume and snapshot of the lineage carries ``ec2spot:lineage=<name>`` and
``ec2spot:generation=<n>``. The generation increases each time the data moves to a new
volume or a new instance, so the current copy is always the volume with the highest
generation; a copy with a lower one is stale (its data was superseded) and is never
attached over or instead of the current one.
"""

from __future__ import annotations

import re

from .aws import paginate
from .errors import Ambiguous, InvalidInput, NotFound
from .generations import rank_copies
from .instances import LIVE_STATES, find_instances
from .tags import GENERATION, HOLDER, KIND, LINEAGE, as_dict, generation_of

# Tag values allow more, but lineage names end up in resource names and file paths.
LINEAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

USABLE_VOLUME_STATES = ("creating", "available", "in-use")


def validate_name(lineage):
    if not isinstance(lineage, str) or not LINEAGE_NAME.match(lineage):
        raise InvalidInput(
            f"invalid lineage name {lineage!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return lineage


def volumes(ec2, lineage):
    """The lineage's volumes that can hold data, newest generation first."""
    found = paginate(
        ec2,
        "describe_volumes",
        "Volumes",
        Filters=[
            {"Name": f"tag:{LINEAGE}", "Values": [lineage]},
            {"Name": "tag-key", "Values": [GENERATION]},
            {"Name": "status", "Values": list(USABLE_VOLUME_STATES)},
        ],
    )
    return sorted(found, key=lambda v: (-generation_of(as_dict(v.get("Tags"))), v["VolumeId"]))


def current_volume(ec2, lineage):
    """The volume holding the lineage's newest generation, or None when it has no volume.

    ``generations.rank_copies`` decides, as the instance agent does: two volumes sharing the top
    generation mean the lineage forked (two copies that both claim to be current), and a volume
    whose generation tag is malformed cannot be ordered; both are refused rather than guessed,
    since picking one could lose the other's writes.
    """
    candidates = volumes(ec2, lineage)
    verdict, detail = rank_copies([(v["VolumeId"], as_dict(v.get("Tags")).get(GENERATION)) for v in candidates])
    if verdict == "none":
        return None
    if verdict == "malformed":
        raise Ambiguous(
            f"lineage {lineage} has volumes whose {GENERATION} tag is not a generation ({', '.join(detail)}); "
            f"no copy can be called current until they carry a whole number (as the collection writes it) or lose "
            f"the tag",
            lineage=lineage,
            volume_ids=detail,
        )
    if verdict == "fork":
        top, tied = detail
        raise Ambiguous(
            f"lineage {lineage} has {len(tied)} volumes at generation {top} ({', '.join(tied)}); "
            f"keep the one with the current data and retag or delete the others",
            lineage=lineage,
            volume_ids=tied,
        )
    return next(v for v in candidates if v["VolumeId"] == detail[0])


def highest_generation(ec2, lineage):
    """The highest generation any volume or snapshot of the lineage has reached (0 if none)."""
    generations = [generation_of(as_dict(v.get("Tags"))) for v in volumes(ec2, lineage)]
    generations += [generation_of(as_dict(s.get("Tags"))) for s in snapshots(ec2, lineage, states=None)]
    return max(generations, default=0)


def snapshots(ec2, lineage, states=("completed",), owner="self"):
    """The lineage's volume snapshots (not an AMI's own), newest first."""
    query = [
        {"Name": f"tag:{LINEAGE}", "Values": [lineage]},
        {"Name": f"tag:{KIND}", "Values": ["volume"]},
        {"Name": "tag-key", "Values": [GENERATION]},
    ]
    if states:
        query.append({"Name": "status", "Values": list(states)})
    found = paginate(ec2, "describe_snapshots", "Snapshots", OwnerIds=[owner], Filters=query)
    return sorted(found, key=lambda s: (s["StartTime"], s["SnapshotId"]), reverse=True)


def newest_completed_snapshot(ec2, lineage):
    """The newest snapshot of the lineage whose data is complete; ``NotFound`` when none."""
    completed = snapshots(ec2, lineage)
    if not completed:
        raise NotFound(
            f"lineage {lineage} has no completed snapshot to restore from; take one with spot_backup "
            f"(and wait for it to complete) before moving the data to another availability zone",
            lineage=lineage,
        )
    return completed[0]


def describe(volume_or_snapshot):
    """Short, human-readable identity used in messages: ``vol-1 (generation 3)``."""
    resource_id = volume_or_snapshot.get("VolumeId") or volume_or_snapshot.get("SnapshotId")
    return f"{resource_id} (generation {as_dict(volume_or_snapshot.get('Tags')).get(GENERATION, '0')})"


GROUP_TAG = "aws:autoscaling:groupName"  # the tag Auto Scaling puts on every instance it launches


def groups_of(ec2, lineage):
    """``{group name: [instance ids]}`` of the lineage's live instances that an Auto Scaling group launched."""
    return groups_in(find_instances(ec2, {LINEAGE: lineage}, LIVE_STATES))


def groups_in(instances):
    """``groups_of`` for instances already described (only the live ones count)."""
    found = {}
    for instance in instances:
        group = as_dict(instance.get("Tags")).get(GROUP_TAG)
        if group and instance["State"]["Name"] in LIVE_STATES:
            found.setdefault(group, []).append(instance["InstanceId"])
    return {group: sorted(ids) for group, ids in sorted(found.items())}


def holder_id(volume):
    """The instance that holds a volume: the one it is attached (or attaching) to, else its recorded holder."""
    attached = [a["InstanceId"] for a in volume.get("Attachments", []) if a.get("State") in ("attaching", "attached")]
    return attached[0] if attached else as_dict(volume.get("Tags")).get(HOLDER)


def foreign_groups(groups, group):
    """The groups, other than the service's ``group``, whose instances carry the lineage: each is a second writer
    waiting to happen (its instances would mount or be given the data too)."""
    return {name: ids for name, ids in groups.items() if name != group}
