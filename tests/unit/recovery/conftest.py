"""The core against moto in-process: a seeded world, instances and lineage volumes."""

import boto3
import pytest
from moto import mock_aws

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from sandbox import rules as sandbox_rules, world as sandbox_world
from sandbox.clock import CONTEXT, CoreClock

# The same AWS rules the sandbox server enforces, layered over moto in-process.
sandbox_rules.install()


@pytest.fixture
def aws():
    with mock_aws():
        CONTEXT.reset()
        yield


@pytest.fixture
def ec2(aws):
    return boto3.client("ec2", region_name="us-east-1", config=RETRY_CONFIG)


@pytest.fixture
def autoscaling(aws):
    return boto3.client("autoscaling", region_name="us-east-1", config=RETRY_CONFIG)


@pytest.fixture
def world(ec2):
    return sandbox_world.seed(ec2)


@pytest.fixture
def clock():
    return CoreClock()


@pytest.fixture
def launch(ec2, world):
    def _launch(zone="us-east-1a", lineage=None, state="running"):
        instance_id = sandbox_world.launch(ec2, world, zone, {t.LINEAGE: lineage} if lineage else None)
        if state == "stopped":
            ec2.stop_instances(InstanceIds=[instance_id])
        return instance_id

    return _launch


@pytest.fixture
def data_volume(ec2):
    def _volume(
        zone="us-east-1a",
        lineage="pgdata",
        generation=1,
        attach_to=None,
        device="/dev/sdf",
        size=20,
        volume_type="gp3",
        extra_tags=None,
    ):
        volume_tags = {
            t.LINEAGE: lineage,
            t.GENERATION: generation,
            t.DEVICE: device,
            "Name": f"{lineage}-data",
            **(extra_tags or {}),
        }
        params = dict(
            AvailabilityZone=zone,
            Size=size,
            VolumeType=volume_type,
            Encrypted=True,
            TagSpecifications=[{"ResourceType": "volume", "Tags": t.as_list(volume_tags)}],
        )
        if volume_type == "gp3":
            params.update(Iops=4000, Throughput=250)
        volume_id = ec2.create_volume(**params)["VolumeId"]
        if attach_to:
            ec2.attach_volume(VolumeId=volume_id, InstanceId=attach_to, Device=device)
            CONTEXT.advance(CONTEXT.latency["ebs_attach"])  # let the attachment finish
            if generation:
                ec2.create_tags(Resources=[volume_id], Tags=t.as_list({t.HOLDER: attach_to}))
        return volume_id

    return _volume


def moto_ec2():
    from moto.ec2.models import ec2_backends

    return ec2_backends["123456789012"]["us-east-1"]


def backdate_snapshot(snapshot_id, seconds):
    """Make a snapshot look ``seconds`` older (moto stamps creation to the second)."""
    from datetime import timedelta

    moto_ec2().snapshots[snapshot_id].start_time -= timedelta(seconds=seconds)


def volume(ec2, volume_id):
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]


def tags_of(resource):
    return t.as_dict(resource.get("Tags"))
