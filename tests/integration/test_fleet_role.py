"""The fleet role through a real ``ansible-playbook`` run against the sandbox, checked with boto3.

The single stateful Spot instance with the instance agent as user data: check mode on an empty
account (the role's defaults: instance role and Elastic IP too) changes nothing; the first run
creates the fleet, the second changes nothing; the launch template carries the agent, the group
rebalances Spot capacity over two zones with both lifecycle hooks. The runs use an existing
instance profile and no Elastic IP (each AWS call costs a module run; the molecule scenario
covers the role-made IAM and address). Refused inputs fail before anything changes, with a
message that says why.
"""

import base64
import gzip
import hashlib
import json
import pathlib

import pytest
import yaml

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from sandbox import world as sandbox_world

from . import helpers
from .conftest import PlaybookRun, ansible_playbook

REPO = pathlib.Path(__file__).resolve().parents[2]

GROUP, LINEAGE, PROFILE = "it-fleet", "it-fleetdata", "it-fleet-given-instance"


def role_task(world, name=GROUP, lineage=LINEAGE, **overrides):
    """The fleet role with the defaults and the fewest variables, as a play's task."""
    role_vars = {
        "fleet_name": name,
        "fleet_lineage": lineage,
        "fleet_region": "us-east-1",
        "fleet_image_id": world["image_id"],
        "fleet_instance_types": ["m6i.large", "m5.large"],
        "fleet_subnet_ids": [world["subnets"]["us-east-1a"], world["subnets"]["us-east-1b"]],
        "fleet_instance_agent": {"mount_point": "/srv/data", "app_stop_commands": ["systemctl stop app"]},
    }
    role_vars.update(overrides)
    return {
        "name": f"fleet {name}",
        "ansible.builtin.include_role": {"name": "ec2spot.autorecover.fleet"},
        "vars": role_vars,
    }


def refused(world, case, **overrides):
    """The role in a block whose rescue reports the failure, so that one play tries several inputs."""
    return {
        "name": case,
        "block": [role_task(world, name=f"it-refused-{case}", lineage=f"it-refused-{case}", **overrides)],
        "rescue": [{"name": f"{case} refused", "ansible.builtin.debug": {"msg": "{{ ansible_failed_result.msg }}"}}],
    }


def changed_tasks(run):
    return helpers.changed_tasks(run.raw)


def described(aws, name=GROUP, lineage=LINEAGE):
    """What exists of a fleet, as AWS describes it."""
    ec2, asg, iam = aws("ec2"), aws("autoscaling"), aws("iam")
    templates = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])[
        "LaunchTemplates"
    ]
    return {
        "templates": templates,
        "groups": asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"],
        "volumes": ec2.describe_volumes(Filters=t.filters({t.LINEAGE: lineage}))["Volumes"],
        "addresses": ec2.describe_addresses(Filters=t.filters({"ec2spot:service": name}))["Addresses"],
        "roles": [role for role in iam.list_roles()["Roles"] if role["RoleName"] == f"{name}-instance"],
        "profiles": [
            p
            for p in iam.list_instance_profiles()["InstanceProfiles"]
            if p["InstanceProfileName"] == f"{name}-instance"
        ],
    }


@pytest.fixture(scope="module")
def aws(sandbox, session):
    return lambda service: session.client(service, endpoint_url=sandbox["endpoint"])


