"""restore.yml through ``ansible-playbook`` in the sandbox, standalone target: refuse a live writer, fence it when
told, restore in another zone from the newest backup onto a Spot instance of another type with the Elastic IP, print
the data age; check mode and a second run change nothing; bad requests are refused before anything changes.

The group target (staged volume, the control plane gives it to the group's next instance) runs with the real
control plane and real filesystems in test_restore_group.py."""

import json
import os

import boto3
import pytest
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance

from sandbox import scenario
from sandbox import world as sandbox_world

from .conftest import REPO

SERVICE, LINEAGE = "it-rs", "it-rsdata"


@pytest.fixture(scope="module")
def service(sandbox, session, box):
    """A running service in us-east-1a: its launch template, instance, data volume, a completed backup, its address."""
    ec2 = session.client("ec2", endpoint_url=sandbox["endpoint"])
    world = sandbox["world"]
    # Named as the fleet names its instance role (<service>-instance): the operator may pass only those to EC2.
    sandbox_world.managed_instance_profile(session.client("iam", endpoint_url=sandbox["endpoint"]), "it-rs-instance")
    ec2.create_launch_template(
        LaunchTemplateName=SERVICE,
        LaunchTemplateData={
            "ImageId": world["image_id"],
            "InstanceType": "t3.micro",
            "IamInstanceProfile": {"Name": "it-rs-instance"},
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )
    old = sandbox_world.launch(ec2, world, "us-east-1a", {t.LINEAGE: LINEAGE, "Name": SERVICE})
    volume = sandbox_world.lineage_volume(ec2, LINEAGE, "us-east-1a", 8, {t.DEVICE: "/dev/sdf"})
    box.settle()
    ec2.attach_volume(VolumeId=volume, InstanceId=old, Device="/dev/sdf")
    box.settle()
    core_ec2 = boto3.client(
        "ec2",
        endpoint_url=sandbox["endpoint"],
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )
    backup_instance(core_ec2, old, "it-rs-nightly", extra_tags={t.LINEAGE: LINEAGE})
    box.settle()
    address = ec2.allocate_address(
        Domain="vpc",
        TagSpecifications=[
            {"ResourceType": "elastic-ip", "Tags": t.as_list({"ec2spot:service": SERVICE, "ec2spot:lineage": LINEAGE})}
        ],
    )
    ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=old)
    return {"old": old, "volume": volume, "address": address, "ec2": ec2}


@pytest.fixture(scope="module")
def restore(sandbox, tmp_path_factory):
    variables = tmp_path_factory.mktemp("restore") / "vars.json"
    world = sandbox["world"]
    variables.write_text(
        json.dumps(
            {
                "ec2spot_region": "us-east-1",
                "ec2spot_services": [
                    {
                        "name": SERVICE,
                        "lineage": LINEAGE,
                        "subnet_ids": [world["subnets"]["us-east-1a"], world["subnets"]["us-east-1b"]],
                    }
                ],
            }
        )
    )

    def run(*extra):
        raw, code, _stderr = scenario.ansible_playbook(
            [
                os.path.join(REPO, "playbooks", "restore.yml"),
                "-e",
                f"@{variables}",
                "-e",
                f"restore_service={SERVICE}",
                "-e",
                f"restore_subnet_id={world['subnets']['us-east-1b']}",
                *extra,
            ],
            sandbox["env"],
            REPO,
        )
        return {"code": code, "stats": raw["stats"]["localhost"], "tasks": scenario.tasks_by_name(raw)}

    return run


@pytest.fixture(scope="module")
def runs(service, restore):
    ec2 = service["ec2"]

    def restored():
        return [
            i["InstanceId"]
            for r in ec2.describe_instances(
                Filters=[
                    {"Name": "tag:Name", "Values": [f"{SERVICE}-restored"]},
                    {"Name": "instance-state-name", "Values": ["pending", "running"]},
                ]
            )["Reservations"]
            for i in r["Instances"]
        ]

    refused = restore()
    after_refusal = restored()
    check = restore("-e", "restore_fence=true", "--check")
    after_check = {
        "restored": restored(),
        "old": ec2.describe_instances(InstanceIds=[service["old"]])["Reservations"][0]["Instances"][0]["State"]["Name"],
    }
    spot = ("-e", "restore_market=spot", "-e", "restore_instance_type=m5.large")
    first = restore("-e", "restore_fence=true", *spot)
    second = restore("-e", "restore_fence=true", *spot)
    return {
        "refused": refused,
        "after_refusal": after_refusal,
        "check": check,
        "after_check": after_check,
        "first": first,
        "second": second,
        "restored": restored(),
    }


