"""The interruption handler on the sandbox's AWS (moto in-process with the sandbox rules).

The world: a Spot group of one instance across two zones with launch and terminate hooks,
its instance managed by SSM, a lineage volume attached, an Elastic IP, and an SNS topic
whose messages land in an SQS queue the tests read. Events are built as EventBridge
delivers them; the modeled clock moves only when the handler waits.
"""

import json
from datetime import timedelta

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import handler as recovery
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.handler import warning as warning_workflow
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from sandbox import scenario as sandbox_scenario
from sandbox import world as sandbox_world
from sandbox.clock import CONTEXT
from sandbox.scenario import GROUP, LINEAGE, World, envelope, warning  # noqa: F401 pylint: disable=unused-import


def batch(*bodies):
    return {"Records": [{"messageId": f"m{index}", "body": body} for index, body in enumerate(bodies)]}


@pytest.fixture
def fleet(aws, ec2, world):
    """``world`` (conftest) holds the seeded VPC ids; ``fleet`` the recovery world on top of it."""
    return World(world)


def test_warning_for_an_unmanaged_instance_is_ignored_without_side_effects(fleet, launch):
    stranger = launch()
    outcome = fleet.handler.handle(warning(stranger))
    assert outcome == f"ignored: {stranger} is not a managed instance"
    assert progress.read(fleet.instance(stranger)) == {} and fleet.messages() == [] and fleet.ssm_commands() == []


def test_warning_stops_snapshots_and_releases_the_volume_early(fleet):
    outcome = fleet.handler.handle(warning(fleet.first))
    assert outcome == f"warning handled for {fleet.first}: stop ok"
    [message] = fleet.messages()
    assert message["event"] == "interruption-warning" and message["instance_id"] == fleet.first
    health = fleet.autoscaling.describe_auto_scaling_instances(InstanceIds=[fleet.first])["AutoScalingInstances"]
    assert health == [] or health[0]["HealthStatus"].upper() == "UNHEALTHY"  # replaced (gone from the group) or marked
    [command] = fleet.ssm_commands()
    assert command["document"] == "AWS-RunShellScript" and command["commands"][:2] == [
        "echo stopping > app.stopped",
        "sync",
    ]
    snaps = fleet.clients["ec2"].describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{t.BACKUP_SET}", "Values": ["pg-interruption"]}]
    )["Snapshots"]
    assert [(s["VolumeId"], t.as_dict(s["Tags"])[t.LINEAGE], t.as_dict(s["Tags"])[t.GENERATION]) for s in snaps] == [
        (fleet.volume, LINEAGE, "1")
    ]
    assert fleet.volume_state(fleet.volume) == ("available", [])  # released before the instance died
    assert [r["force"] for r in CONTEXT.records.get("detaches", [])] == [False]
    done = progress.read(fleet.instance(fleet.first))
    assert progress.outcome_of(done["snapshot"]) == "pg-interruption consistent"
    assert progress.outcome_of(done["released"]) == fleet.volume


def test_duplicate_warning_does_nothing_twice(fleet):
    fleet.handler.handle(warning(fleet.first))
    fleet.messages()
    fleet.handler.handle(warning(fleet.first))
    assert fleet.messages() == [] and len(fleet.ssm_commands()) == 1
    snaps = fleet.clients["ec2"].describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{t.BACKUP_SET}", "Values": ["pg-interruption"]}]
    )["Snapshots"]
    assert len(snaps) == 1


@pytest.mark.parametrize("outcome", ["Failed", "TimedOut", "Undeliverable"])
def test_failed_stop_still_snapshots_crash_consistent_and_keeps_the_volume(fleet, outcome):
    CONTEXT.call_control("ssm/script", {"instance_id": fleet.first, "outcome": outcome, "exit_code": 3})
    fleet.handler.handle(warning(fleet.first))
    events = [m["event"] for m in fleet.messages()]
    assert events == ["interruption-warning", "crash-consistent-snapshot"]
    done = progress.read(fleet.instance(fleet.first))
    assert progress.outcome_of(done["stopped"]).startswith("failed")
    assert progress.outcome_of(done["snapshot"]) == "pg-interruption crash-consistent"
    assert "released" not in done
    assert fleet.volume_state(fleet.volume) == ("in-use", [(fleet.first, "attached")])


