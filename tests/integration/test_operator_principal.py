"""The playbooks sign as the operator, not as the sandbox's administrator, and the operator is held to its policies.

``sandbox.start`` creates the user ``ec2spot-operator`` with docs/iam/modules-policy.json, deploy-policy.json and
deploy-fleet-policy.json attached as managed policies, and ``sandbox_env`` hands its access key to every ``ansible-playbook`` run (see
sandbox/README.md, "IAM"). This file's own boto3 clients (the ``ec2`` fixture) stand for the account: they sign
with the administrator key, to set the world up and to read it back.
"""

import io
import json
import zipfile

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


def test_the_operator_deletes_only_the_control_planes_templates_and_alarms_it_manages(
    playbook, ec2, sandbox, session, box
):
    """The control plane's function, log group and topic are named by the user alone, a launch template's ARN holds
    only its id: the deploy policy deletes them only when they carry ec2spot:managed-by (docs/iam/deploy-policy.json,
    RemoveOnlyOurControlPlane; deploy-fleet-policy.json, DeleteOnlyOurs). The fleet's alarms cannot be tagged by
    amazon.aws.cloudwatch_metric_alarm: the policy keeps them to the collection's naming (KeepTheAlarms)."""
    services = ("iam", "lambda", "logs", "sns", "cloudwatch")
    client = {name: session.client(name, endpoint_url=sandbox["endpoint"]) for name in services}
    managed = {MANAGED_BY: "ec2spot.autorecover"}
    role = client["iam"].create_role(RoleName="it-op-function", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]  # fmt: skip
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    templates = {}
    for name, tags in (("it-op-other", {"team": "billing"}), ("it-op-cp", managed)):
        client["lambda"].create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                                         Code={"ZipFile": package.getvalue()}, Tags=tags)  # fmt: skip
        client["logs"].create_log_group(logGroupName=f"/aws/lambda/{name}", tags=tags)
        client["sns"].create_topic(Name=name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        templates[name] = ec2.create_launch_template(
            LaunchTemplateName=name, LaunchTemplateData={"InstanceType": "m6i.large"},
            TagSpecifications=tagged("launch-template", tags),
        )["LaunchTemplate"]["LaunchTemplateId"]  # fmt: skip
    for name in ("it-op-billing-high", "it-op-step-scaling-burst"):  # not ours by name, ours by name
        client["cloudwatch"].put_metric_alarm(AlarmName=name, MetricName="CPUUtilization", Namespace="AWS/EC2",
                                              Statistic="Average", Period=60, EvaluationPeriods=1, Threshold=90,
                                              ComparisonOperator="GreaterThanThreshold")  # fmt: skip

    def removals(name):
        return [
            {"name": f"function {name}", "amazon.aws.lambda": {"name": name, "state": "absent"}},
            {"name": f"log group {name}",
             "amazon.aws.cloudwatchlogs_log_group": {"log_group_name": f"/aws/lambda/{name}", "state": "absent"}},
            {"name": f"topic {name}", "community.aws.sns_topic": {"name": name, "state": "absent"}},
            {"name": f"template {name}", "amazon.aws.ec2_launch_template": {"template_name": name, "state": "absent"}},
        ]  # fmt: skip

    def alarm_removal(name):
        return {"name": f"alarm {name}", "amazon.aws.cloudwatch_metric_alarm": {"name": name, "state": "absent"}}

    refused = [
        dict(task, ignore_errors=True) for task in (*removals("it-op-other"), alarm_removal("it-op-billing-high"))
    ]
    run = playbook([*refused, *removals("it-op-cp"), alarm_removal("it-op-step-scaling-burst")])
    assert [result.get("failed") is True for result in run.results] == [True] * 5 + [False] * 5, run.results
    base = "arn:aws:{}:us-east-1:123456789012:{}"
    assert refusals_of(box, base.format("lambda", "function:it-op-other")) == [(OPERATOR_ARN, "AccessDeniedException")]
    assert refusals_of(box, base.format("logs", "log-group:/aws/lambda/it-op-other")) == [
        (OPERATOR_ARN, "AccessDeniedException")
    ]
    assert refusals_of(box, base.format("sns", "it-op-other")) == [(OPERATOR_ARN, "AccessDenied")]
    assert refusals_of(box, base.format("ec2", f"launch-template/{templates['it-op-other']}")) == [
        (OPERATOR_ARN, "UnauthorizedOperation")
    ]
    assert refusals_of(box, base.format("cloudwatch", "alarm:it-op-billing-high")) == [(OPERATOR_ARN, "AccessDenied")]
    functions = [f["FunctionName"] for f in client["lambda"].list_functions()["Functions"]]
    assert "it-op-other" in functions and "it-op-cp" not in functions
    groups = [g["logGroupName"] for g in client["logs"].describe_log_groups(logGroupNamePrefix="/aws/lambda/it-op-")[
        "logGroups"]]  # fmt: skip
    assert groups == ["/aws/lambda/it-op-other"]
    topics = [t["TopicArn"].rsplit(":", 1)[1] for t in client["sns"].list_topics()["Topics"]]
    assert "it-op-other" in topics and "it-op-cp" not in topics
    names = [t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]]
    assert "it-op-other" in names and "it-op-cp" not in names
    left = [a["AlarmName"] for a in client["cloudwatch"].describe_alarms(AlarmNamePrefix="it-op-")["MetricAlarms"]]
    assert left == ["it-op-billing-high"]
