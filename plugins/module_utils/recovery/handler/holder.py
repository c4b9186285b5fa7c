# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether an instance holds a lineage's current data, and whether it can still let go of it cleanly.

Every workflow that protects or hands off data asks this first: an instance that carries the lineage's tag is not
necessarily its holder (the data may have moved on to a newer generation elsewhere), and acting for a non-holder
would stop, snapshot or hand off the wrong copy.
"""

from __future__ import annotations

from .. import tags as t
from ..generations import rank_copies
from ..lineage import volumes as lineage_volumes

# States in which an instance can no longer stop anything cleanly: no SSM stop, no SetInstanceHealth.
AWAY_STATES = ("shutting-down", "terminated", "stopping", "stopped")


def holds_current_data(ec2, service, instance):
    """Whether ``instance`` holds the lineage's current data: the current volume is attached to it, or it is
    the holder the volume's tags record (released early, or mid-move). Being tagged with the lineage is not
    holding its data: the data may have moved to a newer generation on another instance. When the lineage
    forked or a generation is malformed, any of its top copies attached to the instance makes it a holder
    (its application may be writing to it: protecting that is never wrong)."""
    instance_id = instance["InstanceId"]
    candidates = lineage_volumes(ec2, service.lineage)
    verdict, detail = rank_copies([(v["VolumeId"], t.as_dict(v.get("Tags")).get(t.GENERATION)) for v in candidates])
    if verdict == "none":
        return False
    if verdict == "current":
        chosen = [v for v in candidates if v["VolumeId"] == detail[0]]
    else:
        chosen = candidates if verdict == "malformed" else [v for v in candidates if v["VolumeId"] in detail[1]]
    return any(
        any(
            a.get("InstanceId") == instance_id and a.get("State") in ("attaching", "attached", "detaching")
            for a in v.get("Attachments", [])
        )
        or t.as_dict(v.get("Tags")).get(t.HOLDER) == instance_id
        for v in chosen
    )


def not_holder(event, service):
    """The outcome of an event about an instance that carries the lineage's tag but not its current data."""
    return (
        f"ignored: {event.instance_id} is not the holder of the current generation of {service.lineage} "
        f"(it carries the lineage's tag, but its current data is elsewhere)"
    )