def test_stop_deadline_comes_from_the_notice_time(fleet):
    late = CONTEXT.now() - timedelta(seconds=110)  # the notice was 110 s ago: 10 s left, less than the reserve
    fleet.handler.handle(warning(fleet.first, when=late))
    assert fleet.ssm_commands() == []
    assert (
        progress.outcome_of(progress.read(fleet.instance(fleet.first))["stopped"])
        == "failed: no time left before the interruption"
    )


def test_replacement_in_another_zone_gets_restored_data_address_and_continue(fleet):
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP, VPCZoneIdentifier=fleet.seeded["subnets"]["us-east-1b"]
    )
    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(60)  # the snapshot completes; the group's replacement launch is waiting on its hook
    [action] = fleet.pending_launches()
    replacement = action["instance_id"]
    assert fleet.instance(replacement)["Placement"]["AvailabilityZone"] == "us-east-1b"

    outcome = fleet.handler.handle(fleet.launch_event(action))

    assert outcome.startswith(f"replacement {replacement} has the data")
    restored = [
        v
        for v in fleet.clients["ec2"].describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [replacement]}]
        )["Volumes"]
        if t.as_dict(v.get("Tags")).get(t.LINEAGE) == LINEAGE and t.GENERATION in t.as_dict(v.get("Tags"))
    ]
    assert len(restored) == 1 and restored[0]["AvailabilityZone"] == "us-east-1b"
    assert (
        fleet.clients["ec2"].describe_addresses(AllocationIds=[fleet.address["AllocationId"]])["Addresses"][0][
            "InstanceId"
        ]
        == replacement
    )
    group = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
    assert {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}[replacement] == "InService"
    assert fleet.handler.handle(fleet.launch_event(action)).startswith("duplicate")


def test_launch_action_before_the_warning_waits_for_the_data(fleet):
    """Out of order: the replacement's hook fires while the old instance still runs its app."""
    fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    [action] = fleet.pending_launches()
    result = recovery.process_batch(batch(fleet.launch_event(action)), fleet.handler)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m0"}]}  # redelivered later
    assert fleet.volume_state(fleet.volume) == ("in-use", [(fleet.first, "attached")])
    fleet.handler.handle(warning(fleet.first))  # now the app is stopped and the volume released
    assert recovery.process_batch(batch(fleet.launch_event(action)), fleet.handler) == {"batchItemFailures": []}
    assert fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]


def test_launch_without_any_snapshot_is_abandoned_with_an_alert(fleet):
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP, VPCZoneIdentifier=fleet.seeded["subnets"]["us-east-1b"]
    )
    fleet.clients["ec2"].stop_instances(
        InstanceIds=[fleet.first]
    )  # old holder stopped: no fence, but no snapshot either
    CONTEXT.advance(60)
    action = next(a for a in fleet.pending_launches() if a["instance_id"] != fleet.first)
    outcome = fleet.handler.handle(fleet.launch_event(action))
    assert outcome.startswith(f"abandoned {action['instance_id']}") and "no completed snapshot" in outcome
    [message] = fleet.messages()
    assert (message["event"], message["step"], message["launches_suspended"]) == ("failed", "launch", True)


