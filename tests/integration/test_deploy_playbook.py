"""deploy.yml through ``ansible-playbook`` in the sandbox: check mode, first run, second run unchanged.

Two services in one variables file, with different agent settings: each launch template carries its
own service's agent configuration and nothing of the other's.
"""

import base64
import gzip
import json
import os

import pytest
import yaml

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from sandbox import world as sandbox_world

from . import helpers
from .conftest import REPO, ansible_playbook

PLAYBOOK = os.path.join(REPO, "playbooks", "deploy.yml")
DESTROY = os.path.join(REPO, "playbooks", "destroy.yml")


def deploy_vars(world):
    subnets = [world["subnets"]["us-east-1a"], world["subnets"]["us-east-1b"]]
    return {
        "ec2spot_region": "us-east-1",
        "ec2spot_control_plane": {"name": "it-deploy", "log_retention_days": 7},
        "ec2spot_services": [
            {
                "name": "it-pg",
                "lineage": "it-pgdata",
                "image_id": world["image_id"],
                "instance_types": ["m6i.large", "m5.large"],
                "subnet_ids": subnets,
                "instance_profile": "it-deploy-given-instance",
                "data_volume": {"size": 20},
                "drill": True,
                "agent": {
                    "mount_point": "/var/lib/postgresql",
                    "app_start_commands": ["echo start pg"],
                    "app_stop_commands": ["echo stop pg"],
                    "drain_seconds": 5,
                },
            },
            {
                "name": "it-cache",
                "lineage": "it-cachedata",
                "image_id": world["image_id"],
                "instance_types": ["r6i.large"],
                "subnet_ids": subnets,
                "instance_profile": "it-deploy-given-instance",
                "address": False,
                "agent": {"app_start_commands": ["echo start cache"]},
            },
        ],
    }


@pytest.fixture(scope="module")
def deploy(sandbox, tmp_path_factory):
    variables = tmp_path_factory.mktemp("deploy") / "vars.json"

    def run(*extra, variables_document=None, playbook=PLAYBOOK):
        variables.write_text(json.dumps(variables_document or deploy_vars(sandbox["world"])))
        return ansible_playbook(sandbox, playbook, "-e", f"@{variables}", *extra)

    return run


@pytest.fixture(scope="module")
def runs(sandbox, deploy, session):
    iam = session.client("iam", endpoint_url=sandbox["endpoint"])
    sandbox_world.managed_instance_profile(iam, "it-deploy-given-instance")
    check = deploy("--check", "--diff")
    autoscaling = session.client("autoscaling", endpoint_url=sandbox["endpoint"])
    ec2 = session.client("ec2", endpoint_url=sandbox["endpoint"])
    after_check = {
        "groups": autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-pg", "it-cache"])[
            "AutoScalingGroups"
        ],
        "volumes": ec2.describe_volumes(
            Filters=[{"Name": f"tag:{t.LINEAGE}", "Values": ["it-pgdata", "it-cachedata"]}]
        )["Volumes"],
    }
    first = deploy()
    second = deploy()
    yield {"check": check, "after_check": after_check, "first": first, "second": second}
    for group in autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-pg", "it-cache"])[
        "AutoScalingGroups"
    ]:
        # nobody answers their launch hooks once the test is over
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group["AutoScalingGroupName"], ForceDelete=True)


def stats(run):
    return run[0]["stats"]["localhost"]


def messages(run):
    return [
        result.get("msg")
        for play in run[0]["plays"]
        for task in play["tasks"]
        for result in [task["hosts"].get("localhost", {})]
        if task["task"]["name"] == "Summary"
        for result in result.get("results", [])
    ]


def failures(run):
    return helpers.failed_tasks(run[0])


def test_check_mode_changes_nothing(runs):
    assert runs["check"][1] == 0, failures(runs["check"])
    assert runs["after_check"] == {"groups": [], "volumes": []}


