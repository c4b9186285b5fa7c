"""IAM enforced by the sandbox server: a role assumed through STS is held to its policy, unknown keys are refused.

Against the in-thread server of conftest.py with enforcement switched on for each test (the ``iam`` control) and
off after. The role carries a tag-scoped policy shaped like the handler's (roles/control_plane/templates/
function-policy.json.j2): it may describe every volume, detach only its lineage's, create only encrypted volumes
and delete only the snapshots it manages.
"""

import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT
from sandbox.iam import enforce
from sandbox.lambda_runner.environments import EnvironmentPool

from .conftest import error_code

LINEAGE, MANAGED_BY = "ec2spot:lineage", "ec2spot:managed-by"
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}  # fmt: skip


def policy(lineage):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Read", "Effect": "Allow", "Action": ["ec2:DescribeVolumes", "ec2:DescribeSnapshots"],
             "Resource": "*"},
            {"Sid": "DetachItsLineage", "Effect": "Allow", "Action": "ec2:DetachVolume",
             "Resource": ["arn:aws:ec2:*:*:volume/*", "arn:aws:ec2:*:*:instance/*"],
             "Condition": {"StringEquals": {"aws:ResourceTag/ec2spot:lineage": lineage}}},
            {"Sid": "CreateEncrypted", "Effect": "Allow", "Action": "ec2:CreateVolume",
             "Resource": "arn:aws:ec2:*:*:volume/*", "Condition": {"Bool": {"ec2:Encrypted": "true"}}},
            {"Sid": "DeleteManaged", "Effect": "Allow", "Action": "ec2:DeleteSnapshot",
             "Resource": "arn:aws:ec2:*:*:snapshot/*",
             "Condition": {"StringEquals": {"aws:ResourceTag/ec2spot:managed-by": "ec2spot.autorecover"}}},
        ],
    }  # fmt: skip


@pytest.fixture
def enforcing(box):
    box.call("iam", enforce=True)
    yield box
    box.call("iam", enforce=False)


@pytest.fixture(scope="module")
def role(aws):
    name = f"handler-{uuid.uuid4().hex[:8]}"
    iam = aws("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="function", PolicyDocument=json.dumps(policy("pgdata")))
    return arn


@pytest.fixture(scope="module")
def as_role(aws, endpoint, role):
    """``as_role("ec2")``: a client signed with the role's temporary credentials from STS AssumeRole."""
    credentials = aws("sts").assume_role(RoleArn=role, RoleSessionName="enforce-test")["Credentials"]
    session = boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                    aws_secret_access_key=credentials["SecretAccessKey"],
                                    aws_session_token=credentials["SessionToken"], region_name="us-east-1")  # fmt: skip
    return lambda service: session.client(service, endpoint_url=endpoint)


def volume(ec2, tags, zone="us-east-1a"):
    spec = [{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    return ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=spec)["VolumeId"]


def attached_volume(ec2, launch, lineage):
    instance = launch(TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": LINEAGE, "Value": lineage}]}])
    volume_id = volume(ec2, {LINEAGE: lineage})
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance, Device="/dev/sdf")
    return volume_id


def refusal(excinfo):
    return error_code(excinfo), excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_enforcement_is_off_by_default(box):
    assert box.call("iam")["enforce"] is False
    assert enforce.enforce_from_environment({}) is False


def test_the_role_describes_and_detaches_its_lineages_volume_only(ec2, launch, enforcing, as_role):
    mine, theirs = attached_volume(ec2, launch, "pgdata"), attached_volume(ec2, launch, "other")
    described = as_role("ec2").describe_volumes(VolumeIds=[mine, theirs])["Volumes"]
    assert {v["VolumeId"] for v in described} == {mine, theirs}
    as_role("ec2").detach_volume(VolumeId=mine)
    with pytest.raises(ClientError) as refused:
        as_role("ec2").detach_volume(VolumeId=theirs)
    assert refusal(refused) == ("UnauthorizedOperation", 403)
    message = refused.value.response["Error"]["Message"]
    assert f"on resource: arn:aws:ec2:us-east-1:123456789012:volume/{theirs}" in message
    assert "Encoded authorization failure message: " in message
    assert ec2.describe_volumes(VolumeIds=[theirs])["Volumes"][0]["State"] == "in-use"  # nothing happened
    assert CONTEXT.records["iam_denied"][-1]["code"] == "UnauthorizedOperation"


def test_an_unencrypted_volume_is_refused(enforcing, as_role, ec2):
    before = len(ec2.describe_volumes()["Volumes"])
    with pytest.raises(ClientError) as refused:
        as_role("ec2").create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=False)
    assert refusal(refused) == ("UnauthorizedOperation", 403)
    with pytest.raises(ClientError) as unsaid:
        as_role("ec2").create_volume(AvailabilityZone="us-east-1a", Size=1)
    assert refusal(unsaid) == ("UnauthorizedOperation", 403)
    assert len(ec2.describe_volumes()["Volumes"]) == before
    created = as_role("ec2").create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=True)
    assert created["Encrypted"] is True


