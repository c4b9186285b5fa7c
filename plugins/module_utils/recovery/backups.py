# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of an instance: one consistent snapshot set of its data volumes, and an AMI.

``CreateSnapshots`` snapshots all of an instance's volumes at one point in time (crash-
consistent across volumes, which separate ``CreateSnapshot`` calls are not). Each snapshot
keeps its volume's tags (lineage, generation) and gains the backup set's name and what a
restore needs when the volume is gone (type, IOPS, throughput, device).

A backup set is named; a set of that name already taken for the instance is not taken
again, which makes backups idempotent and a retried call harmless. The AMI (optional) is
created without reboot (seed 001), tagged ``AutoBackup=true``; its own snapshots are tagged
``ec2spot:kind=image`` so restores never mistake them for the lineage's volume snapshots.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .aws import SYSTEM_CLOCK, call, paginate, wait_until
from .errors import InvalidInput
from .instances import describe_instance
from . import tags as t

SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class BackupResult:
    changed: bool
    instance_id: str
    backup_set: str
    snapshots: list = field(default_factory=list)  # [{snapshot_id, volume_id, lineage, generation, state}]
    image_id: str | None = None
    image_state: str | None = None
    created_snapshots: bool = False
    created_image: bool = False

    def to_dict(self):
        return asdict(self)


def validate_set_name(name):
    if not isinstance(name, str) or not SET_NAME.match(name):
        raise InvalidInput(f"invalid backup name {name!r}: use up to 100 letters, digits, '.', '_' or '-'")
    return name


def _set_filters(set_name, instance_id):
    return t.filters({t.BACKUP_SET: set_name, t.SOURCE_INSTANCE: instance_id, t.MANAGED_BY: t.MANAGER})


def existing_set(ec2, set_name, instance_id):
    """Snapshots (kind volume) and images already taken for this set and instance."""
    snapshots = list(
        paginate(
            ec2,
            "describe_snapshots",
            "Snapshots",
            OwnerIds=["self"],
            Filters=_set_filters(set_name, instance_id) + t.filters({t.KIND: "volume"}),
        )
    )
    images = list(
        paginate(ec2, "describe_images", "Images", Owners=["self"], Filters=_set_filters(set_name, instance_id))
    )
    return snapshots, images


def _snapshot_summary(snapshot):
    snapshot_tags = t.as_dict(snapshot.get("Tags"))
    return {
        "snapshot_id": snapshot["SnapshotId"],
        "volume_id": snapshot_tags.get(t.SOURCE_VOLUME, snapshot.get("VolumeId")),
        "lineage": snapshot_tags.get(t.LINEAGE),
        "generation": t.generation_of(snapshot_tags),
        "state": snapshot.get("State", "pending"),
    }


def _data_volumes(ec2, instance, include_boot):
    root = instance.get("RootDeviceName")
    mappings = [
        m for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m and (include_boot or m["DeviceName"] != root)
    ]
    if not mappings:
        return {}
    by_id = {
        v["VolumeId"]: v
        for v in paginate(ec2, "describe_volumes", "Volumes", VolumeIds=[m["Ebs"]["VolumeId"] for m in mappings])
    }
    return {m["Ebs"]["VolumeId"]: (m["DeviceName"], by_id[m["Ebs"]["VolumeId"]]) for m in mappings}


