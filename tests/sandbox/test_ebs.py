"""Rule 1: EBS attach and detach as AWS does them (sandbox/rules/ebs.py)."""

import pytest
from botocore.exceptions import ClientError

from .conftest import error_code


@pytest.fixture
def volume(ec2):
    def _volume(zone="us-east-1a"):
        return ec2.create_volume(AvailabilityZone=zone, Size=8, VolumeType="gp3")["VolumeId"]

    return _volume


def attachment_state(ec2, volume_id):
    described = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return described["State"], [(a["InstanceId"], a["State"]) for a in described["Attachments"]]


def test_attach_across_zones_is_refused(ec2, box, launch, volume):
    """moto 5.2.5 attaches a volume to an instance in another zone; AWS refuses."""
    instance, vol = launch("us-east-1b"), volume("us-east-1a")
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=vol, InstanceId=instance, Device="/dev/sdf")
    assert error_code(refused) == "InvalidVolume.ZoneMismatch"
    assert attachment_state(ec2, vol) == ("available", [])


def test_attach_of_an_in_use_volume_is_refused(ec2, box, launch, volume):
    """moto 5.2.5 attaches an in-use volume to a second instance; AWS refuses."""
    first, second, vol = launch(), launch(), volume()
    ec2.attach_volume(VolumeId=vol, InstanceId=first, Device="/dev/sdf")
    box.advance(5)
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=vol, InstanceId=second, Device="/dev/sdf")
    assert error_code(refused) == "VolumeInUse"
    assert attachment_state(ec2, vol) == ("in-use", [(first, "attached")])


def test_attach_at_a_device_name_in_use_is_refused(ec2, box, launch, volume):
    """moto 5.2.5 replaces the mapping at a used device name; AWS refuses."""
    instance, a, b = launch(), volume(), volume()
    ec2.attach_volume(VolumeId=a, InstanceId=instance, Device="/dev/sdf")
    for device in ("/dev/sdf", "/dev/xvdf"):
        with pytest.raises(ClientError) as refused:
            ec2.attach_volume(VolumeId=b, InstanceId=instance, Device=device)
        assert error_code(refused) == "InvalidParameterValue"
        assert "already in use" in refused.value.response["Error"]["Message"]
    assert attachment_state(ec2, b) == ("available", [])


def test_attach_passes_through_attaching_for_the_modeled_time(ec2, box, launch, volume):
    """moto 5.2.5 attaches instantly; AWS reports 'attaching' for seconds."""
    instance, vol = launch(), volume()
    answer = ec2.attach_volume(VolumeId=vol, InstanceId=instance, Device="/dev/sdg")
    assert answer["State"] == "attaching"
    assert attachment_state(ec2, vol) == ("in-use", [(instance, "attaching")])
    box.advance(1.9)
    assert attachment_state(ec2, vol) == ("in-use", [(instance, "attaching")])
    box.advance(0.2)
    assert attachment_state(ec2, vol) == ("in-use", [(instance, "attached")])


def test_detach_without_instance_id_passes_through_detaching(ec2, box, launch, volume):
    """moto 5.2.5 crashes on DetachVolume without InstanceId; AWS accepts it."""
    instance, vol = launch(), volume()
    ec2.attach_volume(VolumeId=vol, InstanceId=instance, Device="/dev/sdh")
    box.advance(5)
    answer = ec2.detach_volume(VolumeId=vol)
    assert answer["State"] == "detaching" and answer["InstanceId"] == instance
    assert attachment_state(ec2, vol) == ("in-use", [(instance, "detaching")])
    box.advance(2.1)
    assert attachment_state(ec2, vol) == ("available", [])
    instance_devices = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert "/dev/sdh" not in [m["DeviceName"] for m in instance_devices["BlockDeviceMappings"]]


def test_force_is_recorded_for_every_detach(ec2, box, launch, volume):
    """moto 5.2.5 drops Force; the sandbox records it so tests can prove it was never used."""
    instance, gentle, forced = launch(), volume(), volume()
    ec2.attach_volume(VolumeId=gentle, InstanceId=instance, Device="/dev/sdf")
    ec2.attach_volume(VolumeId=forced, InstanceId=instance, Device="/dev/sdg")
    box.advance(5)
    ec2.detach_volume(VolumeId=gentle, InstanceId=instance)
    ec2.detach_volume(VolumeId=forced, Force=True)
    assert [(r["volume_id"], r["force"]) for r in box.records("detaches")] == [(gentle, False), (forced, True)]


def test_attach_to_a_terminated_instance_is_refused(ec2, box, launch, volume):
    instance, vol = launch(), volume()
    ec2.terminate_instances(InstanceIds=[instance])
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=vol, InstanceId=instance, Device="/dev/sdf")
    assert error_code(refused) == "IncorrectInstanceState"


def test_a_blank_volume_is_described_with_an_empty_snapshot_id(ec2):
    """AWS describes every volume with a SnapshotId ("" when blank); amazon.aws.ec2_vol_info relies on it."""
    volume_id = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, VolumeType="gp3")["VolumeId"]
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["SnapshotId"] == ""