def test_a_snapshot_without_the_managed_by_tag_is_not_deleted(ec2, enforcing, as_role):
    source = volume(ec2, {LINEAGE: "pgdata"})

    def snapshot(tags):
        spec = [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        return ec2.create_snapshot(VolumeId=source, TagSpecifications=spec)["SnapshotId"]

    unmanaged, managed = snapshot({LINEAGE: "pgdata"}), snapshot({LINEAGE: "pgdata", MANAGED_BY: "ec2spot.autorecover"})
    with pytest.raises(ClientError) as refused:
        as_role("ec2").delete_snapshot(SnapshotId=unmanaged)
    assert refusal(refused) == ("UnauthorizedOperation", 403)
    assert ec2.describe_snapshots(SnapshotIds=[unmanaged])["Snapshots"]
    as_role("ec2").delete_snapshot(SnapshotId=managed)


def test_an_unknown_access_key_is_refused_as_each_service_refuses_it(endpoint, enforcing):
    stranger = boto3.session.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="secret",
                                     region_name="us-east-1")  # fmt: skip
    calls = {
        "ec2": (lambda c: c.describe_volumes(), ("AuthFailure", 401)),
        "autoscaling": (lambda c: c.describe_auto_scaling_groups(), ("InvalidClientTokenId", 403)),
        "ssm": (lambda c: c.describe_instance_information(), ("UnrecognizedClientException", 400)),
    }
    for service, (call, expected) in calls.items():
        with pytest.raises(ClientError) as refused:
            call(stranger.client(service, endpoint_url=endpoint))
        assert refusal(refused) == expected, service


def test_a_wrong_session_token_is_refused(endpoint, aws, role, enforcing):
    credentials = aws("sts").assume_role(RoleArn=role, RoleSessionName="wrong-token")["Credentials"]
    session = boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                    aws_secret_access_key=credentials["SecretAccessKey"],
                                    aws_session_token="not-the-token", region_name="us-east-1")  # fmt: skip
    with pytest.raises(ClientError) as refused:
        session.client("ec2", endpoint_url=endpoint).describe_volumes()
    assert refusal(refused) == ("AuthFailure", 401)


def test_the_role_is_refused_what_its_policy_does_not_name(enforcing, as_role):
    with pytest.raises(ClientError) as refused:
        as_role("autoscaling").describe_auto_scaling_groups()
    assert refusal(refused) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as json_refused:
        as_role("ssm").describe_instance_information()
    assert refusal(json_refused) == ("AccessDeniedException", 400)
    assert as_role("sts").get_caller_identity()["Arn"].endswith("/enforce-test")  # always allowed, as in AWS


def test_the_sandbox_key_is_unrestricted(ec2, launch, enforcing):
    theirs = attached_volume(ec2, launch, "other")
    ec2.detach_volume(VolumeId=theirs)
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, Encrypted=False)
    assert "unmodelled" in enforcing.call("iam")


