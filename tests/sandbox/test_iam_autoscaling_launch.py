"""Creating or updating an Auto Scaling group with a launch template launches as the caller (issue 19).

EC2 Auto Scaling user guide, "Amazon EC2 Auto Scaling API permissions" and "Control Amazon EC2 launch template usage
in Auto Scaling groups": a CreateAutoScalingGroup or UpdateAutoScalingGroup that names a launch template (in
``LaunchTemplate`` or ``MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification``) also asks
``ec2:RunInstances`` on what that template version launches and, when the version has an instance profile,
``iam:PassRole`` on the profile's role, passed to ``ec2.amazonaws.com``. An update without a template (the handler's
zone steering: only ``VPCZoneIdentifier``) asks neither.
"""

import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox.iam.project_policies import documented_policies, rendered_policies
from sandbox.iam.requests import decide
from sandbox.iam.resources import Params, resolve

ACCOUNT, REGION = "123456789012", "us-east-1"
MANAGED_BY = {"Key": "ec2spot:managed-by", "Value": "ec2spot.autorecover"}
MIXED = "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification"


def operator_policies():
    """What ``python -m sandbox start`` attaches to the operator: the three files of docs/iam/."""
    documents = documented_policies()
    return [documents[f"docs/{name}"] for name in ("modules-policy.json", "deploy-policy.json",
                                                   "deploy-fleet-policy.json")]  # fmt: skip


def profile(iam, role_name):
    """A role of that name with an instance profile of the same name (as roles/fleet/tasks/iam.yml makes them)."""
    arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    iam.create_instance_profile(InstanceProfileName=role_name)
    iam.add_role_to_instance_profile(InstanceProfileName=role_name, RoleName=role_name)
    return arn


@pytest.fixture(scope="module")
def fleet(aws, seeded):
    """A launch template shaped like roles/fleet/tasks/launch_template.yml's: version 1 with ``<service>-instance``'s
    profile (the fleet's), version 2 with another role's profile; the template tagged and tagging what it launches
    with the lineage."""
    iam, ec2 = aws("iam"), aws("ec2")
    service = f"pg{uuid.uuid4().hex[:6]}"
    ours = profile(iam, f"{service}-instance")
    theirs = profile(iam, f"admin{uuid.uuid4().hex[:6]}")
    tags = [MANAGED_BY, {"Key": "ec2spot:lineage", "Value": f"{service}data"}, {"Key": "Name", "Value": service}]
    data = {
        "ImageId": seeded["image_id"],
        "InstanceType": "m5.large",
        "IamInstanceProfile": {"Arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{service}-instance"},
        "MetadataOptions": {"HttpTokens": "required"},
        "TagSpecifications": [{"ResourceType": kind, "Tags": tags} for kind in ("instance", "volume")],
    }
    name = f"{service}-template"
    template = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data,
                                          TagSpecifications=[{"ResourceType": "launch-template", "Tags": [MANAGED_BY]}],
                                          )["LaunchTemplate"]  # fmt: skip
    other = dict(data, IamInstanceProfile={"Name": theirs.rsplit("/", 1)[-1]})
    ec2.create_launch_template_version(LaunchTemplateId=template["LaunchTemplateId"], LaunchTemplateData=other)
    return {"service": service, "name": name, "id": template["LaunchTemplateId"], "ours": ours, "theirs": theirs,
            "subnet": seeded["subnets"]["us-east-1a"]}  # fmt: skip


def create_params(fleet, version=None, where=MIXED, **more):
    params = {
        "AutoScalingGroupName": fleet["service"],
        "MinSize": "0",
        "MaxSize": "2",
        "VPCZoneIdentifier": fleet["subnet"],
        f"{where}.LaunchTemplateName": fleet["name"],
        "Tags.member.1.Key": MANAGED_BY["Key"],
        "Tags.member.1.Value": MANAGED_BY["Value"],
        "Tags.member.1.ResourceId": fleet["service"],
        "Tags.member.1.ResourceType": "auto-scaling-group",
        **more,
    }
    if version is not None:
        params[f"{where}.Version"] = version
    return params


def passed(requests):
    return [(c.resource, c.context) for r in requests if r.action == "iam:PassRole" for c in r.checks()]


@pytest.mark.parametrize("where", [MIXED, "LaunchTemplate"])
@pytest.mark.parametrize("action", ["CreateAutoScalingGroup", "UpdateAutoScalingGroup"])
def test_the_deploy_policy_creates_and_updates_a_group_that_passes_the_instance_role(fleet, action, where):
    requests = resolve("autoscaling", action, Params(flat=create_params(fleet, "1", where)), ACCOUNT, REGION)
    assert [r.action for r in requests] == [f"autoscaling:{action}", "ec2:RunInstances", "iam:PassRole"]
    assert passed(requests) == [(fleet["ours"], {"iam:PassedToService": "ec2.amazonaws.com"})]
    run = requests[1]
    template_arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/{fleet['id']}"
    assert template_arn in [resource.arn for resource in run.resources]
    assert all(resource.keys.get("ec2:LaunchTemplate") == template_arn for resource in run.resources)
    # the group itself on create (an update's group must exist, tagged: the server test below); then RunInstances
    # (with its tagging on create) and PassRole
    for request in requests if action == "CreateAutoScalingGroup" else requests[1:]:
        verdict = decide(operator_policies(), request)
        assert verdict.allowed, (request.action, verdict.refusal)


