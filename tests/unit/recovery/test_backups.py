"""backup_instance and retention: consistent snapshot sets, AMIs, and what pruning may delete."""

from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import errors
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.retention import (
    BackupSet, images_in_launch_templates, list_backup_sets, prune, select_expired)

from sandbox.context import CONTEXT

from .conftest import backdate_snapshot, tags_of


def test_backup_snapshots_every_data_volume_with_lineage_and_set_tags(ec2, launch, data_volume, clock):
    instance = launch(lineage="pgdata")
    data = data_volume(attach_to=instance, generation=3)
    logs = data_volume(attach_to=instance, lineage="pglogs", device="/dev/sdg", generation=1)

    result = backup_instance(ec2, instance, "pgdata-20261124", clock=clock)

    assert result.changed and result.created_snapshots and not result.created_image
    assert sorted((s["volume_id"], s["lineage"], s["generation"]) for s in result.snapshots) == sorted(
        [(data, "pgdata", 3), (logs, "pglogs", 1)])
    snaps = ec2.describe_snapshots(SnapshotIds=[s["snapshot_id"] for s in result.snapshots])["Snapshots"]
    for snap in snaps:
        snap_tags = tags_of(snap)
        assert snap_tags[t.BACKUP_SET] == "pgdata-20261124" and snap_tags[t.SOURCE_INSTANCE] == instance
        assert snap_tags[t.KIND] == "volume" and snap_tags[t.MANAGED_BY] == t.MANAGER
        assert snap_tags[t.VOLUME_TYPE] == "gp3" and snap_tags[t.VOLUME_IOPS] == "4000"
        assert snap_tags[t.DEVICE] in ("/dev/sdf", "/dev/sdg")
    # The root volume is not part of a data backup.
    assert {s["VolumeId"] for s in snaps} == {data, logs}


def test_backup_of_the_same_set_twice_takes_nothing_new(ec2, launch, data_volume, clock):
    instance = launch()
    data_volume(attach_to=instance)
    first = backup_instance(ec2, instance, "nightly", create_image=True, clock=clock)
    second = backup_instance(ec2, instance, "nightly", create_image=True, clock=clock)
    assert first.changed and not second.changed
    assert second.image_id == first.image_id
    assert sorted(s["snapshot_id"] for s in second.snapshots) == sorted(s["snapshot_id"] for s in first.snapshots)


def test_backup_image_is_taken_without_reboot_and_tagged_for_operators(ec2, launch, data_volume, clock):
    instance = launch(lineage="pgdata")
    data_volume(attach_to=instance)
    seen = []
    ec2.meta.events.register("provide-client-params.ec2.CreateImage", lambda params, **_: seen.append(params))
    result = backup_instance(ec2, instance, "nightly", create_image=True, wait=True, timeout=3600, clock=clock)
    assert seen[0]["NoReboot"] is True and seen[0]["Name"] == f"nightly-{instance}"
    image = ec2.describe_images(ImageIds=[result.image_id])["Images"][0]
    assert tags_of(image)[t.AUTO_BACKUP] == "true" and tags_of(image)[t.LINEAGE] == "pgdata"
    assert result.image_state == "available"


def test_dry_run_backup_creates_nothing(ec2, launch, data_volume, clock):
    instance = launch()
    data_volume(attach_to=instance)
    result = backup_instance(ec2, instance, "nightly", create_image=True, dry_run=True, clock=clock)
    assert result.changed
    assert ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": f"tag:{t.MANAGED_BY}", "Values": [t.MANAGER]}])["Snapshots"] == []
    assert [i["Name"] for i in ec2.describe_images(Owners=["self"])["Images"]] == ["sandbox-al2023-app"]


def test_instance_without_data_volumes_is_refused(ec2, launch, clock):
    with pytest.raises(errors.InvalidInput, match="has no data volumes to back up"):
        backup_instance(ec2, launch(), "nightly", clock=clock)


