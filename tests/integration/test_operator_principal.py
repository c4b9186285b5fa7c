"""The playbooks sign as the operator, not as the sandbox's administrator, and the operator is held to its policies.

``sandbox.start`` creates the user ``ec2spot-operator`` with docs/iam/modules-policy.json, deploy-policy.json and
deploy-fleet-policy.json attached as managed policies, and ``sandbox_env`` hands its access key to every ``ansible-playbook`` run (see
sandbox/README.md, "IAM"). This file's own boto3 clients (the ``ec2`` fixture) stand for the account: they sign
with the administrator key, to set the world up and to read it back.
"""

from sandbox import __main__ as sandbox_cli
from sandbox import world

OPERATOR_ARN = "arn:aws:iam::123456789012:user/ec2spot-operator"
LINEAGE, MANAGED_BY = "ec2spot:lineage", "ec2spot:managed-by"


def tagged(resource_type, tags):
    return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def refusals_of(box, arn):
    """``(principal, error code)`` of each refusal the sandbox recorded on the resource ``arn``: the
    amazon.aws modules report a refusal without AWS's error code, the sandbox records it as it answered it."""
    return [(d["principal"], d["code"]) for d in box.call("iam")["denied"] if f"on resource: {arn} " in d["message"]]


def test_the_playbooks_carry_the_operators_key_not_the_administrators(sandbox):
    operator = sandbox_cli.operator_credentials(sandbox["env"]["EC2SPOT_SANDBOX_STATE_DIR"])
    assert operator["Arn"] == OPERATOR_ARN
    assert sandbox["env"]["AWS_ACCESS_KEY_ID"] == operator["AccessKeyId"] != sandbox_cli.ADMINISTRATOR_KEY
    assert sandbox["env"]["AWS_SECRET_ACCESS_KEY"] == operator["SecretAccessKey"]


def test_a_playbook_signs_as_the_operator(playbook):
    run = playbook([{"name": "who", "amazon.aws.aws_caller_info": {}, "register": "result"}])
    assert run.last["arn"] == OPERATOR_ARN
    assert run.last["user_id"] != "sandbox"


def test_the_operator_deletes_only_the_backups_it_manages(playbook, ec2, box):
    source = ec2.create_volume(
        AvailabilityZone="us-east-1a", Size=1, TagSpecifications=tagged("volume", {LINEAGE: "it-op"})
    )
    unmanaged = ec2.create_snapshot(
        VolumeId=source["VolumeId"], TagSpecifications=tagged("snapshot", {LINEAGE: "it-op"})
    )["SnapshotId"]
    managed = ec2.create_snapshot(
        VolumeId=source["VolumeId"],
        TagSpecifications=tagged("snapshot", {LINEAGE: "it-op", MANAGED_BY: "ec2spot.autorecover"}),
    )["SnapshotId"]
    run = playbook(
        [
            {"name": "unmanaged", "amazon.aws.ec2_snapshot": {"snapshot_id": unmanaged, "state": "absent"},
             "ignore_errors": True},
            {"name": "managed", "amazon.aws.ec2_snapshot": {"snapshot_id": managed, "state": "absent"}},
        ]
    )  # fmt: skip
    refused, deleted = run.results
    assert refused.get("failed") is True
    assert deleted.get("failed") is not True and deleted["changed"] is True
    assert [s["SnapshotId"] for s in ec2.describe_snapshots(SnapshotIds=[unmanaged])["Snapshots"]] == [unmanaged]
    assert [
        s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] if s["SnapshotId"] == managed
    ] == []
    assert refusals_of(box, f"arn:aws:ec2:us-east-1::snapshot/{unmanaged}") == [(OPERATOR_ARN, "UnauthorizedOperation")]


def test_the_operator_does_not_detach_a_volume_of_no_lineage(playbook, ec2, sandbox, box):
    instance = world.launch(ec2, sandbox["world"])
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume], WaiterConfig={"Delay": 1})
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
    run = playbook(
        [{"name": "detach", "amazon.aws.ec2_vol": {"id": volume, "instance": "None"}, "ignore_errors": True}]
    )
    assert run.last.get("failed") is True
    assert refusals_of(box, f"arn:aws:ec2:us-east-1:123456789012:volume/{volume}") == [
        (OPERATOR_ARN, "UnauthorizedOperation")
    ]
    attachments = ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"]
    assert [(a["InstanceId"], a["State"]) for a in attachments] == [(instance, "attached")]
