"""Rule 6: snapshots and images pending for a modeled time, ownership, use, paging."""

import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT
from sandbox.control import SandboxError

from .conftest import error_code


@pytest.fixture
def data_instance(ec2, launch):
    instance = launch()
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=20, VolumeType="gp3")["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
    CONTEXT.advance(5)
    return instance, volume


def snapshot_state(ec2, snapshot_id):
    return ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"]


def test_snapshot_stays_pending_for_a_time_scaled_to_size(ec2, box, data_instance):
    """moto 5.2.5 completes every snapshot at once; AWS keeps it pending for minutes."""
    volume = data_instance[1]
    snapshot = ec2.create_snapshot(VolumeId=volume)
    assert snapshot["State"] == "pending"
    modeled = CONTEXT.latency["snapshot_base"] + CONTEXT.latency["snapshot_per_gib"] * 20
    box.advance(modeled - 1)
    assert snapshot_state(ec2, snapshot["SnapshotId"]) == "pending"
    box.advance(1.5)
    assert snapshot_state(ec2, snapshot["SnapshotId"]) == "completed"


def test_a_failing_volume_s_next_snapshots_end_in_error_when_they_would_have_completed(ec2, box, data_instance):
    instance, volume = data_instance
    with pytest.raises(SandboxError, match="no such volume"):
        box.call("ec2/fail-snapshots", volume_id="vol-0000")
    box.call("ec2/fail-snapshots", volume_id=volume, times=1)
    [failing] = [
        s["SnapshotId"]
        for s in ec2.create_snapshots(InstanceSpecification={"InstanceId": instance})["Snapshots"]
        if s["VolumeId"] == volume
    ]
    healthy = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]  # only the next one fails
    box.advance(CONTEXT.latency["snapshot_base"] + CONTEXT.latency["snapshot_per_gib"] * 20 + 1)
    assert (snapshot_state(ec2, failing), snapshot_state(ec2, healthy)) == ("error", "completed")
    assert CONTEXT.records["failed_snapshots"] == [{"snapshot_id": failing, "volume_id": volume}]


def test_create_snapshots_items_carry_state_and_volume_tags(ec2, box, data_instance):
    """moto 5.2.5 omits State from CreateSnapshots items and ignores CopyTagsFromSource."""
    instance, volume = data_instance
    ec2.create_tags(Resources=[volume], Tags=[{"Key": "ec2spot:lineage", "Value": "db"}])
    answer = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": instance, "ExcludeBootVolume": True},
        CopyTagsFromSource="volume",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "set", "Value": "a"}]}],
    )
    [item] = answer["Snapshots"]
    assert item["State"] == "pending" and item["VolumeId"] == volume
    tags = {
        t["Key"]: t["Value"] for t in ec2.describe_snapshots(SnapshotIds=[item["SnapshotId"]])["Snapshots"][0]["Tags"]
    }
    assert tags == {"ec2spot:lineage": "db", "set": "a"}


def test_image_stays_pending_with_its_snapshots_tagged(ec2, box, data_instance):
    """moto 5.2.5 makes images available at once and refuses snapshot TagSpecifications."""
    instance = data_instance[0]
    image_id = ec2.create_image(
        InstanceId=instance,
        Name="pending-image",
        NoReboot=True,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "kind", "Value": "image"}]}],
    )["ImageId"]
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert image["State"] == "pending"
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    assert snapshot_state(ec2, snapshot_id) == "pending"
    box.settle()
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"] == "available"
    snapshot = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    assert snapshot["State"] == "completed" and {"Key": "kind", "Value": "image"} in snapshot["Tags"]


def test_snapshot_of_a_registered_image_cannot_be_deleted(ec2, box, data_instance):
    image_id = ec2.create_image(InstanceId=data_instance[0], Name="in-use-image", NoReboot=True)["ImageId"]
    box.settle()
    snapshot_id = ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    with pytest.raises(ClientError) as refused:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert error_code(refused) == "InvalidSnapshot.InUse"
    ec2.deregister_image(ImageId=image_id)
    ec2.delete_snapshot(SnapshotId=snapshot_id)


def test_resources_of_another_account_are_refused(ec2, box, data_instance):
    """moto 5.2.5 deletes another account's snapshot or image; AWS refuses."""
    snapshot_id = ec2.create_snapshot(VolumeId=data_instance[1])["SnapshotId"]
    image_id = ec2.create_image(InstanceId=data_instance[0], Name="foreign-image", NoReboot=True)["ImageId"]
    backend = CONTEXT.backend("ec2")
    backend.snapshots[snapshot_id].owner_id = "210987654321"
    backend.amis[image_id].owner_id = "210987654321"
    with pytest.raises(ClientError) as refused:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert error_code(refused) == "UnauthorizedOperation"
    with pytest.raises(ClientError) as refused:
        ec2.deregister_image(ImageId=image_id)
    assert error_code(refused) == "UnauthorizedOperation"
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]


def test_backdate_makes_backups_older_and_refuses_what_does_not_exist(ec2, box, data_instance):
    """A test control (no AWS call does this): last week's backups without waiting a week."""
    instance, volume = data_instance
    snapshot_id = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    image_id = ec2.create_image(InstanceId=instance, Name="aged-image", NoReboot=True)["ImageId"]
    box.settle()
    before = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["StartTime"]
    image_before = ec2.describe_images(ImageIds=[image_id])["Images"][0]["CreationDate"]

    box.call("ec2/backdate", ids=[snapshot_id, image_id], seconds=8 * 86400)
    after = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["StartTime"]
    image_after = ec2.describe_images(ImageIds=[image_id])["Images"][0]["CreationDate"]
    assert (before - after).total_seconds() == 8 * 86400
    assert image_after[:10] < image_before[:10]  # ISO dates: eight days earlier

    with pytest.raises(SandboxError, match="no such snapshot or image: snap-0000000000000000f"):
        box.call("ec2/backdate", ids=["snap-0000000000000000f"], seconds=60)
    with pytest.raises(SandboxError, match="seconds must be a positive number"):
        box.call("ec2/backdate", ids=[snapshot_id], seconds=-1)


def test_paging_honours_max_results_and_next_token(ec2, box):
    """moto 5.2.5 ignores MaxResults on DescribeVolumes/Snapshots/Images; AWS pages."""
    created = {
        ec2.create_volume(
            AvailabilityZone="us-east-1c",
            Size=1,
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "page", "Value": "yes"}]}],
        )["VolumeId"]
        for _count in range(12)
    }
    query = {"Filters": [{"Name": "tag:page", "Values": ["yes"]}], "MaxResults": 100}
    first = ec2.describe_volumes(**query)
    assert len(first["Volumes"]) == 5 and first["NextToken"]
    pages = ec2.get_paginator("describe_volumes").paginate(Filters=query["Filters"], PaginationConfig={"PageSize": 100})
    seen = [v["VolumeId"] for page in pages for v in page["Volumes"]]
    assert sorted(seen) == sorted(created)
    with pytest.raises(ClientError) as refused:
        ec2.describe_volumes(VolumeIds=sorted(created)[:1], MaxResults=5)
    assert error_code(refused) == "InvalidParameterCombination"
    with pytest.raises(ClientError) as refused:
        ec2.describe_snapshots(MaxResults=2)
    assert error_code(refused) == "InvalidParameterValue"