def test_missed_warning_takes_a_protective_snapshot_and_completes_the_hook(fleet):
    CONTEXT.call_control("autoscaling/terminate", {"instance_id": fleet.first})
    [action] = [
        a
        for a in CONTEXT.call_control("autoscaling/actions", {"group": GROUP})["actions"]
        if a["transition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    ]
    body = envelope(
        "aws.autoscaling",
        "EC2 Instance-terminate Lifecycle Action",
        {
            "LifecycleActionToken": action["token"],
            "AutoScalingGroupName": GROUP,
            "LifecycleHookName": "terminate",
            "EC2InstanceId": fleet.first,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        },
    )
    outcome = fleet.handler.handle(body)
    assert outcome == f"terminate action for {fleet.first}: crash-consistent snapshot pg-interruption"
    assert [m["event"] for m in fleet.messages()] == ["missed-warning"]
    assert fleet.instance(fleet.first)["State"]["Name"] == "terminated"  # the hook was completed
    state_change = envelope(
        "aws.ec2", "EC2 Instance State-change Notification", {"instance-id": fleet.first, "state": "terminated"}
    )
    assert fleet.handler.handle(state_change).endswith("already handled")


def test_rebalance_snapshots_without_stopping(fleet):
    body = envelope("aws.ec2", "EC2 Instance Rebalance Recommendation", {"instance-id": fleet.first})
    assert "snapshot pg-rebalance-" in fleet.handler.handle(body)
    assert fleet.ssm_commands() == [] and fleet.instance(fleet.first)["State"]["Name"] == "running"
    assert fleet.handler.handle(body).endswith("(existing)")


def test_boot_report_publishes_success_with_timeline_and_data_age(fleet):
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP, VPCZoneIdentifier=fleet.seeded["subnets"]["us-east-1b"]
    )
    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(60)
    [action] = fleet.pending_launches()
    replacement = action["instance_id"]
    CONTEXT.advance(20)  # the replacement boots in Pending:Wait and finds no data attached yet
    assert fleet.handler.handle(ready(replacement)) == f"{replacement} of pg is ready for its data"
    assert fleet.handler.handle(ready(replacement)).startswith(f"duplicate: {replacement} already ready since")
    fleet.handler.handle(fleet.launch_event(action))
    fleet.messages()
    report = envelope(
        "ec2spot.autorecover",
        "EC2Spot Recovery Boot Report",
        {
            "instance-id": replacement,
            "lineage": LINEAGE,
            "phases": {"mounted": "2026-11-24T10:00:05Z", "app_started": "soon"},
        },
    )
    assert fleet.handler.handle(report) == f"success of {action['instance_id']} reported"
    # The boot phases stay on the replacement as progress (the drill reads them); a stamp that does not parse is left out.
    kept = {k: v for k, v in t.as_dict(fleet.instance(action["instance_id"])["Tags"]).items() if "progress:boot-" in k}
    assert kept == {"ec2spot:progress:boot-mounted": "2026-11-24T10:00:05Z"}
    [message] = fleet.messages()
    assert message["event"] == "recovered" and message["replaced"] == fleet.first
    assert message["data_age_seconds"] > 0 and message["recovery_seconds"] > 0
    assert {
        "old.warned",
        "old.stopped",
        "old.snapshot",
        "old.released",
        "new.ready",
        "new.attached",
        "new.address",
        "new.continued",
        "boot.mounted",
    } <= set(message["timeline"])
    assert fleet.handler.handle(report).startswith("duplicate")
    phases = {
        d["Value"]
        for m in fleet.clients["cloudwatch"].list_metrics(Namespace="EC2Spot/AutoRecover", MetricName="PhaseSeconds")[
            "Metrics"
        ]
        for d in m["Dimensions"]
        if d["Name"] == "Phase"
    }
    assert phases == {"ready", "stop", "snapshot", "release", "attach", "address", "hook"}


def ready(instance_id, lineage=LINEAGE):
    """What the agent of ``instance_id`` puts on the bus when it is up and no data volume is attached to it."""
    return envelope(
        "ec2spot.autorecover",
        "EC2Spot Replacement Ready",
        {"instance-id": instance_id, "lineage": lineage, "service": "pg", "waiting-since": "2026-11-24T10:00:00Z"},
    )


def test_readiness_is_recorded_only_for_a_running_instance_of_a_managed_lineage(fleet):
    ec2 = fleet.clients["ec2"]
    stranger = sandbox_world.launch(ec2, fleet.seeded, "us-east-1a", {t.LINEAGE: "someone-else"})
    assert fleet.handler.handle(ready(stranger, "someone-else")) == f"ignored: {stranger} is not a managed instance"
    ec2.stop_instances(InstanceIds=[fleet.first])
    CONTEXT.advance(60)
    assert fleet.handler.handle(ready(fleet.first)) == f"ignored: {fleet.first} is stopped, not waiting for data"
    assert "ready" not in progress.read(fleet.instance(fleet.first))


def test_first_boot_report_says_started_and_clears_the_fresh_mark(fleet):
    ec2 = fleet.clients["ec2"]
    ec2.create_tags(Resources=[fleet.volume], Tags=[{"Key": t.FRESH, "Value": "true"}])
    report = envelope(
        "ec2spot.autorecover",
        "EC2Spot Recovery Boot Report",
        {
            "instance-id": fleet.first,
            "lineage": LINEAGE,
            "volume-id": fleet.volume,
            "initialised": True,
            "phases": {"formatted": "2026-11-24T10:00:03Z", "mounted": "2026-11-24T10:00:05Z"},
        },
    )
    assert fleet.handler.handle(report) == f"start of {fleet.first} reported"
    [message] = fleet.messages()
    assert message["event"] == "started" and message["initialised"] is True and "formatted" in message["summary"]
    tags = t.as_dict(ec2.describe_volumes(VolumeIds=[fleet.volume])["Volumes"][0]["Tags"])
    assert t.FRESH not in tags and tags[t.GENERATION] == "1"
    assert fleet.handler.handle(report).startswith("duplicate") and fleet.messages() == []


def test_boot_report_clears_fresh_only_on_its_own_attached_lineage_volume(fleet):
    ec2 = fleet.clients["ec2"]
    elsewhere = ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=1,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": t.as_list({t.LINEAGE: LINEAGE, t.GENERATION: 0, t.FRESH: "true"})}
        ],
    )["VolumeId"]  # not attached to the reporter
    other_lineage = ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=1,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": t.as_list({t.LINEAGE: "billing", t.GENERATION: 1, t.FRESH: "true"})}
        ],
    )["VolumeId"]
    ec2.attach_volume(VolumeId=other_lineage, InstanceId=fleet.first, Device="/dev/sdg")
    CONTEXT.advance(5)
    for volume_id in (elsewhere, other_lineage, "vol-0123456789abcdef0", 42):
        report = envelope(
            "ec2spot.autorecover",
            "EC2Spot Recovery Boot Report",
            {"instance-id": fleet.first, "lineage": LINEAGE, "volume-id": volume_id, "phases": {}},
        )
        fleet.handler.handle(report)
    for volume_id in (elsewhere, other_lineage):
        assert t.as_dict(ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Tags"])[t.FRESH] == "true"


def scheduled_backup(when=None, **detail):
    return envelope("ec2spot.autorecover", "EC2Spot Scheduled Backup", dict({"lineage": LINEAGE}, **detail), when)


def test_scheduled_backup_snapshots_the_holder_once_and_applies_retention(fleet):
    ec2 = fleet.clients["ec2"]
    start = CONTEXT.now()
    outcomes = []
    for unused_day in range(9):  # daily, keep 7 days (seed 001)
        CONTEXT.advance(86400)
        body = scheduled_backup(max_age_days=7)
        outcomes.append(fleet.handler.handle(body))
        CONTEXT.settle()
    assert outcomes[0].startswith("backup pg-scheduled-") and "(new)" in outcomes[0]
    assert all("retention deleted 0 images and 0 snapshots" in outcome for outcome in outcomes[:7])
    assert "retention deleted 0 images and 1 snapshots" in outcomes[7] and "and 1 snapshots" in outcomes[8]
    lineage_snapshots = {"Name": f"tag:{t.LINEAGE}", "Values": [LINEAGE]}
    snapshots = ec2.describe_snapshots(OwnerIds=["self"], Filters=[lineage_snapshots])["Snapshots"]
    assert len(snapshots) == 7 and all((CONTEXT.now() - s["StartTime"]).total_seconds() <= 7 * 86400 for s in snapshots)
    assert start < min(s["StartTime"] for s in snapshots)
    again = fleet.handler.handle(body)  # the same schedule fire redelivered: the same set, taken once
    assert "(existing)" in again and "deleted 0 images and 0 snapshots" in again
    assert len(ec2.describe_snapshots(OwnerIds=["self"], Filters=[lineage_snapshots])["Snapshots"]) == 7


def test_scheduled_backup_is_refused_or_ignored_on_bad_input(fleet):
    assert fleet.handler.handle(scheduled_backup(lineage="billing")) == "ignored: lineage billing is not managed"
    for detail, message in (
        ({"keep_newest": 0}, "keep_newest must be an integer from 1 to 1000"),
        ({"max_age_days": "7"}, "max_age_days must be an integer"),
        ({"create_image": "yes"}, "create_image must be true or false"),
        ({"lineage": "../etc"}, "detail.lineage"),
    ):
        with pytest.raises(recovery.events.InvalidEvent, match=message):
            fleet.handler.handle(scheduled_backup(**detail))


def test_crash_between_steps_resumes_on_redelivery(fleet, monkeypatch):
    real = warning_workflow.backup_instance
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the function was killed here")
        return real(*args, **kwargs)

    monkeypatch.setattr(warning_workflow, "backup_instance", crash_once)  # the warning's snapshot step
    assert recovery.process_batch(batch(warning(fleet.first)), fleet.handler) == {
        "batchItemFailures": [{"itemIdentifier": "m0"}]
    }
    assert recovery.process_batch(batch(warning(fleet.first)), fleet.handler) == {"batchItemFailures": []}
    assert [m["event"] for m in fleet.messages()] == ["interruption-warning"]  # published once
    assert len(fleet.ssm_commands()) == 1
    assert fleet.volume_state(fleet.volume) == ("available", [])


def test_snapshot_failure_is_retried(fleet, monkeypatch):
    from botocore.exceptions import ClientError

    failing = fleet.clients["ec2"]

    def refuse(**_kwargs):
        raise ClientError(
            {"Error": {"Code": "SnapshotCreationPerVolumeRateExceeded", "Message": "slow down"}}, "CreateSnapshots"
        )

    monkeypatch.setattr(failing, "create_snapshots", refuse)
    assert recovery.process_batch(batch(warning(fleet.first)), fleet.handler) == {
        "batchItemFailures": [{"itemIdentifier": "m0"}]
    }
    assert fleet.volume_state(fleet.volume) == (
        "in-use",
        [(fleet.first, "attached")],
    )  # nothing released without a snapshot


HOSTILE = [
    None,
    42,
    "",
    "not json",
    "[]",
    "null",
    json.dumps("string"),
    "{" * 10,
    "x" * (300 * 1024),
    json.dumps({"source": "aws.ec2"}),
    json.dumps({"source": "evil.source", "detail-type": "EC2 Spot Instance Interruption Warning", "detail": {}}),
    json.dumps(
        {
            "source": "aws.ec2",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "detail": "nope",
            "time": "2026-11-24T10:00:00Z",
        }
    ),
    json.dumps(
        {
            "source": "aws.ec2",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "detail": {},
            "time": "2026-11-24T10:00:00Z",
        }
    ),
    json.dumps(
        {
            "source": "aws.ec2",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "time": "2026-11-24T10:00:00Z",
            "detail": {"instance-id": 7, "instance-action": "terminate"},
        }
    ),
    json.dumps(
        {
            "source": "aws.ec2",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "time": "2026-11-24T10:00:00Z",
            "detail": {"instance-id": "i-; rm -rf /", "instance-action": "terminate"},
        }
    ),
    json.dumps(
        {
            "source": "aws.ec2",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "time": "2026-11-24T10:00:00Z",
            "detail": {"instance-id": "i-0123456789abcdef0", "instance-action": "explode"},
        }
    ),
    json.dumps(
        {
            "source": "aws.ec2",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "time": "yesterday",
            "detail": {"instance-id": "i-0123456789abcdef0", "instance-action": "terminate"},
        }
    ),
    json.dumps(
        {
            "source": "aws.ec2",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "time": "2026-11-24T10:00:00",
            "detail": {"instance-id": "i-0123456789abcdef0", "instance-action": "terminate"},
        }
    ),
    json.dumps(
        {
            "source": "aws.autoscaling",
            "detail-type": "EC2 Instance-launch Lifecycle Action",
            "time": "2026-11-24T10:00:00Z",
            "detail": {
                "EC2InstanceId": "i-0123456789abcdef0",
                "AutoScalingGroupName": GROUP,
                "LifecycleHookName": "launch",
            },
        }
    ),
    json.dumps(
        {
            "source": "aws.autoscaling",
            "detail-type": "EC2 Instance-launch Lifecycle Action",
            "time": "2026-11-24T10:00:00Z",
            "detail": {
                "EC2InstanceId": "i-0123456789abcdef0",
                "AutoScalingGroupName": GROUP,
                "LifecycleHookName": "launch",
                "LifecycleActionToken": "not-a-token",
            },
        }
    ),
    json.dumps(
        {
            "source": "aws.ec2",
            "detail-type": "EC2 Instance State-change Notification",
            "time": "2026-11-24T10:00:00Z",
            "detail": {"instance-id": "i-0123456789abcdef0", "state": {"nested": True}},
        }
    ),
    json.dumps(
        {"source": "ec2spot.autorecover", "detail-type": "Something Else", "time": "2026-11-24T10:00:00Z", "detail": {}}
    ),
]


def test_hostile_and_malformed_events_are_dropped_with_a_reason_and_counted(fleet, caplog):
    assert len(HOSTILE) >= 20
    caplog.set_level("WARNING")
    result = recovery.process_batch(
        {"Records": [{"messageId": f"h{i}", "body": body} for i, body in enumerate(HOSTILE)]}, fleet.handler
    )
    assert result == {"batchItemFailures": []}  # dropped, never redelivered: no crash loop
    dropped = [r.getMessage() for r in caplog.records if "dropped invalid event" in r.getMessage()]
    assert len(dropped) == len(HOSTILE)
    assert fleet.ssm_commands() == [] and fleet.messages() == []


def test_unknown_instance_ids_and_batches_that_are_not_sqs_do_nothing(fleet):
    assert (
        fleet.handler.handle(warning("i-0123456789abcdef0")) == "ignored: i-0123456789abcdef0 is not a managed instance"
    )
    assert recovery.process_batch({"not": "sqs"}, fleet.handler) == {"batchItemFailures": []}
    assert recovery.process_batch("garbage", fleet.handler) == {"batchItemFailures": []}


def test_throttled_calls_are_retried_transparently(fleet, monkeypatch):
    from botocore.retries import standard
    from .test_addresses_and_aws import throttle

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)
    throttle(fleet.clients["ec2"], 3)
    assert fleet.handler.handle(warning(fleet.first)) == f"warning handled for {fleet.first}: stop ok"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "not JSON"),
        ({"services": []}, "non-empty 'services'"),
        ({"services": [{"name": "pg", "lineage": "bad lineage!"}]}, "invalid lineage name"),
        ({"services": [{"name": "pg", "lineage": "a", "stop_commands": "systemctl stop x"}]}, "must be a list"),
        ({"services": [{"name": "pg", "lineage": "a", "surprise": 1}]}, "unknown keys: surprise"),
        ({"services": [{"name": "a", "lineage": "x"}, {"name": "b", "lineage": "x"}]}, "configured twice"),
    ],
)
def test_bad_configuration_is_refused_precisely(bad, message):
    from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import InvalidInput

    with pytest.raises(InvalidInput, match=message):
        handler_config.parse(bad)