@pytest.fixture(scope="module")
def runs(sandbox, aws, tmp_path_factory):
    """Check mode (with the refused inputs), first run, second run of the same fleet, in this order."""

    def run(*plays):
        path = tmp_path_factory.mktemp("fleet") / "play.yml"
        path.write_text(
            json.dumps(
                [
                    {
                        "name": name,
                        "hosts": "localhost",
                        "connection": "local",
                        "gather_facts": False,
                        "check_mode": check,
                        "tasks": tasks,
                    }
                    for name, check, tasks in plays
                ]
            )
        )
        return PlaybookRun(*ansible_playbook(sandbox, str(path)))

    world = sandbox["world"]
    before = described(aws)
    # A forked lineage: two copies at the same generation. The role asks the core which is current, and the core
    # refuses to guess (the role used to pick one in Jinja).
    for unused in range(2):
        aws("ec2").create_volume(
            AvailabilityZone="us-east-1a",
            Size=10,
            VolumeType="gp3",
            Encrypted=True,
            TagSpecifications=[
                {"ResourceType": "volume", "Tags": t.as_list({t.LINEAGE: "it-refused-forked", t.GENERATION: 3})}
            ],
        )
    # One ansible-playbook for both (each run costs seconds): the fleet in check mode, then the refused inputs.
    check_and_refusals = run(
        ("check mode", True, [role_task(world)]),
        (
            "refused inputs",
            False,
            [
                refused(world, "one-zone", fleet_subnet_ids=[world["subnets"]["us-east-1a"]]),
                refused(world, "scaling-max-1", fleet_cpu_target=50),
                refused(world, "user-data-too-large", fleet_user_data="#cloud-config\n" + "#" * 17000 + "\n"),
                refused(world, "forked"),
            ],
        ),
    )
    after_check = described(aws)
    sandbox_world.managed_instance_profile(aws("iam"), PROFILE)
    deployed = role_task(world, fleet_instance_profile=PROFILE, fleet_address=False)
    first = run(("first run", False, [deployed]))
    second = run(("second run", False, [deployed]))
    yield {"before": before, "check": check_and_refusals, "after_check": after_check, "first": first, "second": second}
    # No control plane answers this group's launch hook: it would abandon and replace its instance for as long as
    # the shared sandbox runs, under the other module tests.
    aws("autoscaling").delete_auto_scaling_group(AutoScalingGroupName=GROUP, ForceDelete=True)


def task_results(run, play_name):
    return [task for play in run.raw["plays"] if play["play"]["name"] == play_name for task in play["tasks"]]


def test_check_mode_on_an_empty_account_changes_nothing(runs):
    assert runs["before"] == {key: [] for key in runs["before"]}
    assert runs["after_check"] == runs["before"]
    results = [task["hosts"]["localhost"] for task in task_results(runs["check"], "check mode")]
    assert not [result for result in results if result.get("failed")], [
        r.get("msg") for r in results if r.get("failed")
    ]
    # ... and says what it would create: role, policy, profile, volume, address, template, group
    assert len([result for result in results if result.get("changed")]) >= 6


def test_first_run_creates_the_fleet_and_the_second_changes_nothing(runs):
    assert runs["first"].returncode == 0, runs["first"].raw
    changed = sorted(
        task["task"]["name"].split(" : ")[-1]
        for task in task_results(runs["first"], "first run")
        if task["hosts"]["localhost"].get("changed")
    )
    # The agent's bucket and object are shared by the sandbox's fleets (one bucket per account and region, the
    # object named by its digest): another test's fleet may have stored them already.
    agent_tasks = {
        "The agent's bucket (private, encrypted, owner-enforced)",
        "The agent program, stored under its SHA-256",
    }
    assert [name for name in changed if name not in agent_tasks] == [
        "Auto Scaling group with its Spot settings, lifecycle hooks and notifications",
        "Create the lineage's first data volume in us-east-1a",
        "Launch template",
    ]
    assert runs["second"].returncode == 0, runs["second"].raw
    assert runs["second"].stats["changed"] == 0, changed_tasks(runs["second"])


