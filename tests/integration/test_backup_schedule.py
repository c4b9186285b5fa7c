"""backup.yml's schedule through ``ansible-playbook`` in the sandbox, end to end.

deploy.yml (one service: a deployment is minutes of modeled work), then backup.yml installs the service's
EventBridge rule (check mode first: nothing; a second run: changed=0); the sandbox fires the schedule as AWS would
(sandbox/rules/schedules.py), its input transformer puts the `EC2Spot Scheduled Backup` envelope on the control
plane's queue, and the deployed handler (run by the sandbox from the uploaded zip) takes the backup and applies the
service's retention: by count, and by age alone (backups backdated with the sandbox's `ec2/backdate`). A redelivered
message takes nothing twice; without `schedule_expression` the rule goes to the
default daily schedule; `schedule: false` removes it; destroy.yml removes it.
"""

import json
import os
from datetime import datetime, timezone

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from sandbox import world as sandbox_world
from sandbox.scenario import eventually

from .conftest import REPO, ansible_playbook
from .test_deploy_playbook import deploy_vars

CONTROL_PLANE, PG = "it-bs", "it-bs-pg"
PG_RULE = f"{CONTROL_PLANE}-backup-{PG}"
# Twelve hours away: the wall clock (the scaled sandbox's clock) never reaches it while the test runs.
PG_HOUR = (datetime.now(timezone.utc).hour + 12) % 24
PG_SCHEDULE = f"cron(30 {PG_HOUR} * * ? *)"


def variables(world, **backup):
    """deploy_vars' first service, renamed, with retention and its own schedule (``backup`` overrides the settings)."""
    document = deploy_vars(world)
    document["ec2spot_control_plane"] = {"name": CONTROL_PLANE, "log_retention_days": 7}
    pg = document["ec2spot_services"][0]
    settings = {"keep_days": 3, "keep_newest": 2, "create_image": True, "schedule_expression": PG_SCHEDULE, **backup}
    pg.update(
        name=PG,
        lineage="it-bs-pgdata",
        instance_profile="it-bs-given-instance",
        backup={key: value for key, value in settings.items() if value is not None},
    )
    document["ec2spot_services"] = [pg]
    return document


@pytest.fixture(scope="module")
def play(sandbox, tmp_path_factory):
    path = tmp_path_factory.mktemp("backup-schedule") / "vars.json"

    def run(playbook, *extra, document=None):
        path.write_text(json.dumps(document or variables(sandbox["world"])))
        raw, code = ansible_playbook(sandbox, os.path.join(REPO, "playbooks", playbook), "-e", f"@{path}", *extra)
        tasks = [
            (task["task"]["name"], task["hosts"].get("localhost", {})) for p in raw["plays"] for task in p["tasks"]
        ]
        return {
            "code": code,
            "stats": raw["stats"]["localhost"],
            "tasks": tasks,
            "failed": [(name, result.get("msg")) for name, result in tasks if result.get("failed")],
            "summary": [r.get("msg") for name, result in tasks if name == "Summary" for r in result.get("results", [])],
        }

    return run


@pytest.fixture(scope="module")
def clients(sandbox, session):
    return {
        name: session.client(name, endpoint_url=sandbox["endpoint"])
        for name in ("events", "sqs", "ec2", "iam", "autoscaling")
    }


def schedule_rules(events):
    return {r["Name"]: r for r in events.list_rules(NamePrefix=f"{CONTROL_PLANE}-backup-")["Rules"]}