def test_launch_waits_for_the_interruption_snapshot_still_in_progress(fleet):
    """AWS keeps a snapshot pending for minutes: the replacement must get the newest data, not
    an older snapshot and not an abandon."""
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP, VPCZoneIdentifier=fleet.seeded["subnets"]["us-east-1b"]
    )
    fleet.handler.handle(warning(fleet.first))  # interruption snapshot taken: pending for 50 modeled s
    [action] = fleet.pending_launches()
    pending = fleet.clients["ec2"].describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{t.BACKUP_SET}", "Values": ["pg-interruption"]}]
    )["Snapshots"][0]
    assert pending["State"] == "pending"
    outcome = fleet.handler.handle(fleet.launch_event(action))
    assert pending["SnapshotId"] in outcome  # restored from the interruption snapshot once it completed


def test_retry_is_made_visible_again_soon(fleet):
    sqs = fleet.clients["sqs"]
    url = sqs.create_queue(QueueName="events", Attributes={"VisibilityTimeout": "5400"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    [action] = fleet.pending_launches()
    sqs.send_message(QueueUrl=url, MessageBody=fleet.launch_event(action))
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    record = {
        "messageId": message["MessageId"],
        "body": message["Body"],
        "receiptHandle": message["ReceiptHandle"],
        "eventSourceARN": arn,
    }
    calls = []
    sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility", lambda params, **_kw: calls.append(dict(params))
    )
    assert recovery.process_batch({"Records": [record]}, fleet.handler) == {
        "batchItemFailures": [{"itemIdentifier": message["MessageId"]}]
    }
    [call] = calls
    assert call["QueueUrl"] == url and recovery.RETRY_AFTER // 2 <= call["VisibilityTimeout"] <= recovery.RETRY_AFTER


def _behind_a_target_group(fleet):
    """The fleet's group attached to a target group, as fleet_target_group_arns does."""
    ec2 = fleet.clients["ec2"]
    subnet = fleet.seeded["subnets"]["us-east-1a"].split(",")[0]
    vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    elbv2 = sandbox_scenario.client("elbv2")
    arn = elbv2.create_target_group(Name="pg", Protocol="TCP", Port=5432, VpcId=vpc, TargetType="instance")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    fleet.autoscaling.attach_load_balancer_target_groups(AutoScalingGroupName=GROUP, TargetGroupARNs=[arn])
    return arn


def _targets(arn):
    health = sandbox_scenario.client("elbv2").describe_target_health(TargetGroupArn=arn)
    return {d["Target"]["Id"] for d in health["TargetHealthDescriptions"] if d["TargetHealth"]["State"] != "draining"}


def _lifecycle_state(fleet, instance_id):
    group = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
    return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}[instance_id]