def test_the_lambda_environment_carries_the_execution_roles_credentials_when_enforcing(aws, role, enforcing):
    zipped = __import__("io").BytesIO()
    with __import__("zipfile").ZipFile(zipped, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    name = f"enforced-{uuid.uuid4().hex[:8]}"
    created = aws("lambda").create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                                            Code={"ZipFile": zipped.getvalue()})  # fmt: skip
    function = {"arn": created["FunctionArn"], "name": name, "region": "us-east-1", "account": "123456789012"}
    pool = EnvironmentPool(CONTEXT, "http://127.0.0.1:1")
    credentials = pool.function_credentials(function)
    assert credentials["AWS_ACCESS_KEY_ID"] != "sandbox" and credentials["AWS_SESSION_TOKEN"]
    from sandbox.iam import principals

    principal = principals.principal_of(
        principals.Credentials(credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SESSION_TOKEN"])
    )
    assert principal.role_arn == role
    assert principal.arn.endswith(f":assumed-role/{role.rsplit('/', 1)[1]}/{name}")
    assert [name for name, _document in principal.policies] == ["function"]
    enforcing.call("iam", enforce=False)
    assert pool.function_credentials(function) == {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}


def test_an_instance_gets_its_profile_roles_credentials_through_imds_when_enforcing(aws, role, launch, enforcing):
    """EC2 hands an instance its profile role's temporary credentials in IMDS, session named after the instance;
    the agent's process has no key of its own, so it signs as that role."""
    from types import SimpleNamespace

    from sandbox.iam import principals
    from sandbox.runtime.boot import InstanceBoot

    iam, name = aws("iam"), f"agent-{uuid.uuid4().hex[:8]}"
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role.rsplit("/", 1)[1])
    instance_id = launch(IamInstanceProfile={"Name": name})
    boot = InstanceBoot()
    boot.context, boot.endpoint = CONTEXT, "http://127.0.0.1:1"
    imds = boot._imds(CONTEXT.backend("ec2").get_instance(instance_id))  # pylint: disable=protected-access
    status, listed = imds.lookup("meta-data/iam/security-credentials/")
    assert (status, listed) == (200, role.rsplit("/", 1)[1])
    status, body = imds.lookup(f"meta-data/iam/security-credentials/{listed}")
    document = json.loads(body)
    principal = principals.principal_of(principals.Credentials(document["AccessKeyId"], document["Token"]))
    assert (principal.role_arn, principal.arn.rsplit("/", 1)[1]) == (role, instance_id)
    run = SimpleNamespace(instance_id=instance_id, root="/nonexistent")
    assert "AWS_ACCESS_KEY_ID" not in boot.agent_environment(run)
    enforcing.call("iam", enforce=False)
    assert boot.agent_environment(run)["AWS_ACCESS_KEY_ID"] == "sandbox"


@pytest.mark.parametrize(
    ("entry", "allowed"),
    [
        ({"Source": "ec2spot.autorecover", "DetailType": "EC2Spot Recovery Boot Report"}, True),
        ({"Source": "ec2spot.autorecover", "DetailType": "d", "EventBusName": "default"}, True),
        ({"Source": "aws.ec2", "DetailType": "EC2 Spot Instance Interruption Warning"}, False),
        ({"Source": "ec2spot.autorecover", "DetailType": "d", "EventBusName": "other"}, False),
    ],
)
def test_a_put_events_entry_is_authorised_on_its_bus_and_its_source(entry, allowed):
    """The instance policy's boot report statement: only our source, only onto the fleet's bus."""
    from sandbox.iam.requests import decide
    from sandbox.iam.resources import Params, resolve

    bus = "arn:aws:events:us-east-1:123456789012:event-bus/default"
    boot_report = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "events:PutEvents",
                   "Resource": bus, "Condition": {"StringEquals": {"events:source": "ec2spot.autorecover"}}}]}  # fmt: skip
    checks = resolve("events", "PutEvents", Params(tree={"Entries": [entry]}), "123456789012", "us-east-1")
    assert [decide([boot_report], check).allowed for check in checks] == [allowed]


ACCOUNT = "123456789012"


