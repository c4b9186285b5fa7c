"""AMIs: DeregisterImage with DeleteAssociatedSnapshots, and deregistration protection."""

import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT

from .conftest import error_code


@pytest.fixture
def image(ec2, box, launch):
    """A fresh available AMI of a fresh instance, and its one snapshot."""

    def _image(name):
        image_id = ec2.create_image(InstanceId=launch(), Name=name, NoReboot=True)["ImageId"]
        box.settle()
        [mapping] = ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"]
        return image_id, mapping["Ebs"]["SnapshotId"]

    return _image


def snapshot_exists(ec2, snapshot_id):
    return bool(
        ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])[
            "Snapshots"
        ]
    )


def test_delete_associated_snapshots_deletes_them_with_the_image(ec2, image):
    """moto 5.2 accepts the flag and keeps every snapshot; AWS deletes them and says so per snapshot."""
    image_id, snapshot_id = image("with-snapshots")
    answer = ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    assert answer["DeleteSnapshotResults"] == [{"SnapshotId": snapshot_id, "ReturnCode": "success"}]
    assert not snapshot_exists(ec2, snapshot_id)
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"] == []


def test_without_the_flag_the_snapshots_stay(ec2, image):
    image_id, snapshot_id = image("keeps-snapshots")
    answer = ec2.deregister_image(ImageId=image_id)
    assert "DeleteSnapshotResults" not in answer and snapshot_exists(ec2, snapshot_id)


def test_a_snapshot_another_image_uses_is_skipped_and_the_image_still_goes(ec2, image):
    first, shared = image("shares-first")
    second = ec2.register_image(
        Name="shares-second",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": shared}}],
    )["ImageId"]
    backend = CONTEXT.backend("ec2")
    backend.amis[second].ebs_snapshot = backend.snapshots[shared]  # moto registers a fresh snapshot instead
    answer = ec2.deregister_image(ImageId=first, DeleteAssociatedSnapshots=True)
    assert answer["DeleteSnapshotResults"] == [{"SnapshotId": shared, "ReturnCode": "skipped"}]
    assert snapshot_exists(ec2, shared)
    answer = ec2.deregister_image(ImageId=second, DeleteAssociatedSnapshots=True)
    assert answer["DeleteSnapshotResults"] == [{"SnapshotId": shared, "ReturnCode": "success"}]


def test_protection_refuses_deregistration_until_disabled(ec2, image):
    """moto 5.2 has no deregistration protection (the calls are not implemented)."""
    image_id, snapshot_id = image("protected")
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["DeregistrationProtection"] == "disabled"
    assert ec2.enable_image_deregistration_protection(ImageId=image_id)["Return"] == "enabled-without-cooldown"
    assert (
        ec2.describe_images(ImageIds=[image_id])["Images"][0]["DeregistrationProtection"] == "enabled-without-cooldown"
    )
    with pytest.raises(ClientError) as refused:
        ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    assert error_code(refused) == "OperationNotPermitted"
    assert snapshot_exists(ec2, snapshot_id)
    assert ec2.disable_image_deregistration_protection(ImageId=image_id)["Return"] == "disabled"
    ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)


def test_protection_with_cooldown_lasts_a_day_after_the_disable(ec2, box, image):
    image_id = image("cooldown")[0]
    assert (
        ec2.enable_image_deregistration_protection(ImageId=image_id, WithCooldown=True)["Return"]
        == "enabled-with-cooldown"
    )
    assert ec2.disable_image_deregistration_protection(ImageId=image_id)["Return"].startswith("disabled after ")
    box.advance(23 * 3600)
    with pytest.raises(ClientError) as refused:
        ec2.deregister_image(ImageId=image_id)
    assert error_code(refused) == "OperationNotPermitted"
    box.advance(3601)
    assert ec2.describe_images(ImageIds=[image_id])["Images"][0]["DeregistrationProtection"] == "disabled"
    ec2.deregister_image(ImageId=image_id)


def test_another_accounts_image_is_refused_before_its_protection(ec2, image):
    image_id = image("foreign")[0]
    CONTEXT.backend("ec2").amis[image_id].owner_id = "210987654321"
    for call in (ec2.enable_image_deregistration_protection, ec2.deregister_image):
        with pytest.raises(ClientError) as refused:
            call(ImageId=image_id)
        assert error_code(refused) == "UnauthorizedOperation"