def backup_sets(ec2, lineage="it-bs-pgdata"):
    """backup set -> {"snapshots": [...], "images": [...]} of the lineage's backups."""
    found = {}
    wanted = [{"Name": f"tag:{t.LINEAGE}", "Values": [lineage]}, {"Name": f"tag:{t.KIND}", "Values": ["volume"]}]
    for snapshot in ec2.describe_snapshots(OwnerIds=["self"], Filters=wanted)["Snapshots"]:
        found.setdefault(t.as_dict(snapshot["Tags"])[t.BACKUP_SET], {"snapshots": [], "images": []})[
            "snapshots"
        ].append(snapshot["SnapshotId"])
    for image in ec2.describe_images(Owners=["self"], Filters=[{"Name": f"tag:{t.LINEAGE}", "Values": [lineage]}])[
        "Images"
    ]:
        found.setdefault(t.as_dict(image["Tags"])[t.BACKUP_SET], {"snapshots": [], "images": []})["images"].append(
            image["ImageId"]
        )
    return found


def wait_for_holder(ec2, box, lineage):
    """The group's first instance gets the lineage's volume through its launch hook and the handler."""

    def holders():
        box.call("lambda/drain", timeout=5)  # let the handler run what the launch queued
        volumes = ec2.describe_volumes(
            Filters=[{"Name": f"tag:{t.LINEAGE}", "Values": [lineage]}, {"Name": "tag-key", "Values": [t.GENERATION]}]
        )["Volumes"]
        return [a["InstanceId"] for v in volumes for a in v["Attachments"] if a["State"] == "attached"]

    return eventually(f"an instance holding {lineage}'s volume", holders, timeout=120, interval=0.1)[0]


def fire(box, rule):
    """Fire the rule's next due time, let the handler run, finish the backups (AWS: minutes)."""
    [firing] = box.fire_schedule(rule)
    box.call("lambda/drain", timeout=60)
    box.settle()
    return firing