def test_a_live_writer_is_refused_and_nothing_changes(runs, service):
    assert runs["refused"]["code"] != 0 and runs["after_refusal"] == []
    failed = [task for task in runs["refused"]["tasks"].values() if task.get("failed")]
    assert failed, runs["refused"]["tasks"]
    message = failed[0]["msg"]
    assert service["old"] in message and "restore_fence=true" in message and "Nothing was changed" in message


def test_check_mode_changes_nothing(runs):
    assert runs["check"]["code"] == 0, [t[1].get("msg") for t in runs["check"]["tasks"].items() if t[1].get("failed")]
    assert runs["after_check"] == {"restored": [], "old": "running"}


def test_fenced_restore_in_another_zone_from_the_backup_with_the_address(runs, service):
    assert runs["first"]["code"] == 0, runs["first"]["tasks"]
    ec2 = service["ec2"]
    [new] = runs["restored"]
    assert (
        ec2.describe_instances(InstanceIds=[service["old"]])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "stopped"
    )
    launched = runs["first"]["tasks"]["Launch the instance from the service's launch template"]
    assert launched["market"] == "spot" and launched["instance_type"] == "m5.large", launched
    instance = ec2.describe_instances(InstanceIds=[new])["Reservations"][0]["Instances"][0]
    assert instance["InstanceLifecycle"] == "spot" and instance["InstanceType"] == "m5.large"
    assert (
        instance["Placement"]["AvailabilityZone"] == "us-east-1b"
        and instance["MetadataOptions"]["HttpTokens"] == "required"
    )
    assert t.as_dict(instance["Tags"])[t.LINEAGE] == LINEAGE
    data = runs["first"]["tasks"]["Give it the lineage's data"]
    assert data["changed"] and data["from_snapshot"] and data["availability_zone"] == "us-east-1b", data
    volume = ec2.describe_volumes(VolumeIds=[data["volume_id"]])["Volumes"][0]
    assert [a["InstanceId"] for a in volume["Attachments"]] == [new] and t.as_dict(volume["Tags"])[t.GENERATION] == "2"
    address = ec2.describe_addresses(AllocationIds=[service["address"]["AllocationId"]])["Addresses"][0]
    assert address["InstanceId"] == new
    summary = runs["first"]["tasks"]["What was restored"]["msg"]
    assert new in summary and f"backup {data['snapshot_id']} taken" in summary and "data age" in summary
    assert address["PublicIp"] in summary and "fenced: " + service["old"] in summary


def test_second_run_changes_nothing(runs):
    assert runs["second"]["code"] == 0 and runs["second"]["stats"]["changed"] == 0, runs["second"]["stats"]


@pytest.mark.parametrize(
    "request_args, message",
    [
        (("-e", "restore_before=2001-01-01"), "was taken before 2001-01-01T00:00:00Z"),
        (("-e", "restore_snapshot_id=snap-0123456789abcdef0"), "is snapshot snap-0123456789abcdef0"),
        (("-e", "restore_target=group", "-e", "restore_market=spot"), "a group launches its own types and market"),
        (("-e", "restore_service=nope"), "one of its services (it-rs)"),
    ],
)
def test_bad_requests_are_refused_before_anything_changes(runs, restore, service, request_args, message):
    volumes = service["ec2"].describe_volumes(Filters=[{"Name": f"tag:{t.LINEAGE}", "Values": [LINEAGE]}])["Volumes"]
    refused = restore("-e", "restore_fence=true", *request_args)
    assert refused["code"] != 0
    failed = [task for task in refused["tasks"].values() if task.get("failed")]
    assert message in failed[0]["msg"] and (
        "Nothing was changed" in failed[0]["msg"] or "no completed backup" in failed[0]["msg"]
    )
    assert (
        service["ec2"].describe_volumes(Filters=[{"Name": f"tag:{t.LINEAGE}", "Values": [LINEAGE]}])["Volumes"]
        == volumes
    )
