# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention: which backup sets a policy expires, and pruning them.

A backup set is the snapshots and the AMI one ``backup_instance`` call took (same
``ec2spot:backup-set`` and source instance). Sets are grouped by lineage (by source
instance when untagged) and judged within their group:

* a set is expired when it is beyond the newest ``keep_newest`` or older than ``max_age``;
* the newest *complete* set of each group is never expired, whatever the policy says,
  so a retention run can never leave a lineage with nothing to restore;
* a set still in progress is never expired (it may be the newest soon);
* a set whose AMI any launch template version references is kept (deleting it would
  break the group's next launch).

Only resources tagged ``ec2spot:managed-by=ec2spot.autorecover`` are considered.
Deregistering an AMI deletes its snapshots too (seed 001), unless another image uses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from .aws import call, paginate
from .errors import AwsApiError, InvalidInput
from . import tags as t


@dataclass
class BackupSet:
    name: str
    source_instance: str
    lineage: str | None
    created: datetime
    snapshot_ids: list = field(default_factory=list)
    image_ids: list = field(default_factory=list)
    complete: bool = True

    @property
    def group(self):
        return self.lineage or self.source_instance

    def to_dict(self):
        summary = asdict(self)
        summary["created"] = self.created.isoformat()
        return summary


def _parse_time(value):
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def list_backup_sets(ec2, scope_tags):
    """Backup sets among resources carrying ``scope_tags`` (plus our managed-by tag)."""
    query = t.filters({**scope_tags, t.MANAGED_BY: t.MANAGER})
    sets = {}

    def entry(resource_tags, created):
        key = (resource_tags.get(t.BACKUP_SET), resource_tags.get(t.SOURCE_INSTANCE))
        if None in key:
            return None
        found = sets.setdefault(key, BackupSet(name=key[0], source_instance=key[1],
                                               lineage=resource_tags.get(t.LINEAGE), created=created))
        found.created = min(found.created, created)
        found.lineage = found.lineage or resource_tags.get(t.LINEAGE)
        return found

    for snapshot in paginate(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"],
                             Filters=query + t.filters({t.KIND: "volume"})):
        backup_set = entry(t.as_dict(snapshot.get("Tags")), snapshot["StartTime"])
        if backup_set:
            backup_set.snapshot_ids.append(snapshot["SnapshotId"])
            backup_set.complete = backup_set.complete and snapshot["State"] == "completed"
    for image in paginate(ec2, "describe_images", "Images", Owners=["self"], Filters=query):
        backup_set = entry(t.as_dict(image.get("Tags")), _parse_time(image["CreationDate"]))
        if backup_set:
            backup_set.image_ids.append(image["ImageId"])
            backup_set.complete = backup_set.complete and image["State"] == "available"
    return sorted(sets.values(), key=lambda s: (s.created, s.name), reverse=True)


def images_in_launch_templates(ec2):
    """Image ids that any version of any launch template in the region uses."""
    used = {}
    for template in paginate(ec2, "describe_launch_templates", "LaunchTemplates"):
        for version in paginate(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                                LaunchTemplateId=template["LaunchTemplateId"]):
            image_id = version.get("LaunchTemplateData", {}).get("ImageId")
            if image_id:
                used.setdefault(image_id, f"{template['LaunchTemplateName']} version {version['VersionNumber']}")
    return used


def validate_policy(keep_newest=None, max_age=None):
    """Refuse a policy that would delete every backup or makes no sense (before anything runs)."""
    if keep_newest is not None and keep_newest < 1:
        raise InvalidInput(f"keep_newest must be at least 1, got {keep_newest}")
    if max_age is not None and max_age <= 0:
        raise InvalidInput(f"max_age must be positive seconds, got {max_age}")


def select_expired(backup_sets, keep_newest=None, max_age=None, now=None, image_users=None):
    """Split ``backup_sets`` into (expired, kept) under the policy; ``kept`` maps names to a reason.

    Pure: no AWS calls, so every rule is tested directly. ``max_age`` is in seconds.
    """
    validate_policy(keep_newest, max_age)
    now = now or datetime.now(timezone.utc)
    image_users = image_users or {}
    expired, kept = [], {}
    groups = {}
    for backup_set in sorted(backup_sets, key=lambda s: (s.created, s.name), reverse=True):
        groups.setdefault(backup_set.group, []).append(backup_set)
    for members in groups.values():
        newest_complete = next((s for s in members if s.complete), None)
        for rank, backup_set in enumerate(members):
            label = f"{backup_set.name}/{backup_set.source_instance}"
            too_many = keep_newest is not None and rank >= keep_newest
            too_old = max_age is not None and (now - backup_set.created).total_seconds() > max_age
            if not (too_many or too_old):
                continue
            if backup_set is newest_complete:
                kept[label] = f"newest complete backup of {backup_set.group}"
            elif not backup_set.complete:
                kept[label] = "still in progress"
            elif any(i in image_users for i in backup_set.image_ids):
                users = [image_users[i] for i in backup_set.image_ids if i in image_users]
                kept[label] = f"its image is used by launch template {', '.join(users)}"
            else:
                expired.append(backup_set)
    return expired, kept


def prune(ec2, expired, dry_run=False):
    """Delete expired sets: deregister AMIs (then their snapshots), delete volume snapshots.

    Returns (deleted_images, deleted_snapshots, skipped) where ``skipped`` maps a resource
    to why it stayed (for example a snapshot another image still uses).
    """
    deleted_images, deleted_snapshots, skipped = [], [], {}
    for backup_set in expired:
        image_snapshots = []
        for image_id in backup_set.image_ids:
            images = call(ec2, "describe_images", ImageIds=[image_id])["Images"]
            image_snapshots += [m["Ebs"]["SnapshotId"] for image in images for m in image.get("BlockDeviceMappings", [])
                                if m.get("Ebs", {}).get("SnapshotId")]
            if not dry_run:
                call(ec2, "deregister_image", ImageId=image_id)
            deleted_images.append(image_id)
        for snapshot_id in image_snapshots + backup_set.snapshot_ids:
            if not dry_run:
                try:
                    call(ec2, "delete_snapshot", SnapshotId=snapshot_id)
                except AwsApiError as exc:
                    if exc.aws_code != "InvalidSnapshot.InUse":
                        raise
                    skipped[snapshot_id] = "in use by another image"
                    continue
            deleted_snapshots.append(snapshot_id)
    return deleted_images, deleted_snapshots, skipped
