"""The recovery core against the strict sandbox server: what moto alone would let pass.

moto 5.2.5 would happily attach a volume across zones; the sandbox refuses as AWS does.
These tests show the core never relies on that: it restores in the target's zone, releases
volumes without forcing, and waits out the modeled attach and snapshot times.
"""

import pytest
from botocore.exceptions import ClientError

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.volumes import move_lineage_volume
from sandbox import world
from sandbox.clock import CONTEXT, CoreClock

from .conftest import error_code


@pytest.fixture
def lineage_volume(ec2, launch):
    def _make(name, zone="us-east-1a"):
        holder = launch(
            zone, TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": t.LINEAGE, "Value": name}]}]
        )
        volume = world.lineage_volume(ec2, name, zone, 10, {t.DEVICE: "/dev/sdf"})
        ec2.attach_volume(VolumeId=volume, InstanceId=holder, Device="/dev/sdf")
        CONTEXT.advance(5)
        return holder, volume

    return _make


def test_cross_zone_move_restores_in_the_target_zone(ec2, box, launch, lineage_volume):
    holder, volume = lineage_volume("strict-cross")
    target = launch("us-east-1b")
    with pytest.raises(ClientError) as refused:  # what a naive move would do
        ec2.attach_volume(VolumeId=volume, InstanceId=target, Device="/dev/sdg")
    assert error_code(refused) == "InvalidVolume.ZoneMismatch"

    backup_instance(ec2, holder, "strict-cross-1", wait=True, clock=CoreClock())
    ec2.stop_instances(InstanceIds=[holder])
    result = move_lineage_volume(ec2, "strict-cross", target, clock=CoreClock())

    assert result.from_snapshot and result.volume_id != volume
    restored = ec2.describe_volumes(VolumeIds=[result.volume_id])["Volumes"][0]
    assert restored["AvailabilityZone"] == "us-east-1b"
    assert [(a["InstanceId"], a["State"]) for a in restored["Attachments"]] == [(target, "attached")]
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"] == "available"
    assert result.timeline["attach"] >= CONTEXT.latency["ebs_attach"]  # the modeled attach was waited out
    detaches = box.records("detaches")
    assert detaches and not [record for record in detaches if record["force"]]


def test_same_zone_move_waits_for_detaching_and_never_forces(ec2, box, launch, lineage_volume):
    holder, volume = lineage_volume("strict-same")
    target = launch("us-east-1a")
    result = move_lineage_volume(ec2, "strict-same", target, app_stopped=True, clock=CoreClock())
    assert result.volume_id == volume and not result.from_snapshot
    assert result.timeline["release"] >= CONTEXT.latency["ebs_detach"]
    assert [(r["volume_id"], r["instance_id"], r["force"]) for r in box.records("detaches")] == [
        (volume, holder, False)
    ]