def _started(replacement, status="ok"):
    return envelope(
        "ec2spot.autorecover",
        "EC2Spot Recovery Boot Report",
        {"instance-id": replacement, "lineage": LINEAGE, "status": status, "phases": {"app_started": "soon"}},
    )


def test_behind_a_target_group_the_launch_action_waits_for_the_applications_start(fleet):
    """Completed at the attach, the action would put the replacement InService and Auto Scaling would register it
    before its application runs (failed checks: unhealthy, then five passes). Held until the agent's report, the
    agent's own registration comes first; a redelivered launch keeps waiting; the report completes it once."""
    target_group = _behind_a_target_group(fleet)
    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(60)
    [action] = fleet.pending_launches()
    replacement = action["instance_id"]

    outcome = fleet.handler.handle(fleet.launch_event(action))
    assert replacement not in _targets(target_group)  # the group registers it only InService

    assert outcome.startswith(f"replacement {replacement} has the data")
    assert outcome.endswith(
        "; its launch action completes when its agent reports the application started (1 target group(s): the agent "
        "registers it first), at the latest 240 s from now"
    )
    assert fleet.volume_state(fleet.volume)[1] == [(replacement, "attached")]
    assert _lifecycle_state(fleet, replacement) == "Pending:Wait"
    held = progress.read_outcome(progress.read(fleet.instance(replacement)), "awaiting-start")
    assert held == progress.HeldLaunch("launch", action["token"])
    assert "its launch action waits for the application's start since" in fleet.handler.handle(
        fleet.launch_event(action)
    )
    assert _lifecycle_state(fleet, replacement) == "Pending:Wait"

    assert fleet.handler.handle(_started(replacement)) == (
        f"success of {replacement} reported; launch action of {replacement} completed (its agent reported)"
    )
    assert _lifecycle_state(fleet, replacement) == "InService" and replacement in _targets(target_group)
    completion = progress.read_outcome(progress.read(fleet.instance(replacement)), "continued")
    assert completion == progress.LifecycleCompletion(action["token"])
    assert fleet.handler.handle(_started(replacement)) == f"duplicate: success of {replacement} already reported"
    assert fleet.handler.handle(fleet.launch_event(action)).startswith("duplicate")