def test_launch_template_carries_the_agent_for_the_lineage_with_imdsv2_and_an_encrypted_root(runs, aws):
    versions = aws("ec2").describe_launch_template_versions(LaunchTemplateName=GROUP)["LaunchTemplateVersions"]
    assert [version["VersionNumber"] for version in versions] == [1]
    data = versions[0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
    assert [(m["Ebs"]["Encrypted"], m["Ebs"]["VolumeType"]) for m in data["BlockDeviceMappings"]] == [(True, "gp3")]
    assert data["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{PROFILE}")
    for spec in data["TagSpecifications"]:
        tags = t.as_dict(spec["Tags"])
        assert tags[t.LINEAGE] == LINEAGE and t.GENERATION not in tags, spec
    raw = base64.b64decode(data["UserData"])
    assert len(raw) <= 16384
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    document = yaml.safe_load(text)
    assert text.startswith("#cloud-config\n")
    [config] = [json.loads(item["content"]) for item in document["write_files"] if item["path"].endswith("config.json")]
    assert (config["service"], config["lineage"], config["mount_point"]) == (GROUP, LINEAGE, "/srv/data")
    assert config["app_stop_commands"] == ["systemctl stop app"]
    # The user data carries the bootstrap; the agent it names is in S3, byte for byte the shipped program.
    [program] = [item["content"] for item in document["write_files"] if item["path"] == "/usr/local/sbin/ec2spot-agent"]
    assert program.encode() == (REPO / "roles" / "instance_agent" / "files" / "ec2spot_bootstrap.py").read_bytes()
    source = config["agent_source"]
    shipped = (REPO / "roles" / "instance_agent" / "files" / "ec2spot_agent.py").read_bytes()
    assert (
        source["sha256"] == hashlib.sha256(shipped).hexdigest()
        and source["key"] == f"ec2spot-agent/{source['sha256']}.py"
    )
    assert aws("s3").get_object(Bucket=source["bucket"], Key=source["key"])["Body"].read() == shipped


def test_group_rebalances_spot_capacity_over_two_zones_with_both_hooks(runs, aws):
    asg = aws("autoscaling")
    [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]
    assert group["CapacityRebalance"] is True
    assert sorted(group["AvailabilityZones"]) == ["us-east-1a", "us-east-1b"]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 1, 1)
    policy = group["MixedInstancesPolicy"]
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == ["m6i.large", "m5.large"]
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["Version"] == "1"
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    assert group["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 110}
    hooks = {
        hook["LifecycleHookName"]: (hook["LifecycleTransition"], hook["HeartbeatTimeout"], hook["DefaultResult"])
        for hook in asg.describe_lifecycle_hooks(AutoScalingGroupName=GROUP)["LifecycleHooks"]
    }
    assert hooks == {
        f"{GROUP}-launch": ("autoscaling:EC2_INSTANCE_LAUNCHING", 600, "ABANDON"),
        f"{GROUP}-terminate": ("autoscaling:EC2_INSTANCE_TERMINATING", 300, "CONTINUE"),
    }


def test_the_lineage_has_one_fresh_first_volume_and_nothing_else_is_made(runs, aws):
    fleet = described(aws)
    [volume] = [v for v in fleet["volumes"] if t.GENERATION in t.as_dict(v.get("Tags"))]
    tags = t.as_dict(volume["Tags"])
    assert (tags[t.GENERATION], tags[t.FRESH], tags[t.DEVICE]) == ("1", "true", "/dev/sdf")
    assert (volume["AvailabilityZone"], volume["Encrypted"], volume["VolumeType"], volume["Attachments"]) == (
        "us-east-1a",
        True,
        "gp3",
        [],
    )
    # the given instance profile, no Elastic IP
    assert (fleet["roles"], fleet["profiles"], fleet["addresses"]) == ([], [], [])


@pytest.mark.parametrize(
    "case, message",
    [
        ("one-zone", "at least two availability zones"),
        ("scaling-max-1", "fleet_max_size is 1: the group holds at most one instance"),
        ("user-data-too-large", "EC2 takes at most 16384 bytes"),
        ("forked", "lineage it-refused-forked has 2 volumes at generation 3"),
    ],
)
def test_refused_inputs_change_nothing_and_say_why(runs, aws, case, message):
    said = {
        task["task"]["name"]: task["hosts"]["localhost"].get("msg")
        for task in task_results(runs["check"], "refused inputs")
    }
    assert message in said[f"{case} refused"], said
    found = described(aws, name=f"it-refused-{case}", lineage=f"it-refused-{case}")
    assert len(found.pop("volumes")) == (2 if case == "forked" else 0)  # the fork's own two copies, nothing more
    assert found == {"templates": [], "groups": [], "addresses": [], "roles": [], "profiles": []}