def test_bad_set_name_is_refused(ec2, launch, clock):
    with pytest.raises(errors.InvalidInput, match="invalid backup name"):
        backup_instance(ec2, launch(), "no spaces please", clock=clock)


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def backup_set(name, days_old, lineage="pgdata", complete=True, images=()):
    return BackupSet(name=name, source_instance="i-1", lineage=lineage, created=NOW - timedelta(days=days_old),
                     snapshot_ids=[f"snap-{name}"], image_ids=list(images), complete=complete)


def names(sets):
    return sorted(s.name for s in sets)


def test_retention_by_count_keeps_the_newest_n():
    sets = [backup_set(f"d{d}", d) for d in range(5)]
    expired, kept = select_expired(sets, keep_newest=2, now=NOW)
    assert names(expired) == ["d2", "d3", "d4"] and kept == {}


def test_retention_by_age_expires_older_than_max_age():
    sets = [backup_set(f"d{d}", d) for d in (0, 3, 8, 10)]
    expired = select_expired(sets, max_age=7 * 86400, now=NOW)[0]
    assert names(expired) == ["d10", "d8"]


def test_retention_never_deletes_the_newest_complete_backup_of_a_lineage():
    sets = [backup_set("pending", 0, complete=False), backup_set("old", 30)]
    expired, kept = select_expired(sets, keep_newest=1, max_age=86400, now=NOW)
    assert expired == []
    assert kept == {"old/i-1": "newest complete backup of pgdata"}


def test_retention_never_deletes_in_progress_or_launch_template_images():
    sets = [backup_set("new", 0), backup_set("busy", 9, complete=False), backup_set("lt", 10, images=["ami-lt"])]
    expired, kept = select_expired(sets, max_age=7 * 86400, now=NOW, image_users={"ami-lt": "fleet version 3"})
    assert expired == []
    assert kept == {"busy/i-1": "still in progress", "lt/i-1": "its image is used by launch template fleet version 3"}


def test_retention_judges_each_lineage_on_its_own():
    sets = [backup_set("a0", 0, "a"), backup_set("a1", 1, "a"), backup_set("b5", 5, "b")]
    expired, kept = select_expired(sets, keep_newest=1, now=NOW)
    assert names(expired) == ["a1"] and kept == {}


@pytest.mark.parametrize("policy, message", [({"keep_newest": 0}, "keep_newest must be at least 1"),
                                             ({"max_age": 0}, "max_age must be positive")])
def test_retention_rejects_nonsense_policies(policy, message):
    with pytest.raises(errors.InvalidInput, match=message):
        select_expired([], now=NOW, **policy)


def test_prune_deregisters_images_and_deletes_their_snapshots(ec2, launch, data_volume, clock):
    instance = launch(lineage="pgdata")
    data_volume(attach_to=instance)
    old = backup_instance(ec2, instance, "old", create_image=True, clock=clock)
    new = backup_instance(ec2, instance, "new", create_image=True, clock=clock)
    for snap in old.snapshots:
        backdate_snapshot(snap["snapshot_id"], 86400)
    image_snapshots = [m["Ebs"]["SnapshotId"] for m in
                       ec2.describe_images(ImageIds=[old.image_id])["Images"][0]["BlockDeviceMappings"] if "Ebs" in m]

    CONTEXT.settle()  # both backups complete (AWS: minutes)
    sets = list_backup_sets(ec2, {t.LINEAGE: "pgdata"})
    assert [s.name for s in sets] == ["new", "old"]
    expired = select_expired(sets, keep_newest=1, now=datetime.now(timezone.utc))[0]
    images, snapshots, skipped = prune(ec2, expired)

    assert images == [old.image_id] and skipped == {}
    assert sorted(snapshots) == sorted(image_snapshots + [s["snapshot_id"] for s in old.snapshots])
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not remaining & set(snapshots)
    assert {s["snapshot_id"] for s in new.snapshots} <= remaining
    assert ec2.describe_images(ImageIds=[new.image_id])["Images"]


def test_images_used_by_launch_templates_are_found(ec2, world):
    ec2.create_launch_template(LaunchTemplateName="fleet", LaunchTemplateData={"ImageId": world["image_id"]})
    assert images_in_launch_templates(ec2) == {world["image_id"]: "fleet version 1"}