def test_first_run_deploys_both_services_and_the_second_changes_nothing(runs, autoscaling, ec2):
    assert runs["first"][1] == 0, failures(runs["first"])
    assert stats(runs["first"])["changed"] > 0
    assert runs["second"][1] == 0 and stats(runs["second"])["changed"] == 0, [
        task["task"]["name"]
        for play in runs["second"][0]["plays"]
        for task in play["tasks"]
        if task["hosts"].get("localhost", {}).get("changed")
    ]
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-pg", "it-cache"])["AutoScalingGroups"]
    assert sorted(g["AutoScalingGroupName"] for g in groups) == ["it-cache", "it-pg"]
    assert all(g["CapacityRebalance"] and len(g["AvailabilityZones"]) == 2 for g in groups)
    volumes = ec2.describe_volumes(
        Filters=[
            {"Name": f"tag:{t.LINEAGE}", "Values": ["it-pgdata", "it-cachedata"]},
            {"Name": "tag-key", "Values": [t.GENERATION]},
        ]
    )["Volumes"]
    assert sorted(t.as_dict(v["Tags"])[t.LINEAGE] for v in volumes) == ["it-cachedata", "it-pgdata"]
    assert all(t.as_dict(v["Tags"])[t.FRESH] == "true" for v in volumes)
    summary = messages(runs["second"])
    assert len(summary) == 2 and "it-pg (lineage it-pgdata)" in summary[0] and "Elastic IP none" in summary[1]


def test_a_service_with_drill_gets_its_fis_template_and_the_others_do_not(runs, sandbox, session):
    fis = session.client("fis", endpoint_url=sandbox["endpoint"])
    templates = [
        s
        for s in fis.list_experiment_templates()["experimentTemplates"]
        if s.get("tags", {}).get("ec2spot:lineage") in ("it-pgdata", "it-cachedata")
    ]
    assert [s["tags"]["ec2spot:lineage"] for s in templates] == ["it-pgdata"]
    template = fis.get_experiment_template(id=templates[0]["id"])["experimentTemplate"]
    assert template["roleArn"].endswith(":role/it-pg-fis") and template["stopConditions"][0]["value"].endswith(
        ":alarm:it-pg-drill-stop"
    )


def test_the_groups_notify_the_configured_control_planes_topic(runs, autoscaling):
    configs = autoscaling.describe_notification_configurations(AutoScalingGroupNames=["it-pg", "it-cache"])[
        "NotificationConfigurations"
    ]
    assert configs and {c["TopicARN"].rsplit(":", 1)[1] for c in configs} == {"it-deploy"}


def agent_config(ec2, template_name):
    version = ec2.describe_launch_template_versions(LaunchTemplateName=template_name, Versions=["$Latest"])[
        "LaunchTemplateVersions"
    ][0]
    document = yaml.safe_load(gzip.decompress(base64.b64decode(version["LaunchTemplateData"]["UserData"])))
    [config] = [f["content"] for f in document["write_files"] if f["path"] == "/etc/ec2spot-agent/config.json"]
    return json.loads(config)


def test_each_service_gets_its_own_agent_configuration(runs, ec2):
    pg, cache = agent_config(ec2, "it-pg"), agent_config(ec2, "it-cache")
    assert (pg["lineage"], pg["mount_point"], pg["app_stop_commands"], pg["drain_seconds"]) == (
        "it-pgdata",
        "/var/lib/postgresql",
        ["echo stop pg"],
        5,
    )
    # nothing of pg's settings leaks into the next service of the same play
    assert (cache["lineage"], cache["mount_point"], cache["app_stop_commands"], cache["drain_seconds"]) == (
        "it-cachedata",
        "/data",
        [],
        30,
    )


def test_bad_variables_are_refused_before_anything_changes(deploy, sandbox, autoscaling):
    document = deploy_vars(sandbox["world"])
    document["ec2spot_services"][1]["lineage"] = document["ec2spot_services"][0]["lineage"]
    raw, code = deploy(variables_document=document)
    assert code != 0
    failed = [
        task["hosts"]["localhost"]
        for play in raw["plays"]
        for task in play["tasks"]
        if task["hosts"]["localhost"].get("failed")
    ]
    assert "a unique name and a unique lineage" in failed[0]["msg"] and "Nothing was changed" in failed[0]["msg"]


def test_a_second_group_with_the_services_lineage_is_refused_before_anything_changes(
    runs, deploy, sandbox, autoscaling, ec2
):
    """One lineage, one writer: instances of it-pgdata in another group make deploy.yml stop, naming that group."""
    world = sandbox["world"]
    sandbox_world.group(ec2, autoscaling, world, "it-rogue", zones=["us-east-1a"], tags={t.LINEAGE: "it-pgdata"})
    try:
        before = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-pg"])["AutoScalingGroups"]
        refused = deploy()
        assert refused[1] != 0
        [(task, message)] = failures(refused)
        assert task.endswith("Refuse a lineage whose instances belong to another Auto Scaling group than its service's")
        assert "lineage it-pgdata" in message and "group it-rogue (i-" in message and "Nothing was changed" in message
        assert autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-pg"])["AutoScalingGroups"] == before
    finally:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName="it-rogue", ForceDelete=True)
        ec2.delete_launch_template(LaunchTemplateName="it-rogue")