@pytest.fixture(scope="module")
def flow(sandbox, box, play, clients):
    sandbox_world.managed_instance_profile(clients["iam"], "it-bs-given-instance")
    deployed = play("deploy.yml")
    assert deployed["code"] == 0, deployed["failed"]
    holder = wait_for_holder(clients["ec2"], box, "it-bs-pgdata")
    check = play("backup.yml", "--check")
    after_check = {"rules": schedule_rules(clients["events"]), "sets": backup_sets(clients["ec2"])}
    first = play("backup.yml")
    box.settle()
    second = play("backup.yml")
    yield {"holder": holder, "check": check, "after_check": after_check, "first": first, "second": second}
    for group in clients["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[PG])["AutoScalingGroups"]:
        clients["autoscaling"].delete_auto_scaling_group(
            AutoScalingGroupName=group["AutoScalingGroupName"], ForceDelete=True
        )


def test_check_mode_installs_nothing_and_says_so(flow):
    assert flow["check"]["code"] == 0, flow["check"]["failed"]
    assert flow["after_check"] == {"rules": {}, "sets": {}}
    assert flow["check"]["summary"] and all(
        "would be installed or kept (check mode" in line for line in flow["check"]["summary"]
    ), flow["check"]["summary"]


def queue_arn(clients):
    url = clients["sqs"].get_queue_url(QueueName=f"{CONTROL_PLANE}-events")["QueueUrl"]
    return clients["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_backup_installs_the_rule_to_the_queue_and_a_second_run_changes_nothing(flow, clients):
    assert flow["first"]["code"] == 0, flow["first"]["failed"]
    rules = schedule_rules(clients["events"])
    assert sorted(rules) == [PG_RULE]
    assert rules[PG_RULE]["ScheduleExpression"] == PG_SCHEDULE and rules[PG_RULE]["State"] == "ENABLED"
    [target] = clients["events"].list_targets_by_rule(Rule=PG_RULE)["Targets"]
    assert target["Arn"] == queue_arn(clients) and set(target["InputTransformer"]["InputPathsMap"]) == {
        "id",
        "time",
        "account",
        "region",
    }
    [line] = flow["first"]["summary"]
    assert f"schedule {PG_RULE} {PG_SCHEDULE} to {queue_arn(clients)} (installed)" in line, line
    assert flow["second"]["code"] == 0 and flow["second"]["stats"]["changed"] == 0, flow["second"]["stats"]
    assert flow["second"]["summary"] and all(line.endswith("(unchanged)") for line in flow["second"]["summary"]), flow[
        "second"
    ]["summary"]


def test_the_schedule_runs_the_backup_through_the_handler_with_retention(flow, box, clients, sqs_queue_url):
    ec2 = clients["ec2"]
    before = backup_sets(ec2)
    assert len(before) == 1  # backup.yml's own backup of today (the second run took nothing)
    on_demand = next(iter(before))

    first = fire(box, PG_RULE)
    envelope = json.loads(first["deliveries"][0]["body"])
    assert (envelope["source"], envelope["detail-type"], envelope["time"]) == (
        "ec2spot.autorecover",
        "EC2Spot Scheduled Backup",
        first["time"],
    )
    assert envelope["detail"] == {"lineage": "it-bs-pgdata", "max_age_days": 3, "keep_newest": 2, "create_image": True}
    due = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert (due.hour, due.minute) == (PG_HOUR, 30)
    scheduled = f"{PG}-scheduled-{due:%Y%m%d%H%M}"
    sets = backup_sets(ec2)
    assert sorted(sets) == sorted([on_demand, scheduled])
    assert len(sets[scheduled]["snapshots"]) == 1 and len(sets[scheduled]["images"]) == 1  # create_image: true

    # keep_newest 2 or younger than 3 days: a backup stays if either rule keeps it (issue 17). Two more nightly
    # runs, all within 3 days: nothing goes, although the on-demand backup is no longer among the newest two.
    second = fire(box, PG_RULE)
    third = fire(box, PG_RULE)
    names = [
        f"{PG}-scheduled-{datetime.fromisoformat(f['time'].replace('Z', '+00:00')):%Y%m%d%H%M}" for f in (second, third)
    ]
    assert sorted(backup_sets(ec2)) == sorted([on_demand, scheduled] + names)
    # Four days older: neither among the newest two of their kind nor within 3 days. The next run deletes them, the
    # AMIs with their snapshots; the second scheduled one, not among the newest two either, stays by its age.
    old = (
        before[on_demand]["snapshots"]
        + before[on_demand]["images"]
        + sets[scheduled]["snapshots"]
        + sets[scheduled]["images"]
    )
    box.call("ec2/backdate", ids=old, seconds=4 * 86400)
    fourth = fire(box, PG_RULE)
    names.append(f"{PG}-scheduled-{datetime.fromisoformat(fourth['time'].replace('Z', '+00:00')):%Y%m%d%H%M}")
    assert sorted(backup_sets(ec2)) == sorted(names)
    gone = before[on_demand]["images"] + sets[scheduled]["images"]
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": gone}])["Images"] == []
    ours = [s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]]
    assert not set(before[on_demand]["snapshots"] + sets[scheduled]["snapshots"]) & set(ours)
    third = fourth

    # SQS delivers at least once: the same message again takes nothing and deletes nothing more.
    kept = backup_sets(ec2)
    clients["sqs"].send_message(QueueUrl=sqs_queue_url, MessageBody=third["deliveries"][0]["body"])
    box.call("lambda/drain", timeout=60)
    box.settle()
    assert backup_sets(ec2) == kept
    [rerun] = box.call("lambda/runs", function=CONTROL_PLANE, limit=1)["runs"]
    assert rerun["error"] is None and f"backup {names[-1]} of {flow['holder']} (existing)" in rerun["log"], rerun[
        "log"
    ][-2000:]


def test_the_schedule_deletes_backups_older_than_keep_days_by_age_alone(flow, play, sandbox, box, clients):
    """keep_days without keep_newest: the schedule's run deletes what is older than the period and nothing else."""
    ec2 = clients["ec2"]
    by_age_only = play("backup.yml", document=variables(sandbox["world"], keep_newest=None))
    assert by_age_only["code"] == 0, by_age_only["failed"]
    box.settle()
    sets = backup_sets(ec2)
    scheduled = sorted(name for name in sets if "-scheduled-" in name)
    assert len(scheduled) == 3, sets
    last_week, recent = scheduled[0], scheduled[-1]
    box.call("ec2/backdate", ids=sets[last_week]["snapshots"] + sets[last_week]["images"], seconds=4 * 86400)

    firing = fire(box, PG_RULE)
    detail = json.loads(firing["deliveries"][0]["body"])["detail"]
    assert detail["max_age_days"] == 3 and detail.get("keep_newest") is None, detail
    left = backup_sets(ec2)
    assert last_week not in left and recent in left and len(left) == len(sets), (sorted(sets), sorted(left))
    gone = sets[last_week]["snapshots"] + sets[last_week]["images"]
    assert (
        ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": sets[last_week]["images"]}])[
            "Images"
        ]
        == []
    )
    assert not set(gone) & {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    [run] = box.call("lambda/runs", function=CONTROL_PLANE, limit=1)["runs"]
    assert run["error"] is None and "retention deleted 1 images" in run["log"], run["log"][-2000:]


@pytest.fixture(scope="module")
def sqs_queue_url(clients):
    return clients["sqs"].get_queue_url(QueueName=f"{CONTROL_PLANE}-events")["QueueUrl"]


def test_the_default_schedule_and_schedule_false(flow, play, sandbox, clients):
    daily = play("backup.yml", document=variables(sandbox["world"], schedule_expression=None))
    assert daily["code"] == 0, daily["failed"]
    assert schedule_rules(clients["events"])[PG_RULE]["ScheduleExpression"] == "cron(0 3 * * ? *)"  # daily, 03:00 UTC
    assert f"schedule {PG_RULE} cron(0 3 * * ? *) to {queue_arn(clients)} (installed)" in daily["summary"][0], daily[
        "summary"
    ]
    removed = play("backup.yml", document=variables(sandbox["world"], schedule=False))
    assert removed["code"] == 0, removed["failed"]
    assert schedule_rules(clients["events"]) == {}
    assert f"schedule {PG_RULE} removed" in removed["summary"][0], removed["summary"]
    again = play("backup.yml")
    assert again["code"] == 0 and sorted(schedule_rules(clients["events"])) == [PG_RULE], again["failed"]


def test_bad_settings_are_refused_before_anything_changes(flow, play, sandbox, clients):
    long_name = variables(sandbox["world"])
    long_name["ec2spot_control_plane"]["name"] = "x" * 60
    refused = play("backup.yml", document=long_name)
    assert (
        refused["code"] != 0
        and "at most 64 characters" in refused["failed"][0][1]
        and "Nothing was changed" in refused["failed"][0][1]
    )
    refused = play("backup.yml", document=variables(sandbox["world"], schedule_expression="daily at 3"))
    assert refused["code"] != 0 and f"backup settings of {PG} must be" in refused["failed"][0][1]
    refused = play("backup.yml", document=variables(sandbox["world"], keep_newest=0))
    assert refused["code"] != 0 and f"backup settings of {PG} must be" in refused["failed"][0][1]
    no_control_plane = variables(sandbox["world"])
    no_control_plane["ec2spot_control_plane"]["name"] = "it-bs-nowhere"
    refused = play("backup.yml", document=no_control_plane)
    assert refused["code"] != 0 and "run deploy.yml with this variables file first" in refused["failed"][0][1]
    assert sorted(schedule_rules(clients["events"])) == [PG_RULE]


def test_destroy_removes_the_schedules(flow, play, clients):
    """Last: it takes the deployment down."""
    checked = play("destroy.yml", "--check")
    assert checked["code"] == 0 and sorted(schedule_rules(clients["events"])) == [PG_RULE]
    destroyed = play("destroy.yml")
    assert destroyed["code"] == 0, destroyed["failed"]
    assert schedule_rules(clients["events"]) == {}
    again = play("destroy.yml")
    assert again["code"] == 0 and again["stats"]["changed"] == 0, again["stats"]
