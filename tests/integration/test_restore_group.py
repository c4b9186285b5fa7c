"""restore.yml into the service's group, end to end in the sandbox with the real control plane and real filesystems
(make demo's machinery): deploy, write canaries, back up, write more canaries, then roll the service back to the
backup with restore_target=group. The group is fenced (scaled to 0: its instance leaves through the terminate hook),
the backup is staged as the lineage's newest generation, and the group's next instance gets it from the control
plane: the canaries written before the backup are there, byte for byte, those written after are not (a rollback),
the old data is kept, and the Elastic IP is on the new instance. A second run changes nothing."""

import os
import tempfile

import pytest
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t

from sandbox import scenario
from sandbox.demo.__main__ import LINEAGE, SERVICE, Demo

from .conftest import REPO


@pytest.fixture(scope="module")
def demo():
    state_dir = tempfile.mkdtemp(prefix="ec2spot-restore-")
    run = Demo(scale=10.0, report_path=os.path.join(state_dir, "report.json"), verbose=False)
    try:
        run.start(state_dir)
        yield run
    finally:
        run.stop(state_dir)


def playbook(demo, name, *extra):
    raw, code, stderr = scenario.ansible_playbook(
        [os.path.join(REPO, "playbooks", name), "-e", f"@{demo.vars_path}", *extra], demo.env, REPO
    )
    return {"code": code, "stats": raw["stats"]["localhost"], "tasks": scenario.tasks_by_name(raw), "stderr": stderr}


def restore(demo, *extra, fence=True):
    """restore.yml of the demo's service into its group (restore_fence=true unless ``fence`` is false)."""
    fenced = ["-e", "restore_fence=true"] if fence else []
    return playbook(
        demo, "restore.yml", "-e", f"restore_service={SERVICE}", "-e", "restore_target=group", *fenced, *extra
    )


@pytest.fixture(scope="module")
def rollback(demo):
    holder = demo.deploy()
    ec2 = demo.aws("ec2")
    before = demo.write_canaries(holder, "before-backup")
    backed_up = playbook(demo, "backup.yml", "-e", "backup_wait=true", "-e", "backup_schedule=false")
    assert backed_up["code"] == 0, backed_up
    lineage_backups = [
        {"Name": f"tag:{t.LINEAGE}", "Values": [LINEAGE]},
        {"Name": f"tag:{t.KIND}", "Values": ["volume"]},
    ]
    backup = ec2.describe_snapshots(OwnerIds=["self"], Filters=lineage_backups)["Snapshots"]
    after = demo.write_canaries(holder, "after-backup")
    old_volume = ec2.describe_volumes(
        Filters=[
            {"Name": "attachment.instance-id", "Values": [holder]},
            {"Name": f"tag:{t.LINEAGE}", "Values": [LINEAGE]},
        ]
    )["Volumes"][0]["VolumeId"]
    refused = restore(demo, fence=False)
    checked = restore(demo, "--check")
    holder_after_check = ec2.describe_instances(InstanceIds=[holder])["Reservations"][0]["Instances"][0]["State"][
        "Name"
    ]
    restored = restore(demo)
    assert restored["code"] == 0, (restored["tasks"], restored["stderr"][-3000:])
    new_holder = restored["tasks"]["Wait until the group's instance holds the restored data"]["current"]["holder"][
        "instance_id"
    ]
    # The agent mounted the data and started the application: its boot report reached the operator.
    demo.eventually(
        "the restored instance's boot report",
        lambda: (
            demo.webhook.messages("recovered", instance_id=new_holder)
            + demo.webhook.messages("started", instance_id=new_holder)
        ),
        60,
    )
    if not demo.box.call("runtime/instances", instance_id=new_holder)["instances"][0]["mounted"]:
        demo.diagnose()
    again = restore(demo)
    return {
        "holder": holder,
        "new_holder": new_holder,
        "before": before,
        "after": after,
        "backup": backup,
        "old_volume": old_volume,
        "refused": refused,
        "checked": checked,
        "holder_after_check": holder_after_check,
        "restored": restored,
        "again": again,
    }


def test_a_running_group_instance_is_refused_without_the_fence(rollback):
    refused = rollback["refused"]
    assert refused["code"] != 0
    message = [task for task in refused["tasks"].values() if task.get("failed")][0]["msg"]
    assert rollback["holder"] in message and "restore_fence=true" in message and "Nothing was changed" in message


def test_check_mode_changes_nothing(rollback):
    assert rollback["checked"]["code"] == 0 and rollback["holder_after_check"] == "running"


def test_the_group_comes_back_with_the_backup_and_the_address(rollback, demo):
    assert len(rollback["backup"]) == 1
    [backup] = rollback["backup"]
    chosen = rollback["restored"]["tasks"]["Find where the data is, who writes it and which backup is meant"][
        "chosen_backup"
    ]
    assert chosen["snapshot_id"] == backup["SnapshotId"]
    new_holder = rollback["new_holder"]
    assert new_holder != rollback["holder"]
    intact, damaged = demo.check_canaries(new_holder, rollback["before"])
    assert intact, damaged
    missing = demo.check_canaries(new_holder, rollback["after"])[1]
    assert missing == sorted(rollback["after"])  # written after the backup: rolled back
    ec2 = demo.aws("ec2")
    old = ec2.describe_volumes(VolumeIds=[rollback["old_volume"]])["Volumes"][0]
    assert old["State"] == "available" and t.SUPERSEDED_BY in t.as_dict(old["Tags"])  # the newer data is kept
    address = ec2.describe_addresses(Filters=[{"Name": "tag:ec2spot:lineage", "Values": [LINEAGE]}])["Addresses"][0]
    assert address["InstanceId"] == new_holder
    summary = rollback["restored"]["tasks"]["What was restored"]["msg"]
    assert (
        f"in group {SERVICE} on {new_holder}" in summary
        and f"backup {backup['SnapshotId']}" in summary
        and "data age" in summary
    )
    assert "scaled to 0 and back" in summary


def test_a_second_run_changes_nothing(rollback):
    again = rollback["again"]
    assert again["code"] == 0 and again["stats"]["changed"] == 0, again["tasks"]