BACKUP = os.path.join(REPO, "playbooks", "backup.yml")


def test_backup_takes_todays_backup_once_and_check_mode_changes_nothing(runs, deploy, ec2):
    def backups():
        wanted = [
            {"Name": f"tag:{t.LINEAGE}", "Values": ["it-pgdata"]},
            {"Name": f"tag:{t.KIND}", "Values": ["volume"]},
        ]
        return ec2.describe_snapshots(OwnerIds=["self"], Filters=wanted)["Snapshots"]

    on_demand = ("-e", "backup_service=it-pg", "-e", "backup_schedule=false")  # the schedule: test_backup_schedule.py
    checked = deploy("--check", *on_demand, playbook=BACKUP)
    assert checked[1] == 0 and backups() == [], failures(checked)
    first = deploy(*on_demand, playbook=BACKUP)
    assert first[1] == 0, failures(first)
    assert len(backups()) == 1 and stats(first)["changed"] == 1
    second = deploy(*on_demand, playbook=BACKUP)
    assert second[1] == 0 and stats(second)["changed"] == 0 and len(backups()) == 1
    summary = [
        r["msg"]
        for play in second[0]["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Summary"
        for r in task["hosts"]["localhost"]["results"]
    ]
    assert len(summary) == 1 and "already taken, unchanged" in summary[0]
    unknown = deploy("-e", "backup_service=nope", playbook=BACKUP)
    assert unknown[1] != 0 and "Nothing was changed" in failures(unknown)[0][1]


def kept(run):
    return [
        result.get("msg")
        for play in run[0]["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "What was kept"
        for result in [task["hosts"].get("localhost", {})]
    ]


def test_destroy_removes_what_deploy_made_and_keeps_the_data(runs, deploy, sandbox, session, autoscaling, ec2):
    """Last in this module: it removes the deployment the tests above share."""
    lambda_client = session.client("lambda", endpoint_url=sandbox["endpoint"])
    volumes_before = ec2.describe_volumes(
        Filters=[
            {"Name": f"tag:{t.LINEAGE}", "Values": ["it-pgdata", "it-cachedata"]},
            {"Name": "tag-key", "Values": [t.GENERATION]},
        ]
    )["Volumes"]
    refused = deploy("-e", "destroy_delete_data=true", "-e", "destroy_confirm=it-pgdata", playbook=DESTROY)
    assert refused[1] != 0 and "destroy_confirm naming every lineage" in failures(refused)[0][1]

    checked = deploy("--check", playbook=DESTROY)
    assert checked[1] == 0, failures(checked)
    assert (
        len(autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-pg", "it-cache"])["AutoScalingGroups"])
        == 2
    )
    assert lambda_client.get_function(FunctionName="it-deploy")["Configuration"]["FunctionName"] == "it-deploy"

    destroyed = deploy(playbook=DESTROY)
    assert destroyed[1] == 0, failures(destroyed)
    assert (
        autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-pg", "it-cache"])["AutoScalingGroups"] == []
    )
    assert (
        ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": ["it-pg", "it-cache"]}])[
            "LaunchTemplates"
        ]
        == []
    )
    assert "it-deploy" not in [f["FunctionName"] for f in lambda_client.list_functions()["Functions"]]
    # The data and the address stay, and the play says so.
    volumes_after = ec2.describe_volumes(VolumeIds=[v["VolumeId"] for v in volumes_before])["Volumes"]
    assert len(volumes_after) == 2 and all(v["State"] == "available" for v in volumes_after)
    addresses = ec2.describe_addresses(Filters=[{"Name": f"tag:{t.LINEAGE}", "Values": ["it-pgdata"]}])["Addresses"]
    assert len(addresses) == 1
    [summary] = kept(destroyed)
    assert "Kept the data of it-pgdata, it-cachedata" in summary and addresses[0]["PublicIp"] in summary
    for volume in volumes_before:
        assert volume["VolumeId"] in summary

    again = deploy(playbook=DESTROY)
    assert again[1] == 0 and stats(again)["changed"] == 0, stats(again)
