# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fencing: the rules that decide whether a lineage's data may leave its current holder.

A volume may be released from an instance only when nothing can still be writing to it:
the instance is stopped or going away, or the caller asserts that the application on it
has stopped (the handler asserts it after SSM reports the stop succeeded; an operator
asserts it with ``source_app_stopped``). Without either, releasing it could tear a
database mid-write; a second writer on a restored copy would fork the data.

A volume is never force-detached by default: ``Force`` skips the guest's flush and AWS
documents it as a last resort that can corrupt the filesystem.

A volume of an older generation never goes where a newer generation of the same lineage
is, and never replaces it.
"""

from __future__ import annotations

from .errors import FenceViolation
from .tags import as_dict, generation_of, holds_lineage_data

# States in which the guest can no longer write: EC2 has stopped or is terminating it.
QUIESCENT_STATES = frozenset({"stopped", "shutting-down", "terminated"})


def assert_release_allowed(instance, volume_id, app_stopped):
    """Raise ``FenceViolation`` unless ``volume_id`` may be detached from ``instance``."""
    state = instance["State"]["Name"]
    if state in QUIESCENT_STATES or app_stopped:
        return
    raise FenceViolation(
        f"refusing to release {volume_id} from {instance['InstanceId']}: the instance is {state} and its "
        f"application was not reported stopped; stop the application first and assert it "
        f"(source_app_stopped), or stop the instance",
        volume_id=volume_id,
        instance_id=instance["InstanceId"],
        instance_state=state,
    )


def assert_no_newer_generation_on_target(
    target_instance, lineage, candidate_volume_id, candidate_generation, attached_volumes
):
    """Refuse when the target already holds another volume of this lineage.

    ``attached_volumes`` are the descriptions of the volumes attached to the target.
    Holding two copies of one lineage would leave the instance agent to guess which is
    current; holding a newer one means the candidate is stale.
    """
    for volume in attached_volumes:
        if volume["VolumeId"] == candidate_volume_id:
            continue
        volume_tags = as_dict(volume.get("Tags"))
        if not holds_lineage_data(volume_tags, lineage):
            continue  # another lineage's data, or a root volume that inherited the instance's tag
        held = generation_of(volume_tags)
        relation = "a newer" if held > candidate_generation else "another"
        raise FenceViolation(
            f"refusing to attach {candidate_volume_id} (lineage {lineage}, generation {candidate_generation}) to "
            f"{target_instance['InstanceId']}: it already holds {relation} volume of the lineage, "
            f"{volume['VolumeId']} (generation {held}); detach it first if it is really stale",
            volume_id=candidate_volume_id,
            held_volume_id=volume["VolumeId"],
        )
