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


def error_message(excinfo):
    return excinfo.value.response["Error"]["Message"]


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
    for rest_json in (lambda: as_role("lambda").list_functions(), lambda: as_role("fis").list_experiment_templates()):
        with pytest.raises(ClientError) as rest_refused:
            rest_json()
        assert refusal(rest_refused) == ("AccessDeniedException", 403)
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


# ---- RunInstances, authorised as AWS authorises it (sandbox/iam/resources.py _run_instances) ------------------------
# Shaped like the EC2 user guide's "Example policies for working with RunInstances": the instance only with the
# lineage's tag, tagging on create only by RunInstances, the template only of the lineage, every other resource type.
def launch_policy(lineage):
    ec2 = "arn:aws:ec2:us-east-1:123456789012"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "TaggedInstances", "Effect": "Allow", "Action": "ec2:RunInstances",
             "Resource": f"{ec2}:instance/*", "Condition": {"StringEquals": {"aws:RequestTag/ec2spot:lineage": lineage}}},
            {"Sid": "TheRest", "Effect": "Allow", "Action": "ec2:RunInstances",
             "Resource": [f"{ec2}:volume/*", f"{ec2}:network-interface/*", f"{ec2}:subnet/*",
                          f"{ec2}:security-group/*", "arn:aws:ec2:us-east-1::image/*"]},
            {"Sid": "OnlyTheLineagesTemplate", "Effect": "Allow", "Action": "ec2:RunInstances",
             "Resource": f"{ec2}:launch-template/*",
             "Condition": {"StringEquals": {"aws:ResourceTag/ec2spot:lineage": lineage}}},
            {"Sid": "TagOnLaunch", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": f"{ec2}:*/*",
             "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}}},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def launcher(aws, endpoint):
    """``launcher("ec2")``: a client signed as a role that carries ``launch_policy("pgdata")``."""
    iam, name = aws("iam"), f"launcher-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="launch", PolicyDocument=json.dumps(launch_policy("pgdata")))
    credentials = aws("sts").assume_role(RoleArn=arn, RoleSessionName="launcher")["Credentials"]
    session = boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                    aws_secret_access_key=credentials["SecretAccessKey"],
                                    aws_session_token=credentials["SessionToken"], region_name="us-east-1")  # fmt: skip
    return lambda service: session.client(service, endpoint_url=endpoint)


def instance_count(ec2):
    return sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])


def test_run_instances_is_allowed_with_the_lineages_tag_only(ec2, seeded, launcher, enforcing):
    from sandbox import world

    launched = world.launch(launcher("ec2"), seeded, tags={LINEAGE: "pgdata"})
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [launched]}])["Tags"][0]["Value"] == "pgdata"
    before = instance_count(ec2)
    for tags in (None, {LINEAGE: "other"}):
        with pytest.raises(ClientError) as refused:
            world.launch(launcher("ec2"), seeded, tags=tags)
        assert refusal(refused) == ("UnauthorizedOperation", 403)
        assert "ec2:RunInstances on resource: arn:aws:ec2:us-east-1:123456789012:instance/*" in error_message(refused)
    assert instance_count(ec2) == before  # nothing launched
    assert "ec2:RunInstances" not in enforcing.call("iam")["unmodelled"]


def test_run_instances_from_a_template_is_authorised_on_the_template_and_what_it_supplies(
    ec2, seeded, launcher, enforcing
):
    def template(tags):
        spec = [{"ResourceType": "launch-template", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        return ec2.create_launch_template(LaunchTemplateName=f"lt-{uuid.uuid4().hex[:8]}", TagSpecifications=spec,
                                          LaunchTemplateData={"ImageId": seeded["image_id"], "InstanceType": "t3.micro",
                                                              "SecurityGroupIds": [seeded["security_group_id"]]},
                                          )["LaunchTemplate"]["LaunchTemplateName"]  # fmt: skip

    def run(name):
        tagged = [{"ResourceType": "instance", "Tags": [{"Key": LINEAGE, "Value": "pgdata"}]}]
        return launcher("ec2").run_instances(LaunchTemplate={"LaunchTemplateName": name}, MinCount=1, MaxCount=1,
                                             SubnetId=seeded["subnets"]["us-east-1a"], TagSpecifications=tagged)  # fmt: skip

    assert run(template({LINEAGE: "pgdata"}))["Instances"][0]["ImageId"] == seeded["image_id"]
    with pytest.raises(ClientError) as refused:
        run(template({LINEAGE: "other"}))
    assert refusal(refused) == ("UnauthorizedOperation", 403)
    assert ":launch-template/lt-" in error_message(refused)


def test_run_instances_authorises_each_resource_it_touches(ec2, seeded):
    """The resolver's request for a launch from a template: the instance with its request tags and keys, the
    template's image, the subnet, the template's security group, the interface and root volume it creates, the
    template; ec2:IsLaunchTemplateResource true for what the template supplied, ec2:LaunchTemplate on each."""
    from sandbox.iam.resources import Params, resolve

    template = ec2.create_launch_template(
        LaunchTemplateName=f"lt-{uuid.uuid4().hex[:8]}",
        LaunchTemplateData={"ImageId": seeded["image_id"], "InstanceType": "t3.micro",
                            "SecurityGroupIds": [seeded["security_group_id"]],
                            "BlockDeviceMappings": [{"DeviceName": "/dev/sdf",
                                                     "Ebs": {"VolumeSize": 5, "Encrypted": True}}]},
    )["LaunchTemplate"]  # fmt: skip
    subnet = seeded["subnets"]["us-east-1a"]
    flat = {"LaunchTemplate.LaunchTemplateId": template["LaunchTemplateId"], "SubnetId": subnet,
            "InstanceMarketOptions.MarketType": "spot", "MetadataOptions.HttpTokens": "required",
            "TagSpecification.1.ResourceType": "instance", "TagSpecification.1.Tag.1.Key": LINEAGE,
            "TagSpecification.1.Tag.1.Value": "pgdata", "TagSpecification.2.ResourceType": "volume",
            "TagSpecification.2.Tag.1.Key": LINEAGE, "TagSpecification.2.Tag.1.Value": "pgdata-volume"}  # fmt: skip
    (request,) = resolve("ec2", "RunInstances", Params(flat=flat), "123456789012", "us-east-1")
    checks = {(check.resource_type, check.resource): check.context for check in request.checks()}
    base, template_arn = (
        "arn:aws:ec2:us-east-1:123456789012",
        f"arn:aws:ec2:us-east-1:123456789012:launch-template/{template['LaunchTemplateId']}",
    )
    instance = checks[("instance", f"{base}:instance/*")]
    assert instance["aws:RequestTag/ec2spot:lineage"] == "pgdata" and instance["aws:TagKeys"] == [LINEAGE]
    assert (instance["ec2:InstanceType"], instance["ec2:InstanceMarketType"], instance["ec2:MetadataHttpTokens"]) == (
        "t3.micro", "spot", "required")  # fmt: skip
    assert instance["ec2:IsLaunchTemplateResource"] is True and instance["ec2:LaunchTemplate"] == template_arn
    image = checks[("image", f"arn:aws:ec2:us-east-1::image/{seeded['image_id']}")]
    assert image["ec2:IsLaunchTemplateResource"] is True and image["ec2:Owner"] == "123456789012"
    assert checks[("subnet", f"{base}:subnet/{subnet}")]["ec2:IsLaunchTemplateResource"] is False
    assert ("security-group", f"{base}:security-group/{seeded['security_group_id']}") in checks
    assert checks[("network-interface", f"{base}:network-interface/*")]["ec2:Subnet"] == f"{base}:subnet/{subnet}"
    volumes = [context for (kind, _arn), context in checks.items() if kind == "volume"]
    assert volumes and volumes[0]["aws:RequestTag/ec2spot:lineage"] == "pgdata-volume"
    assert ("launch-template", template_arn) in checks
    created = [r for r in request.resources if r.type == "volume"]
    assert sorted(r.keys.get("ec2:VolumeSize") for r in created) == [5, 15]  # the image's root and the template's


def test_fis_calls_are_authorised_on_templates_experiments_and_the_passed_role(aws):
    """fis:CreateExperimentTemplate on its actions and the template, with iam:PassRole of the experiment role to
    fis.amazonaws.com; fis:StartExperiment on the template (its tags) and the new experiment (the request's)."""
    from sandbox.iam.requests import decide
    from sandbox.iam.resources import Params, resolve

    role = "arn:aws:iam::123456789012:role/pg-fis"
    body = {"roleArn": role, "tags": {LINEAGE: "pgdata"},
            "actions": {"interrupt": {"actionId": "aws:ec2:send-spot-instance-interruptions"}}}  # fmt: skip
    create, pass_role = resolve("fis", "CreateExperimentTemplate", Params(tree=body), "123456789012", "us-east-1")
    assert [c.resource for c in create.checks()] == [
        "arn:aws:fis:us-east-1:123456789012:action/aws:ec2:send-spot-instance-interruptions",
        "arn:aws:fis:us-east-1:123456789012:experiment-template/*",
    ]
    assert [(c.action, c.resource, c.context) for c in pass_role.checks()] == [
        ("iam:PassRole", role, {"iam:PassedToService": "fis.amazonaws.com"})
    ]
    template_id = aws("fis").create_experiment_template(
        clientToken=uuid.uuid4().hex, description="d", roleArn=role, stopConditions=[{"source": "none"}],
        actions={}, tags={LINEAGE: "pgdata"})["experimentTemplate"]["id"]  # fmt: skip
    operator = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "fis:StartExperiment", "Resource": "arn:aws:fis:*:*:experiment-template/*",
         "Condition": {"StringEquals": {"aws:ResourceTag/ec2spot:lineage": "pgdata"}}},
        {"Effect": "Allow", "Action": "fis:StartExperiment", "Resource": "arn:aws:fis:*:*:experiment/*",
         "Condition": {"StringEquals": {"aws:RequestTag/purpose": "drill"}}}]}  # fmt: skip

    def start(tags, template=template_id):
        params = Params(tree={"experimentTemplateId": template, "tags": tags})
        requests = resolve("fis", "StartExperiment", params, "123456789012", "us-east-1")
        return [decide([operator], r).allowed for r in requests]

    assert start({"purpose": "drill"}) == [True]
    assert start({}) == [False]  # the experiment without the tag the policy requires
    assert start({"purpose": "drill"}, template="EXTnotours") == [False]  # a template without the lineage's tag


def test_auto_scaling_launches_a_replacement_as_itself_not_as_the_caller(aws, endpoint, autoscaling, group, enforcing):
    """The handler's role has no ec2:RunInstances: marking an instance unhealthy makes the group launch its
    replacement, and Auto Scaling launches it as its service-linked role, which the caller's policy does not judge."""
    iam, name = aws("iam"), f"health-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    only_health = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "autoscaling:SetInstanceHealth", "Resource": "*"}]}  # fmt: skip
    iam.put_role_policy(RoleName=name, PolicyName="health", PolicyDocument=json.dumps(only_health))
    credentials = aws("sts").assume_role(RoleArn=arn, RoleSessionName="health")["Credentials"]
    as_health = boto3.session.Session(aws_access_key_id=credentials["AccessKeyId"],
                                      aws_secret_access_key=credentials["SecretAccessKey"],
                                      aws_session_token=credentials["SessionToken"], region_name="us-east-1")  # fmt: skip
    name = group()

    def members():
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        return [m["InstanceId"] for m in found["Instances"]]

    (first,) = members()
    as_health.client("autoscaling", endpoint_url=endpoint).set_instance_health(
        InstanceId=first, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False
    )
    assert [m for m in members() if m != first]  # the replacement, launched
    assert CONTEXT.records.get("iam_denied", []) == []


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
        ("lambda", "GetEventSourceMapping", {}, "/2015-03-31/event-source-mappings/uuid",
         [("eventSourceMapping", f"arn:aws:lambda:us-east-1:{ACCOUNT}:event-source-mapping:uuid")]),
        ("lambda", "GetEventSourceMapping", {}, "/2015-03-31/event-source-mappings", None),
        ("fis", "CreateExperimentTemplate", {"actions": {"i": {"actionId": "aws:ec2:send-spot-instance-interruptions"}}},
         "/experimentTemplates",
         [("action", f"arn:aws:fis:us-east-1:{ACCOUNT}:action/aws:ec2:send-spot-instance-interruptions"),
          ("experiment-template", f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment-template/*")]),
        ("fis", "StartExperiment", {"experimentTemplateId": "EXT1"}, "/experiments",
         [("experiment-template", f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment-template/EXT1"),
          ("experiment", f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment/*")]),
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


def test_an_event_source_mapping_is_authorised_with_the_function_it_invokes(aws, role):
    """lambda:CreateEventSourceMapping on ``*`` (the reference gives it no resource type) with ``lambda:FunctionArn``
    of the function the request names; Get/Update/DeleteEventSourceMapping on the mapping with the function it invokes
    (an update naming another function: that one)."""
    from sandbox.iam.requests import decide
    from sandbox.iam.resources import Params, resolve

    zipped = __import__("io").BytesIO()
    with __import__("zipfile").ZipFile(zipped, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    mine, other = f"cp-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    for name in (mine, other):
        aws("lambda").create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                                      Code={"ZipFile": zipped.getvalue()})  # fmt: skip
    queue_url = aws("sqs").create_queue(QueueName=f"{mine}-events")["QueueUrl"]
    queue_arn = aws("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    mapping = aws("lambda").create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=mine, Enabled=False)
    base = f"arn:aws:lambda:us-east-1:{ACCOUNT}"
    operator = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:CreateEventSourceMapping", "Resource": "*",
         "Condition": {"ArnLike": {"lambda:FunctionArn": f"{base}:function:cp-*"}}},
        {"Effect": "Allow", "Action": ["lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping",
                                       "lambda:DeleteEventSourceMapping"],
         "Resource": f"{base}:event-source-mapping:*",
         "Condition": {"ArnLike": {"lambda:FunctionArn": f"{base}:function:cp-*"}}}]}  # fmt: skip

    def resolved(action, params, path="/2015-03-31/event-source-mappings"):
        return resolve("lambda", action, Params(tree=params), ACCOUNT, "us-east-1", path=path)

    def allowed(requests):
        return [decide([operator], request).allowed for request in requests]

    (create,) = resolved("CreateEventSourceMapping", {"FunctionName": mine, "EventSourceArn": queue_arn})
    assert (create.resources, create.keys) == ((), {"lambda:FunctionArn": f"{base}:function:{mine}"})
    assert allowed([create]) == [True]
    assert allowed(resolved("CreateEventSourceMapping", {"FunctionName": f"{base}:function:{other}"})) == [False]
    assert allowed(resolved("CreateEventSourceMapping", {"FunctionName": f"{ACCOUNT}:function:{mine}"})) == [True]
    path = f"/2015-03-31/event-source-mappings/{mapping['UUID']}"
    (delete,) = resolved("DeleteEventSourceMapping", {}, path)
    assert [(r.type, r.arn) for r in delete.resources] == [
        ("eventSourceMapping", f"{base}:event-source-mapping:{mapping['UUID']}")
    ]
    assert delete.keys == {"lambda:FunctionArn": f"{base}:function:{mine}"}
    assert allowed([delete]) == [True]
    assert allowed(resolved("UpdateEventSourceMapping", {"FunctionName": other}, path)) == [False]
    assert allowed(resolved("GetEventSourceMapping", {}, "/2015-03-31/event-source-mappings/no-such-mapping")) == [
        False
    ]


def test_the_deploys_deletes_are_resolved_with_what_scopes_them(aws, ec2, autoscaling, group):
    """What the deploy policies' delete statements are conditioned on is in the request as AWS builds it: a KMS key's
    aliases (kms:ResourceAliases), a volume's and an address's tags, an Auto Scaling group's tags (and the tags a
    create or tagging call sets), a drill template's tags."""
    from sandbox.iam.resources import Params, resolve

    def resolved(service, action, path=None, **params):
        return resolve(service, action, Params(tree=params), ACCOUNT, "us-east-1", path=path)

    def resources(requests):
        return [(r.type, dict(r.tags), dict(r.keys)) for request in requests for r in request.resources]

    name = uuid.uuid4().hex[:8]
    key = aws("kms").create_key()["KeyMetadata"]["KeyId"]
    aws("kms").create_alias(AliasName=f"alias/{name}-queue", TargetKeyId=key)
    aliases = {"kms:ResourceAliases": [f"alias/{name}-queue"]}
    assert resources(resolved("kms", "ScheduleKeyDeletion", KeyId=key)) == [("key", {}, aliases)]
    assert resources(resolved("kms", "ScheduleKeyDeletion", KeyId=f"alias/{name}-queue")) == [("key", {}, aliases)]
    bare = aws("kms").create_key()["KeyMetadata"]["KeyId"]
    assert resources(resolved("kms", "ScheduleKeyDeletion", KeyId=bare)) == [("key", {}, {"kms:ResourceAliases": []})]

    ours = {MANAGED_BY: "ec2spot.autorecover", LINEAGE: "pgdata"}
    volume_id = volume(ec2, ours)
    assert resources(resolved("ec2", "DeleteVolume", VolumeId=volume_id))[0][:2] == ("volume", ours)
    address = ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": [{"Key": MANAGED_BY, "Value": "ec2spot.autorecover"}]}])  # fmt: skip
    (released,) = resources(resolved("ec2", "ReleaseAddress", AllocationId=address["AllocationId"]))
    assert released[:2] == ("elastic-ip", {MANAGED_BY: "ec2spot.autorecover"})
    assert released[2]["ec2:AllocationId"] == address["AllocationId"]
    assert resources(resolved("ec2", "ReleaseAddress", PublicIp=address["PublicIp"]))[0][1] == released[1]
    assert resolved("ec2", "ReleaseAddress", AllocationId="eipalloc-nowhere") is None

    group_name = group(desired=0, Tags=[{"Key": MANAGED_BY, "Value": "ec2spot.autorecover", "PropagateAtLaunch": False,
                                         "ResourceId": "x", "ResourceType": "auto-scaling-group"}])  # fmt: skip
    assert resources(resolved("autoscaling", "DeleteAutoScalingGroup", AutoScalingGroupName=group_name)) == [
        ("autoScalingGroup", {MANAGED_BY: "ec2spot.autorecover"}, {})
    ]
    tags = [{"Key": MANAGED_BY, "Value": "ec2spot.autorecover", "ResourceId": group_name}]
    (create,) = resolved("autoscaling", "CreateAutoScalingGroup", AutoScalingGroupName="new-group", Tags=tags)
    assert dict(create.request_tags) == {MANAGED_BY: "ec2spot.autorecover"}
    (tagging,) = resolved("autoscaling", "CreateOrUpdateTags", Tags=tags)
    assert [r.arn.rsplit("/", 1)[1] for r in tagging.resources] == [group_name]
    assert dict(tagging.request_tags) == {MANAGED_BY: "ec2spot.autorecover"}
    (untagging,) = resolved("autoscaling", "DeleteTags", Tags=tags)
    assert untagging.tag_keys == (MANAGED_BY,)

    template_id = aws("fis").create_experiment_template(
        clientToken=uuid.uuid4().hex, description="d", roleArn=f"arn:aws:iam::{ACCOUNT}:role/pg-fis",
        stopConditions=[{"source": "none"}], actions={}, tags={"ec2spot:drill": "spot-interruption"},
    )["experimentTemplate"]["id"]  # fmt: skip
    assert resources(resolved("fis", "DeleteExperimentTemplate", f"/experimentTemplates/{template_id}")) == [
        ("experiment-template", {"ec2spot:drill": "spot-interruption"}, {})
    ]
    update = resolved("fis", "UpdateExperimentTemplate", f"/experimentTemplates/{template_id}",
                      actions={"interrupt": {"actionId": "aws:ec2:send-spot-instance-interruptions"}})  # fmt: skip
    assert [
        (r.type, r.arn.rsplit(":", 1)[-1] if r.type == "action" else dict(r.tags)) for r in update[0].resources
    ] == [
        ("experiment-template", {"ec2spot:drill": "spot-interruption"}),
        ("action", "send-spot-instance-interruptions"),
    ]


def test_the_control_plane_templates_and_alarms_are_resolved_with_their_tags(aws, ec2, role):
    """A Lambda function, a log group, an SNS topic, a CloudWatch alarm and a launch template are authorised with the
    tags they carry (``aws:ResourceTag/*``: the reference lists it for each of these resource types), as the deploy
    policies' deletes need them; one that does not exist (or an alarm named by a prefix) without tags. The context
    keeps the key only where the action's row lists it (sandbox/iam/requests.py)."""
    from sandbox.iam.resources import Params, resolve

    def resolved(service, action, path=None, **params):
        return resolve(service, action, Params(tree=params), ACCOUNT, "us-east-1", path=path)

    def tags(requests):
        return [dict(r.tags) for request in requests for r in request.resources]

    name = f"cp-{uuid.uuid4().hex[:8]}"
    ours = {MANAGED_BY: "ec2spot.autorecover", "team": "sre"}
    zipped = __import__("io").BytesIO()
    with __import__("zipfile").ZipFile(zipped, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    function_arn = aws("lambda").create_function(FunctionName=name, Runtime="python3.12", Role=role,
                                                 Handler="index.handler", Code={"ZipFile": zipped.getvalue()},
                                                 Tags=ours)["FunctionArn"]  # fmt: skip
    aws("logs").create_log_group(logGroupName=f"/aws/lambda/{name}", tags=ours)
    topic_arn = aws("sns").create_topic(Name=name, Tags=[{"Key": k, "Value": v} for k, v in ours.items()])["TopicArn"]
    aws("cloudwatch").put_metric_alarm(AlarmName=f"{name}-step-scaling-burst", MetricName="CPUUtilization",
                                       Namespace="AWS/EC2", Statistic="Average", Period=60, EvaluationPeriods=1,
                                       Threshold=90, ComparisonOperator="GreaterThanThreshold",
                                       Tags=[{"Key": k, "Value": v} for k, v in ours.items()])  # fmt: skip
    template_id = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"InstanceType": "m6i.large"},
                                             TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
                                                 {"Key": k, "Value": v} for k, v in ours.items()]}],
                                             )["LaunchTemplate"]["LaunchTemplateId"]  # fmt: skip

    quoted = function_arn.replace(":", "%3A")
    assert tags(resolved("lambda", "DeleteFunction", f"/2015-03-31/functions/{name}")) == [ours]
    assert tags(resolved("lambda", "UntagResource", f"/2017-03-31/tags/{quoted}")) == [ours]
    assert tags(resolved("logs", "DeleteLogGroup", logGroupName=f"/aws/lambda/{name}")) == [ours]
    assert tags(resolved("logs", "UntagLogGroup", logGroupName=f"/aws/lambda/{name}")) == [ours]
    assert tags(resolved("sns", "DeleteTopic", TopicArn=topic_arn)) == [ours]
    assert tags(resolved("sns", "UntagResource", ResourceArn=topic_arn)) == [ours]
    assert tags(resolved("cloudwatch", "DeleteAlarms", AlarmNames=[f"{name}-step-scaling-burst", "nowhere"])) == [
        ours, {}]  # fmt: skip
    assert tags(resolved("cloudwatch", "DescribeAlarms", AlarmNamePrefix=name)) == [{}]
    assert tags(resolved("ec2", "DeleteLaunchTemplate", LaunchTemplateId=template_id)) == [ours]
    assert tags(resolved("ec2", "CreateLaunchTemplateVersion", LaunchTemplateName=name)) == [ours]
    assert tags(resolved("lambda", "DeleteFunction", "/2015-03-31/functions/nowhere")) == [{}]
    assert tags(resolved("logs", "DeleteLogGroup", logGroupName="/aws/lambda/nowhere")) == [{}]
    assert tags(resolved("sns", "DeleteTopic", TopicArn=f"arn:aws:sns:us-east-1:{ACCOUNT}:nowhere")) == [{}]

    (delete,) = resolved("lambda", "DeleteFunction", f"/2015-03-31/functions/{name}")
    (check,) = delete.checks()
    assert check.context[f"aws:ResourceTag/{MANAGED_BY}"] == "ec2spot.autorecover"
    # lambda:DeleteFunction's row lists no aws:RequestTag: a request's tags never reach its context.
    assert not any(key.startswith("aws:RequestTag/") for key in check.context)


def test_a_function_created_or_given_a_role_passes_it_to_lambda(aws):
    """lambda:CreateFunction and UpdateFunctionConfiguration with a Role: iam:PassRole on that role, passed to
    lambda.amazonaws.com, beside the call on the function; a configuration update without a role passes none."""
    from sandbox.iam.requests import decide
    from sandbox.iam.resources import Params, resolve

    role = "arn:aws:iam::123456789012:role/pg-control-function"
    create, pass_role = resolve("lambda", "CreateFunction", Params(tree={"FunctionName": "pg-control", "Role": role}),
                                "123456789012", "us-east-1", path="/2015-03-31/functions")  # fmt: skip
    assert [c.resource for c in create.checks()] == ["arn:aws:lambda:us-east-1:123456789012:function:pg-control"]
    assert [(c.action, c.resource, c.context) for c in pass_role.checks()] == [
        ("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})
    ]
    (update,) = resolve("lambda", "UpdateFunctionConfiguration", Params(tree={"Timeout": 30}), "123456789012",
                        "us-east-1", path="/2015-03-31/functions/pg-control/configuration")  # fmt: skip
    assert update.action == "lambda:UpdateFunctionConfiguration"
    deployer = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::*:role/*-function",
         "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}}]}  # fmt: skip
    assert decide([deployer], pass_role).allowed
    other = resolve("lambda", "CreateFunction",
                    Params(tree={"FunctionName": "x", "Role": "arn:aws:iam::123456789012:role/admin"}),
                    "123456789012", "us-east-1", path="/2015-03-31/functions")[1]  # fmt: skip
    assert not decide([deployer], other).allowed


def test_a_launch_with_an_instance_profile_passes_its_role_to_ec2(aws, seeded):
    """ec2:RunInstances with an instance profile (named in the request or in its launch template) also asks
    iam:PassRole on the profile's role, passed to ec2.amazonaws.com; a profile without a role passes nothing."""
    from sandbox.iam.requests import decide
    from sandbox.iam.resources import Params, resolve

    iam = aws("iam")
    name = f"pg{uuid.uuid4().hex[:8]}-instance"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    empty = f"empty{uuid.uuid4().hex[:8]}"
    iam.create_instance_profile(InstanceProfileName=empty)
    launch = {"ImageId": seeded["image_id"], "SubnetId": seeded["subnets"]["us-east-1a"], "MinCount": "1",
              "MaxCount": "1"}  # fmt: skip
    run, pass_role = resolve("ec2", "RunInstances", Params(flat=dict(launch, **{"IamInstanceProfile.Name": name})),
                             "123456789012", "us-east-1")  # fmt: skip
    assert run.action == "ec2:RunInstances"
    assert [(c.action, c.resource, c.context) for c in pass_role.checks()] == [
        ("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"})
    ]
    deployer = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::*:role/*-instance",
         "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}]}  # fmt: skip
    assert decide([deployer], pass_role).allowed
    (alone,) = resolve("ec2", "RunInstances", Params(flat=dict(launch, **{"IamInstanceProfile.Name": empty})),
                       "123456789012", "us-east-1")  # fmt: skip
    assert alone.action == "ec2:RunInstances"


def test_target_registrations_are_authorised_on_the_target_group_they_name(aws):
    """elasticloadbalancing:RegisterTargets / DeregisterTargets on the target group ARN the request names, as the
    reference's targetgroup resource type: the instance's JoinTheFleetsTargetGroups / LeaveTheFleetsTargetGroups
    statements allow its fleet's group and no other (not authorised on ``*``, where they would match nothing)."""
    from sandbox.iam.requests import decide
    from sandbox.iam.resources import Params, resolve

    fleet = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/pg/0123456789abcdef"
    other = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/other/0123456789abcdef"
    instance = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
         "Resource": [fleet]}]}  # fmt: skip
    for action in ("RegisterTargets", "DeregisterTargets"):
        params = {"TargetGroupArn": [fleet], "Targets.member.1.Id": ["i-0123456789abcdef0"]}
        (request,) = resolve("elasticloadbalancing", action, Params(flat=params), "123456789012", "us-east-1")
        assert [(c.action, c.resource) for c in request.checks()] == [(f"elasticloadbalancing:{action}", fleet)]
        assert decide([instance], request).allowed
        (elsewhere,) = resolve("elasticloadbalancing", action, Params(flat=dict(params, TargetGroupArn=[other])),
                               "123456789012", "us-east-1")  # fmt: skip
        assert not decide([instance], elsewhere).allowed
