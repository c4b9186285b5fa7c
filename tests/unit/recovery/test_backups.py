"""backup_instance: consistent snapshot sets and AMIs (retention: test_retention.py)."""

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import errors
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance

from .conftest import tags_of


def test_backup_snapshots_every_data_volume_with_lineage_and_set_tags(ec2, launch, data_volume, clock):
    instance = launch(lineage="pgdata")
    data = data_volume(attach_to=instance, generation=3)
    logs = data_volume(attach_to=instance, lineage="pglogs", device="/dev/sdg", generation=1)

    result = backup_instance(ec2, instance, "pgdata-20261124", clock=clock)

    assert result.changed and result.created_snapshots and not result.created_image
    assert sorted((s["volume_id"], s["lineage"], s["generation"]) for s in result.snapshots) == sorted(
        [(data, "pgdata", 3), (logs, "pglogs", 1)]
    )
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
    # The AMI's own snapshots carry the lineage too: the handler's policy deletes only snapshots of its lineages.
    image_snapshots = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{t.KIND}", "Values": ["image"]}]
    )["Snapshots"]
    assert image_snapshots and {tags_of(s)[t.LINEAGE] for s in image_snapshots} == {"pgdata"}


def test_dry_run_backup_creates_nothing(ec2, launch, data_volume, clock):
    instance = launch()
    data_volume(attach_to=instance)
    result = backup_instance(ec2, instance, "nightly", create_image=True, dry_run=True, clock=clock)
    assert result.changed
    assert (
        ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": f"tag:{t.MANAGED_BY}", "Values": [t.MANAGER]}])[
            "Snapshots"
        ]
        == []
    )
    assert [i["Name"] for i in ec2.describe_images(Owners=["self"])["Images"]] == ["sandbox-al2023-app"]


def test_instance_without_data_volumes_is_refused(ec2, launch, clock):
    with pytest.raises(errors.InvalidInput, match="has no data volumes to back up"):
        backup_instance(ec2, launch(), "nightly", clock=clock)


def test_bad_set_name_is_refused(ec2, launch, clock):
    with pytest.raises(errors.InvalidInput, match="invalid backup name"):
        backup_instance(ec2, launch(), "no spaces please", clock=clock)