def backup_instance(
    ec2,
    instance_id,
    set_name,
    create_image=False,
    include_boot_volume=False,
    extra_tags=None,
    dry_run=False,
    wait=False,
    timeout=3600,
    clock=SYSTEM_CLOCK,
):
    """Take backup set ``set_name`` of one instance unless it exists. Returns ``BackupResult``."""
    validate_set_name(set_name)
    instance = describe_instance(ec2, instance_id)
    if instance["State"]["Name"] in ("shutting-down", "terminated"):
        raise InvalidInput(
            f"instance {instance_id} is {instance['State']['Name']}; back up its volumes by lineage instead",
            instance_id=instance_id,
        )
    volumes = _data_volumes(ec2, instance, include_boot_volume)
    if not volumes:
        raise InvalidInput(
            f"instance {instance_id} has no data volumes to back up (only its root volume); "
            f"set include_boot_volume to snapshot the root volume",
            instance_id=instance_id,
        )
    instance_tags = t.as_dict(instance.get("Tags"))
    result = BackupResult(changed=False, instance_id=instance_id, backup_set=set_name)
    snapshots, images = existing_set(ec2, set_name, instance_id)
    result.snapshots = [_snapshot_summary(s) for s in snapshots]
    if images:
        result.image_id, result.image_state = images[0]["ImageId"], images[0]["State"]
    need_snapshots, need_image = not snapshots, create_image and not images
    result.changed = need_snapshots or need_image
    if dry_run or not result.changed:
        return result

    set_tags = {**(extra_tags or {}), t.BACKUP_SET: set_name, t.SOURCE_INSTANCE: instance_id, t.MANAGED_BY: t.MANAGER}
    if need_snapshots:
        response = call(
            ec2,
            "create_snapshots",
            InstanceSpecification={"InstanceId": instance_id, "ExcludeBootVolume": not include_boot_volume},
            Description=f"ec2spot.autorecover backup {set_name} of {instance_id}",
            CopyTagsFromSource="volume",
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": t.as_list({**set_tags, t.KIND: "volume"})}],
        )
        for info in response["Snapshots"]:
            device, volume = volumes.get(info["VolumeId"], (None, None))
            per_volume = {t.SOURCE_VOLUME: info["VolumeId"]}
            if volume:
                per_volume.update({t.VOLUME_TYPE: volume["VolumeType"], t.DEVICE: device})
                if volume.get("Iops"):
                    per_volume[t.VOLUME_IOPS] = volume["Iops"]
                if volume.get("Throughput"):
                    per_volume[t.VOLUME_THROUGHPUT] = volume["Throughput"]
            # CopyTagsFromSource copied the volume's tags, including its lineage and generation.
            call(ec2, "create_tags", Resources=[info["SnapshotId"]], Tags=t.as_list(per_volume))
        result.created_snapshots = True
        snapshots = existing_set(ec2, set_name, instance_id)[0]
        result.snapshots = [_snapshot_summary(s) for s in snapshots]
    if need_image:
        image_tags, image_snapshot_tags = {**set_tags, t.AUTO_BACKUP: "true"}, {**set_tags, t.KIND: "image"}
        if instance_tags.get(t.LINEAGE) and t.LINEAGE not in set_tags:
            # The AMI's snapshots carry the lineage too: the handler's policy deletes only snapshots of its
            # lineages, and DeregisterImage(DeleteAssociatedSnapshots) deletes them with the AMI.
            image_tags[t.LINEAGE] = image_snapshot_tags[t.LINEAGE] = instance_tags[t.LINEAGE]
        result.image_id = call(
            ec2,
            "create_image",
            InstanceId=instance_id,
            Name=f"{set_name}-{instance_id}",
            Description=f"ec2spot.autorecover backup {set_name} of {instance_id} (no reboot)",
            NoReboot=True,
            TagSpecifications=[
                {"ResourceType": "image", "Tags": t.as_list(image_tags)},
                {"ResourceType": "snapshot", "Tags": t.as_list(image_snapshot_tags)},
            ],
        )["ImageId"]
        result.image_state, result.created_image = "pending", True
    if wait:
        wait_for_backup(ec2, result, timeout, clock)
    return result


def wait_for_backup(ec2, result, timeout, clock=SYSTEM_CLOCK):
    """Wait until every snapshot of the set is completed and its image available."""
    ids = [s["snapshot_id"] for s in result.snapshots]
    if ids:
        done = wait_until(
            lambda: list(paginate(ec2, "describe_snapshots", "Snapshots", SnapshotIds=ids)),
            lambda found: all(s["State"] == "completed" for s in found),
            f"snapshots {', '.join(ids)} to complete",
            timeout,
            clock,
            is_failed=lambda found: next(
                (f"snapshot {s['SnapshotId']} failed" for s in found if s["State"] == "error"), None
            ),
        )
        result.snapshots = [_snapshot_summary(s) for s in done]
    if result.image_id:
        image = wait_until(
            lambda: call(ec2, "describe_images", ImageIds=[result.image_id])["Images"][0],
            lambda found: found["State"] == "available",
            f"image {result.image_id} to become available",
            timeout,
            clock,
            is_failed=lambda found: (
                found["State"] in ("failed", "error") and f"image {result.image_id} {found['State']}"
            ),
        )
        result.image_state = image["State"]
