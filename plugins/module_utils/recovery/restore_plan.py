# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a restore starts from: where a lineage's data is, who writes it, and which backup a request means.

Read-only. restore.yml (through the lineage_info module) decides from this whether to refuse (a live writer),
what to fence, which snapshot to restore and whether the restore is already done, so that every decision is
made once, here, rather than in Jinja.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .aws import call
from .errors import InvalidInput, NotFound, missing_as_not_found
from . import lineage as lineages
from . import tags as t

LIVE_STATES = ("pending", "running", "stopping")
GROUP_TAG = "aws:autoscaling:groupName"


def _iso(value):
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def parse_time(text):
    """An ISO 8601 date or time; naive values are UTC. ``InvalidInput`` names the accepted forms."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError) as exc:
        raise InvalidInput(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-20 or 2026-11-20T03:00:00Z)"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _backup(snapshot):
    tags = t.as_dict(snapshot.get("Tags"))
    return {
        "snapshot_id": snapshot["SnapshotId"],
        "start_time": _iso(snapshot["StartTime"]),
        "backup_set": tags.get(t.BACKUP_SET),
        "generation": t.generation_of(tags),
        "source_volume": tags.get(t.SOURCE_VOLUME),
        "size": snapshot.get("VolumeSize"),
    }


def _holder(ec2, volume):
    attachments = volume.get("Attachments") or []
    if not attachments:
        return None
    instance_id = attachments[0]["InstanceId"]
    reservations = call(ec2, "describe_instances", InstanceIds=[instance_id])["Reservations"]
    instance = next((i for r in reservations for i in r["Instances"]), None)
    if instance is None:
        return {"instance_id": instance_id, "state": "terminated", "group": None, "live": False, "name": None}
    tags = t.as_dict(instance.get("Tags"))
    state = instance["State"]["Name"]
    return {
        "instance_id": instance_id,
        "state": state,
        "group": tags.get(GROUP_TAG),
        "live": state in LIVE_STATES,
        "name": tags.get("Name"),
        "availability_zone": instance["Placement"]["AvailabilityZone"],
    }


def describe_lineage(ec2, lineage):
    """The lineage's current volume and its holder, every data volume, its completed backups, newest first, and the
    ids of its snapshots still in progress."""
    lineages.validate_name(lineage)
    current = lineages.current_volume(ec2, lineage)
    report = {
        "lineage": lineage,
        "current": None,
        "volumes": [],
        "backups": [],
        "live_writers": [],
        "grouped_writers": [],
    }
    for volume in lineages.volumes(ec2, lineage):
        tags = t.as_dict(volume.get("Tags"))
        holder = _holder(ec2, volume)
        summary = {
            "volume_id": volume["VolumeId"],
            "generation": t.generation_of(tags),
            "state": volume["State"],
            "availability_zone": volume["AvailabilityZone"],
            "restored_from": tags.get(t.RESTORED_FROM),
            "superseded_by": tags.get(t.SUPERSEDED_BY),
            "fresh": tags.get(t.FRESH) == "true",
            "holder": holder,
        }
        report["volumes"].append(summary)
        if current and volume["VolumeId"] == current["VolumeId"]:
            report["current"] = summary
        if holder and holder["live"]:
            report["live_writers"].append(holder["instance_id"])
            if holder["group"]:
                report["grouped_writers"].append(holder["instance_id"])
    report["backups"] = [_backup(s) for s in lineages.snapshots(ec2, lineage)]
    # Snapshots still being taken hold the lineage's data too: a lineage with one of them is not new.
    report["backups_in_progress"] = [s["SnapshotId"] for s in lineages.snapshots(ec2, lineage, states=("pending",))]
    report["groups"] = lineages.groups_of(ec2, lineage)
    return report


def newest_of_current_line(backups, current):
    """The newest backup of the current line of data (``backups`` newest first).

    A restore starts a new line: the snapshots of the generations it superseded (such as the one the terminate
    hook took while the group was fenced) are older data even when taken later. So: the newest snapshot of the
    current generation or later; else, for a restored volume without a snapshot of its own yet, the backup it
    was restored from; else the newest.
    """
    if not backups or not current:
        return backups[0] if backups else None
    own = [b for b in backups if b["generation"] >= current["generation"]]
    if own:
        return own[0]
    origin = [b for b in backups if b["snapshot_id"] == current.get("restored_from")]
    return origin[0] if origin else backups[0]


def choose_backup(ec2, lineage, backups, snapshot_id=None, image_id=None, before=None, current=None):
    """The completed volume snapshot a request means: by id, the one of an AMI's backup set, the newest taken
    before a time, or the newest of the current line (``newest_of_current_line``). ``NotFound``/``InvalidInput``
    say why none qualifies."""
    if len([x for x in (snapshot_id, image_id, before) if x]) > 1:
        raise InvalidInput("choose at most one of snapshot_id, image_id and before")
    candidates = backups
    wanted = "exists"
    if snapshot_id:
        candidates, wanted = [b for b in backups if b["snapshot_id"] == snapshot_id], f"is snapshot {snapshot_id}"
    elif image_id:
        with missing_as_not_found(
            ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"), f"AMI {image_id} does not exist", image_id=image_id
        ):
            images = call(ec2, "describe_images", ImageIds=[image_id])["Images"]
        image_tags = t.as_dict(images[0].get("Tags")) if images else {}
        if image_tags.get(t.LINEAGE) != lineage or not image_tags.get(t.BACKUP_SET):
            raise InvalidInput(
                f"{image_id} is not an ec2spot.autorecover backup of lineage {lineage} (it needs the tags "
                f"{t.LINEAGE}={lineage} and {t.BACKUP_SET})",
                image_id=image_id,
            )
        backup_set = image_tags[t.BACKUP_SET]
        candidates, wanted = (
            [b for b in backups if b["backup_set"] == backup_set],
            f"belongs to AMI {image_id} ({backup_set})",
        )
    elif before:
        limit = parse_time(before)
        candidates = [b for b in backups if parse_time(b["start_time"]) < limit]
        wanted = f"was taken before {_iso(limit)}"
    if not candidates:
        raise NotFound(
            f"no completed backup of lineage {lineage} {wanted} (a backup is a completed volume snapshot "
            f"tagged {t.LINEAGE}={lineage})",
            lineage=lineage,
        )
    if not (snapshot_id or image_id or before):
        return newest_of_current_line(candidates, current)
    return candidates[0]


def plan(ec2, lineage, source="backup", snapshot_id=None, image_id=None, before=None, now=None, group=None):
    """``describe_lineage`` plus the chosen backup (with its data age) and whether it is already restored; with
    ``source="describe"`` the description only. With ``group`` (the service's), ``foreign_groups`` names the other
    groups whose instances carry the lineage."""
    report = describe_lineage(ec2, lineage)
    report["chosen_backup"], report["already_restored"] = None, False
    report["foreign_groups"] = lineages.foreign_groups(report["groups"], group) if group else {}
    if source == "describe":
        return report
    if source == "backup":
        chosen = dict(choose_backup(ec2, lineage, report["backups"], snapshot_id, image_id, before, report["current"]))
        now = now or datetime.now(timezone.utc)
        chosen["data_age_seconds"] = round((now - parse_time(chosen["start_time"])).total_seconds(), 1)
        report["chosen_backup"] = chosen
        current = report["current"]
        holder = (current or {}).get("holder") or {}
        report["already_restored"] = bool(
            current and current["restored_from"] == chosen["snapshot_id"] and holder.get("live")
        )
    elif source != "current":
        raise InvalidInput(f"source must be backup, current or describe, got {source!r}")
    elif report["current"] is None:
        raise NotFound(f"lineage {lineage} has no volume to move; restore a backup instead", lineage=lineage)
    return report