def test_a_template_whose_profile_names_another_role_is_refused(fleet):
    requests = resolve("autoscaling", "CreateAutoScalingGroup", Params(flat=create_params(fleet, "2")), ACCOUNT,
                       REGION)  # fmt: skip
    assert passed(requests) == [(fleet["theirs"], {"iam:PassedToService": "ec2.amazonaws.com"})]
    (pass_role,) = [r for r in requests if r.action == "iam:PassRole"]
    verdict = decide(operator_policies(), pass_role)
    assert not verdict.allowed and verdict.refusal[0].resource == fleet["theirs"]


@pytest.mark.parametrize(
    "version, roles",
    [
        (None, ["ours"]),  # no version: $Default, version 1 until the default changes
        ("$Default", ["ours"]),
        ("$Latest", ["theirs"]),
        ("1", ["ours"]),
        ("2", ["theirs"]),
        # spellings Auto Scaling refuses, some of which moto reads as another version: judged on every version
        ("0", ["ours", "theirs"]),
        ("-1", ["ours", "theirs"]),
        ("01", ["ours", "theirs"]),
        ("3", ["ours", "theirs"]),
        ("latest", ["ours", "theirs"]),
    ],
)
def test_the_version_is_resolved_as_auto_scaling_resolves_it(fleet, version, roles):
    requests = resolve("autoscaling", "CreateAutoScalingGroup", Params(flat=create_params(fleet, version)), ACCOUNT,
                       REGION)  # fmt: skip
    assert [resource for resource, _context in passed(requests)] == [fleet[role] for role in roles]


def test_a_template_by_id_is_the_same_template(fleet):
    params = create_params(fleet, "$Latest", "LaunchTemplate")
    del params["LaunchTemplate.LaunchTemplateName"]
    params["LaunchTemplate.LaunchTemplateId"] = fleet["id"]
    assert passed(resolve("autoscaling", "CreateAutoScalingGroup", Params(flat=params), ACCOUNT, REGION)) == [
        (fleet["theirs"], {"iam:PassedToService": "ec2.amazonaws.com"})
    ]


def test_zone_steering_asks_only_the_group_update():
    """The handler's zone steering (plugins/module_utils/recovery/handler/steering.py) updates only
    ``VPCZoneIdentifier``: no launch template, so neither ec2:RunInstances nor iam:PassRole, and the rendered function
    policy (DriveTheConfiguredGroupsLifecycle) allows it on its group and no other."""
    entry = rendered_policies()["function/example"]
    region = entry["facts"]["region"]
    steer = {"AutoScalingGroupName": "postgres", "VPCZoneIdentifier": "subnet-0123456789abcdef0"}
    (update,) = resolve("autoscaling", "UpdateAutoScalingGroup", Params(flat=steer), ACCOUNT, region)
    assert update.action == "autoscaling:UpdateAutoScalingGroup"
    assert decide([entry["document"]], update).allowed
    other = dict(steer, AutoScalingGroupName="someone-elses")
    (refused,) = resolve("autoscaling", "UpdateAutoScalingGroup", Params(flat=other), ACCOUNT, region)
    assert not decide([entry["document"]], refused).allowed


@pytest.fixture(scope="module")
def operator(aws, endpoint):
    """An IAM user carrying docs/iam/'s three policies, as ``python -m sandbox start`` makes the operator."""
    iam = aws("iam")
    name = f"operator-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    for index, document in enumerate(operator_policies()):
        arn = iam.create_policy(PolicyName=f"{name}-{index}", PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    session = boto3.session.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                                    region_name=REGION)  # fmt: skip
    return session.client("autoscaling", endpoint_url=endpoint)


def test_the_operator_creates_the_fleets_group_and_not_one_passing_another_role(aws, fleet, operator, enforcing):
    spec = {"LaunchTemplateName": fleet["name"]}
    common = {"MinSize": 0, "MaxSize": 1, "DesiredCapacity": 0, "VPCZoneIdentifier": fleet["subnet"]}

    def tags(name):
        return [dict(MANAGED_BY, ResourceId=name, ResourceType="auto-scaling-group", PropagateAtLaunch=True)]

    name = f"{fleet['service']}-ok"
    operator.create_auto_scaling_group(AutoScalingGroupName=name, Tags=tags(name), **common,
                                       MixedInstancesPolicy={"LaunchTemplate": {
                                           "LaunchTemplateSpecification": dict(spec, Version="1")}})  # fmt: skip
    operator.update_auto_scaling_group(AutoScalingGroupName=name, VPCZoneIdentifier=fleet["subnet"])
    with pytest.raises(ClientError) as refused:
        operator.update_auto_scaling_group(AutoScalingGroupName=name, MixedInstancesPolicy={"LaunchTemplate": {
            "LaunchTemplateSpecification": dict(spec, Version="2")}})  # fmt: skip
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert "iam:PassRole" in refused.value.response["Error"]["Message"]
    other = f"{fleet['service']}-no"
    with pytest.raises(ClientError):
        operator.create_auto_scaling_group(AutoScalingGroupName=other, Tags=tags(other), **common,
                                           LaunchTemplate=dict(spec, Version="$Latest"))  # fmt: skip
    enforcing.call("iam", enforce=False)
    groups = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name, other])["AutoScalingGroups"]
    assert [group["AutoScalingGroupName"] for group in groups] == [name]
    aws("autoscaling").delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