@pytest.mark.parametrize("status", [None, "refused"])
def test_a_start_hold_is_kept_alive_by_the_sweep_and_ends_at_its_limit_or_at_any_report(fleet, status):
    """No report in time (status None): the sweep heartbeats a younger hold and completes one older than the limit,
    so the action never reaches its own timeout, whose ABANDON would terminate an instance holding the data. A failed
    boot report ends the hold too: the agent is done starting."""
    _behind_a_target_group(fleet)
    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(60)
    [action] = fleet.pending_launches()
    replacement = action["instance_id"]
    fleet.handler.handle(fleet.launch_event(action))
    sweep = envelope("ec2spot.autorecover", "EC2Spot Sweep", {})
    CONTEXT.advance(100)
    assert f"launch action of {replacement} kept for its application's start (100 s so far)" in fleet.handler.handle(
        sweep
    )
    assert _lifecycle_state(fleet, replacement) == "Pending:Wait"
    if status:
        outcome = fleet.handler.handle(_started(replacement, status))
        assert outcome.endswith(f"; launch action of {replacement} completed (its agent reported)")
    else:
        CONTEXT.advance(150)
        assert (
            f"launch action of {replacement} completed (no report of the application's start in 250 s)"
            in fleet.handler.handle(sweep)
        )
    assert _lifecycle_state(fleet, replacement) == "InService"
    assert replacement not in fleet.handler.handle(sweep)  # released once