@pytest.mark.parametrize(
    ("service", "action", "params", "path", "resources"),
    [
        ("iam", "CreateRole", {"RoleName": "cp-function"}, None, [("role", f"arn:aws:iam::{ACCOUNT}:role/cp-function")]),
        ("iam", "AddRoleToInstanceProfile", {"InstanceProfileName": "pg-instance", "RoleName": "pg-instance"}, None,
         [("instance-profile", f"arn:aws:iam::{ACCOUNT}:instance-profile/pg-instance")]),
        ("lambda", "CreateFunction", {"FunctionName": "cp"}, "/2015-03-31/functions",
         [("function", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:cp")]),
        ("lambda", "GetFunction", {}, "/2015-03-31/functions/cp",
         [("function", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:cp")]),
        ("lambda", "ListTags", {}, f"/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A{ACCOUNT}%3Afunction%3Acp",
         [("function", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:cp")]),
        ("events", "PutTargets", {"Rule": "cp-sweep"}, None,
         [("rule-on-default-event-bus", f"arn:aws:events:us-east-1:{ACCOUNT}:rule/cp-sweep")]),
        ("events", "PutRule", {"Name": "cp-sweep", "EventBusName": "other"}, None, None),
        ("logs", "PutRetentionPolicy", {"logGroupName": "/aws/lambda/cp"}, None,
         [("log-group", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/cp")]),
        ("sns", "CreateTopic", {"Name": "cp"}, None, [("topic", f"arn:aws:sns:us-east-1:{ACCOUNT}:cp")]),
        ("cloudwatch", "DeleteDashboards", {"DashboardNames": ["a", "b"]}, None,
         [("dashboard", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/a"),
          ("dashboard", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/b")]),
        ("autoscaling", "PutScalingPolicy", {"AutoScalingGroupName": "nowhere"}, None,
         [("autoScalingGroup", f"arn:aws:autoscaling:us-east-1:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/nowhere")]),
        ("ec2", "CreateLaunchTemplate", {"LaunchTemplateName": "pg"}, None,
         [("launch-template", f"arn:aws:ec2:us-east-1:{ACCOUNT}:launch-template/*")]),
        ("ec2", "AllocateAddress", {"Domain": "vpc"}, None,
         [("elastic-ip", f"arn:aws:ec2:us-east-1:{ACCOUNT}:elastic-ip/*")]),
        ("kms", "CreateAlias", {"AliasName": "alias/cp-queue", "TargetKeyId": "1234"}, None,
         [("alias", f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/cp-queue"),
          ("key", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234")]),
        ("lambda", "GetEventSourceMapping", {}, "/2015-03-31/event-source-mappings/uuid", None),
        ("fis", "CreateExperimentTemplate", {"actions": {"i": {"actionId": "aws:ec2:send-spot-instance-interruptions"}}},
         "/experimentTemplates", [("experiment-template", f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment-template/*"),
         ("action", f"arn:aws:fis:us-east-1:{ACCOUNT}:action/aws:ec2:send-spot-instance-interruptions")]),
        ("fis", "StartExperiment", {"experimentTemplateId": "EXT1"}, "/experiments",
         [("experiment", f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment/*"),
          ("experiment-template", f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment-template/EXT1")]),
        ("fis", "GetExperiment", {}, "/experiments/EXP1", [("experiment", f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment/EXP1")]),
        # An alias no key has: nothing to authorise, KMS answers NotFoundException.
        ("kms", "DescribeKey", {"KeyId": "alias/nobody-has-it"}, None, []),
    ],
)  # fmt: skip
def test_the_deploys_resources_are_resolved_from_their_names(service, action, params, path, resources):
    """The resources the deploy's calls name (sandbox/iam/resources.py, NAMED): by name or ARN, in the request or
    its path; None (authorised on ``*`` and recorded as unmodelled) when the request does not name them."""
    from sandbox.iam.resources import Params, resolve

    resolved = resolve(service, action, Params(tree=params), ACCOUNT, "us-east-1", path=path)
    if not resources:
        assert resolved == resources
        return
    assert [[(r.type, r.arn) for r in request.resources] for request in resolved] == [resources]


def test_run_instances_from_a_template_is_authorised_on_what_it_creates_and_uses(ec2, seeded):
    """RunInstances from a launch template: the new instance, volume and interface with their request tags, the
    subnet, the template's image and security group and the template itself, each with ``ec2:LaunchTemplate``."""
    from sandbox.iam.resources import Params, resolve

    template = ec2.create_launch_template(
        LaunchTemplateName=f"lt-{uuid.uuid4().hex[:8]}",
        LaunchTemplateData={"ImageId": seeded["image_id"], "SecurityGroupIds": [seeded["security_group_id"]]},
    )["LaunchTemplate"]
    subnet = seeded["subnets"]["us-east-1a"]
    params = Params(flat={"LaunchTemplate.LaunchTemplateId": template["LaunchTemplateId"], "SubnetId": subnet,
                          "TagSpecification.1.ResourceType": "instance", "TagSpecification.1.Tag.1.Key": LINEAGE,
                          "TagSpecification.1.Tag.1.Value": "pgdata"})  # fmt: skip
    (request,) = resolve("ec2", "RunInstances", params, ACCOUNT, "us-east-1")
    base = f"arn:aws:ec2:us-east-1:{ACCOUNT}"
    assert [(r.type, r.arn) for r in request.resources] == [
        ("instance", f"{base}:instance/*"),
        ("volume", f"{base}:volume/*"),
        ("network-interface", f"{base}:network-interface/*"),
        ("subnet", f"{base}:subnet/{subnet}"),
        ("security-group", f"{base}:security-group/{seeded['security_group_id']}"),
        ("image", f"arn:aws:ec2:us-east-1::image/{seeded['image_id']}"),
        ("launch-template", f"{base}:launch-template/{template['LaunchTemplateId']}"),
    ]
    assert request.request_tags == {LINEAGE: "pgdata"}
    assert request.keys["ec2:LaunchTemplate"] == f"{base}:launch-template/{template['LaunchTemplateId']}"
