"""KMS keys by ARN, and what a key's state does to EBS volumes made with it (sandbox/rules/kms.py)."""

import pytest
from botocore.exceptions import ClientError

from sandbox.rules.kms import CHECK_SECONDS, REASON

from .conftest import error_code


@pytest.fixture(scope="module")
def kms(aws):
    return aws("kms")


@pytest.fixture
def encrypted_snapshot(ec2, kms, box):
    """(key id, snapshot id): a completed snapshot of a volume encrypted with a key of its own."""
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    volume_id = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=True, KmsKeyId=key_id)["VolumeId"]
    snapshot_id = ec2.create_snapshot(VolumeId=volume_id)["SnapshotId"]
    box.settle()
    return key_id, snapshot_id


def volume_state(ec2, volume_id):
    """The volume's state, or the error code DescribeVolumes answers."""
    try:
        return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"]
    except ClientError as error:
        return error.response["Error"]["Code"]


def new_volume(ec2, source, key_id, snapshot_id):
    """CreateVolume from the snapshot (its key) or blank with ``KmsKeyId``."""
    if source == "snapshot":
        return ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=snapshot_id)
    return ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=True, KmsKeyId=key_id)


def make_unusable(kms, how, key_id):
    if how == "disabled":
        kms.disable_key(KeyId=key_id)
    else:
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    return kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]


def test_a_key_is_scheduled_for_deletion_and_back_by_its_arn(aws):
    kms = aws("kms")
    key = kms.create_key()["KeyMetadata"]
    scheduled = kms.schedule_key_deletion(KeyId=key["Arn"], PendingWindowInDays=7)
    assert scheduled["KeyId"].endswith(key["KeyId"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    kms.cancel_key_deletion(KeyId=key["Arn"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion"
    kms.enable_key(KeyId=key["Arn"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
    kms.disable_key(KeyId=key["Arn"])
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"


def test_snapshots_and_their_volumes_carry_the_key(ec2, encrypted_snapshot):
    """moto 5.2.5 gives neither a key; AWS encrypts both with the volume's key."""
    key_id, snapshot_id = encrypted_snapshot
    snapshot = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    assert (snapshot["Encrypted"], snapshot["KmsKeyId"]) == (True, key_id)
    restored = ec2.create_volume(AvailabilityZone="us-east-1a", SnapshotId=snapshot_id)
    assert (restored["Encrypted"], restored["KmsKeyId"], restored["State"]) == (True, key_id, "available")


@pytest.mark.parametrize("how, key_state", [("disabled", "Disabled"), ("deletion", "PendingDeletion")])
@pytest.mark.parametrize("source", ["snapshot", "kms_key_id"])
def test_an_unusable_key_lets_create_volume_answer_then_the_volume_is_gone(
    ec2, kms, box, encrypted_snapshot, how, key_state, source
):
    """AWS checks the key asynchronously: CreateVolume answers a creating volume, which then fails and is gone."""
    key_id, snapshot_id = encrypted_snapshot
    assert make_unusable(kms, how, key_id) == key_state
    answer = new_volume(ec2, source, key_id, snapshot_id)
    assert (answer["State"], answer["KmsKeyId"]) == ("creating", key_id)
    box.advance(CHECK_SECONDS - 0.5)
    assert volume_state(ec2, answer["VolumeId"]) == "creating"
    box.advance(0.5)
    assert volume_state(ec2, answer["VolumeId"]) == "InvalidVolume.NotFound"
    [failure] = box.records("kms_volume_failures")
    assert (failure["volume_id"], failure["kms_key_id"], failure["key_state"], failure["reason"]) == (
        answer["VolumeId"],
        key_id,
        key_state,
        REASON,
    )
    assert failure["snapshot_id"] == (snapshot_id if source == "snapshot" else None)


@pytest.mark.parametrize("how", ["disabled", "deletion"])
def test_enable_key_restores_volume_creation(ec2, kms, box, encrypted_snapshot, how):
    """A cancelled deletion leaves the key Disabled: volumes still fail until EnableKey."""
    key_id, snapshot_id = encrypted_snapshot
    make_unusable(kms, how, key_id)
    if how == "deletion":
        kms.cancel_key_deletion(KeyId=key_id)
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
        failed = new_volume(ec2, "snapshot", key_id, snapshot_id)["VolumeId"]
        box.advance(CHECK_SECONDS)
        assert volume_state(ec2, failed) == "InvalidVolume.NotFound"
    kms.enable_key(KeyId=key_id)
    restored = new_volume(ec2, "snapshot", key_id, snapshot_id)
    box.advance(CHECK_SECONDS)
    assert (restored["State"], volume_state(ec2, restored["VolumeId"])) == ("available", "available")


def test_a_key_that_does_not_exist_fails_the_volume_too(ec2, box):
    answer = ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=1,
        Encrypted=True,
        KmsKeyId="arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    )
    box.advance(CHECK_SECONDS)
    assert volume_state(ec2, answer["VolumeId"]) == "InvalidVolume.NotFound"
    assert box.records("kms_volume_failures")[0]["key_state"] is None


def test_a_creating_volume_cannot_be_attached(ec2, kms, box, launch, encrypted_snapshot):
    key_id, snapshot_id = encrypted_snapshot
    kms.disable_key(KeyId=key_id)
    volume_id = new_volume(ec2, "snapshot", key_id, snapshot_id)["VolumeId"]
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=launch("us-east-1a"), Device="/dev/sdf")
    assert error_code(refused) == "IncorrectState"
