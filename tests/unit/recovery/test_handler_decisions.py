"""The handler's decisions on well-formed events, each rule with the exact mutating calls it makes (or does not).

The world is sandbox.scenario's (a Spot group of one, its volume, its address, the handler); every client call is
recorded, and each case compares the list of calls that change something (not Describe/Get/List).
"""

import json
import logging
from datetime import timedelta

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import handler as recovery
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import volumes
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import WaitTimeout
from sandbox.clock import CONTEXT
from sandbox.scenario import GROUP, LINEAGE, World, envelope, warning

READ_ONLY = ("Describe", "Get", "List")


class Calls:
    """Every operation the handler's clients send, in order."""

    def __init__(self, clients):
        self.made = []
        for client in clients.values():
            client.meta.events.register("before-call", self._record)

    def _record(self, model, **kwargs):
        self.made.append(model.name)

    def mutating(self):
        return [name for name in self.made if not name.startswith(READ_ONLY)]

    def clear(self):
        self.made.clear()


@pytest.fixture
def fleet(aws, ec2, world):
    return World(world)


@pytest.fixture
def calls(fleet):
    return Calls(fleet.clients)


def with_service(fleet, **settings):
    """The fleet's handler with its service's configuration changed."""
    return fleet.configure(**settings)


def terminate_action(fleet, instance_id, token, **detail):
    return envelope(
        "aws.autoscaling",
        "EC2 Instance-terminate Lifecycle Action",
        {
            "LifecycleActionToken": token,
            "AutoScalingGroupName": GROUP,
            "LifecycleHookName": "terminate",
            "EC2InstanceId": instance_id,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            **detail,
        },
    )


# ---- interruption behaviours: stop and hibernate keep the instance and its data ---------------------------------


def test_stop_warning_stops_the_app_and_snapshots_but_keeps_the_instance_and_its_volume(fleet, calls):
    notice = warning(fleet.first, action="stop")
    outcome = fleet.handler.handle(notice)

    assert outcome.startswith(f"stop warning handled for {fleet.first}: the instance keeps its data")
    assert "SetInstanceHealth" not in calls.made and "DetachVolume" not in calls.made
    assert calls.mutating().count("SendCommand") == 1 and calls.mutating().count("CreateSnapshots") == 1
    assert fleet.volume_state(fleet.volume) == ("in-use", [(fleet.first, "attached")])
    [message] = fleet.messages()
    assert (message["event"], message["instance_action"], message["stop"]) == ("interruption-stop", "stop", "ok")
    assert message["snapshot"].endswith("consistent") and "kept" in message["summary"]
    done = progress.read(fleet.instance(fleet.first))
    assert "warned" not in done and "unhealthy" not in done and "released" not in done
    calls.clear()
    assert fleet.handler.handle(notice).startswith("duplicate")  # redelivered
    assert calls.mutating() == [] and fleet.messages() == []


@pytest.mark.parametrize("snapshot, expected", [(False, []), (True, ["CreateSnapshots"])])
def test_hibernate_warning_never_stops_the_app_and_snapshots_only_when_asked(fleet, calls, snapshot, expected):
    with_service(fleet, hibernate_snapshot=snapshot)
    fleet.handler.handle(warning(fleet.first, action="hibernate"))

    assert [
        c for c in calls.mutating() if c in ("SendCommand", "SetInstanceHealth", "DetachVolume", "CreateSnapshots")
    ] == expected
    [message] = fleet.messages()
    assert message["event"] == "interruption-hibernate" and message["stop"] == "not stopped: hibernation keeps memory"


def test_a_terminate_warning_after_a_handled_stop_is_handled_in_full(fleet):
    fleet.handler.handle(warning(fleet.first, action="stop"))
    CONTEXT.advance(300)
    assert fleet.handler.handle(warning(fleet.first)) == f"warning handled for {fleet.first}: stop ok"


# ---- holder, not tag ---------------------------------------------------------------------------------------------


def test_warning_for_an_instance_that_no_longer_holds_the_current_data_does_nothing(fleet, calls, launch):
    """Still tagged with the lineage, but the current generation moved to another instance."""
    ec2 = fleet.clients["ec2"]
    newer = launch(lineage=LINEAGE)
    volume = ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=20,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": t.as_list({t.LINEAGE: LINEAGE, t.GENERATION: 2, t.HOLDER: newer})}
        ],
    )["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=newer, Device="/dev/sdf")
    CONTEXT.advance(5)
    calls.clear()

    for body in (
        warning(fleet.first),
        envelope("aws.ec2", "EC2 Instance Rebalance Recommendation", {"instance-id": fleet.first}),
    ):
        assert "not the holder of the current generation" in fleet.handler.handle(body)
    assert calls.mutating() == [] and fleet.messages() == [] and fleet.ssm_commands() == []


def test_the_recorded_holder_is_still_the_holder_after_its_volume_was_released(fleet):
    fleet.handler.handle(warning(fleet.first))
    assert fleet.volume_state(fleet.volume)[0] == "available"
    assert fleet.handler.handle(warning(fleet.first)) == f"warning handled for {fleet.first}: stop ok"  # redelivery


# ---- instance state ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["stopped", "terminated"])
def test_warning_for_an_instance_already_going_away_sends_no_stop_and_alerts_once(fleet, calls, state):
    ec2 = fleet.clients["ec2"]
    fleet.autoscaling.detach_instances(
        InstanceIds=[fleet.first], AutoScalingGroupName=GROUP, ShouldDecrementDesiredCapacity=True
    )
    (ec2.stop_instances if state == "stopped" else ec2.terminate_instances)(InstanceIds=[fleet.first])
    CONTEXT.advance(5)
    calls.clear()

    fleet.handler.handle(warning(fleet.first))
    fleet.handler.handle(warning(fleet.first))

    assert "SendCommand" not in calls.made and "SetInstanceHealth" not in calls.made
    assert [m["event"] for m in fleet.messages()] == ["missed-warning"]


# ---- lifecycle tokens and warm pools ----------------------------------------------------------------------------


def test_a_terminate_action_is_completed_once_per_token(fleet, calls):
    token = "c613620e-07e2-4ed2-a9e2-ef8258911ade"
    fleet.handler.handle(warning(fleet.first))
    calls.clear()
    for unused_delivery in range(3):
        fleet.handler.handle(terminate_action(fleet, fleet.first, token))
    assert calls.mutating().count("CompleteLifecycleAction") == 1


def test_scale_in_to_a_warm_pool_is_not_a_loss(fleet, calls):
    token = "0b9b1a3e-6f0c-4a8e-9d55-3c1f6a2b7e10"
    outcome = fleet.handler.handle(
        terminate_action(fleet, fleet.first, token, Origin="AutoScalingGroup", Destination="WarmPool")
    )

    assert "warm pool" in outcome
    assert calls.mutating() == ["CompleteLifecycleAction", "CreateTags"]  # completed once, token recorded
    assert fleet.messages() == []
    done = progress.read(fleet.instance(fleet.first))
    assert "protected" not in done
    # ...so its later, real termination gets the protective snapshot and the alert
    fleet.handler.handle(terminate_action(fleet, fleet.first, "1b9b1a3e-6f0c-4a8e-9d55-3c1f6a2b7e11"))
    assert [m["event"] for m in fleet.messages()] == ["missed-warning"]


def test_a_launch_back_from_the_warm_pool_with_its_own_volume_moves_nothing(fleet, calls):
    token = "2b9b1a3e-6f0c-4a8e-9d55-3c1f6a2b7e12"
    body = envelope(
        "aws.autoscaling",
        "EC2 Instance-launch Lifecycle Action",
        {
            "LifecycleActionToken": token,
            "AutoScalingGroupName": GROUP,
            "LifecycleHookName": "launch",
            "EC2InstanceId": fleet.first,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
            "Origin": "WarmPool",
            "Destination": "AutoScalingGroup",
        },
    )

    fleet.handler.handle(body)

    assert "AttachVolume" not in calls.made and "DetachVolume" not in calls.made and "CreateVolume" not in calls.made
    assert calls.mutating().count("CompleteLifecycleAction") == 1
    assert fleet.volume_state(fleet.volume) == ("in-use", [(fleet.first, "attached")])


# ---- the envelope, end to end through a batch ------------------------------------------------------------------


def test_an_event_for_another_account_is_dropped_counted_and_calls_nothing(fleet, calls, caplog):
    foreign = warning(fleet.first).replace('"account": "123456789012"', '"account": "210987654321"')
    caplog.set_level(logging.INFO)
    answer = recovery.process_batch({"Records": [{"messageId": "m1", "body": foreign}]}, fleet.handler)
    assert answer == {"batchItemFailures": []}
    assert calls.mutating() == ["PutMetricData"] and fleet.ssm_commands() == []
    assert "account 210987654321 is not this function's" in caplog.text


def test_a_rebalance_after_a_handled_warning_is_not_an_error(fleet, caplog):
    fleet.handler.handle(warning(fleet.first))
    caplog.set_level(logging.INFO)
    rebalance = envelope("aws.ec2", "EC2 Instance Rebalance Recommendation", {"instance-id": fleet.first})
    recovery.process_batch({"Records": [{"messageId": "m1", "body": rebalance}]}, fleet.handler)
    assert "already being interrupted" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---- planned interruptions: AWS Health, the agent's report, the sweep ----------------------------------------------


def health_event(instance_id, start, code="AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"):
    return envelope(
        "aws.health",
        "AWS Health Event",
        {
            "eventArn": f"arn:aws:health:us-east-1::event/EC2/{code}/x",
            "service": "EC2",
            "eventTypeCode": code,
            "eventTypeCategory": "scheduledChange",
            "startTime": start.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "statusCode": "upcoming",
            "affectedAccount": "123456789012",
            "affectedEntities": [{"entityValue": instance_id}],
        },
    )


def sweep():
    return envelope("ec2spot.autorecover", "EC2Spot Sweep", {})


def test_a_retirement_days_away_is_snapshotted_now_and_handed_off_only_when_due(fleet, calls):
    start = CONTEXT.now() + timedelta(days=2)
    body = health_event(fleet.first, start)

    outcome = fleet.handler.handle(body)

    assert "hand-off due at" in outcome
    assert [c for c in calls.mutating() if c not in ("CreateTags", "Publish", "PutMetricData")] == ["CreateSnapshots"]
    [message] = fleet.messages()
    assert (message["event"], message["code"]) == ("planned-interruption", "instance-retirement")
    calls.clear()
    fleet.handler.handle(body)  # redelivered: nothing again
    assert calls.mutating() == [] and fleet.messages() == []


def test_a_retirement_inside_the_lead_is_handed_off_at_once_before_it_begins(fleet, calls):
    with_service(fleet, planned_lead=3600)
    start = (CONTEXT.now() + timedelta(minutes=30)).replace(microsecond=0)
    outcome = fleet.handler.handle(health_event(fleet.first, start))

    assert outcome == f"{fleet.first}: instance-retirement: handed off before {start:%H:%M:%S}Z, stop ok"
    made = calls.mutating()
    assert made.count("CreateSnapshots") == 2  # the fresh one, then the hand-off's consistent set
    assert "SetInstanceHealth" in made and "SendCommand" in made and "DetachVolume" in made
    assert fleet.volume_state(fleet.volume)[0] == "available"


def test_a_health_event_for_an_instance_that_is_not_the_holder_does_nothing(fleet, calls, launch):
    stranger = launch(lineage=LINEAGE)
    assert "not the holder" in fleet.handler.handle(health_event(stranger, CONTEXT.now() + timedelta(days=1)))
    assert calls.mutating() == []


def test_a_lost_volume_is_reported_and_nothing_is_moved(fleet, calls):
    body = envelope(
        "aws.health",
        "AWS Health Event",
        {
            "service": "EBS",
            "eventTypeCode": "AWS_EBS_VOLUME_LOST",
            "eventTypeCategory": "issue",
            "startTime": "Mon, 07 Dec 2026 01:00:00 GMT",
            "affectedEntities": [{"entityValue": fleet.volume}],
        },
    )
    assert "nothing moved" in fleet.handler.handle(body)
    assert calls.mutating() == ["Publish", "PutMetricData"]
    [message] = fleet.messages()
    assert message["event"] == "volume-lost" and message["holder"] == fleet.first


def test_the_agents_report_is_acted_on_only_when_ec2_lists_the_event(fleet, calls):
    report = envelope(
        "ec2spot.autorecover",
        "EC2Spot Scheduled Maintenance",
        {"instance-id": fleet.first, "code": "instance-retirement", "not-before": "2026-12-30T00:00:00Z"},
    )
    assert "EC2 lists no instance-retirement" in fleet.handler.handle(report)
    assert calls.mutating() == []
    CONTEXT.call_control(
        "ec2/schedule-event",
        {"instance_id": fleet.first, "code": "instance-retirement", "lead": 86400, "health": False},
    )
    assert "hand-off due at" in fleet.handler.handle(report)
    assert [m["event"] for m in fleet.messages()] == ["planned-interruption"]


def test_the_sweep_finds_an_unannounced_retirement_and_hands_off_when_it_is_due(fleet, calls):
    with_service(fleet, planned_lead=600)
    CONTEXT.call_control(
        "ec2/schedule-event", {"instance_id": fleet.first, "code": "instance-retirement", "lead": 3600, "health": False}
    )  # AWS Health never delivers it
    assert "hand-off due at" in fleet.handler.handle(sweep())
    assert [m["event"] for m in fleet.messages()] == ["planned-interruption"]
    assert "SetInstanceHealth" not in calls.made
    CONTEXT.advance(3000 + 5)  # past start - planned_lead, before start
    assert "handed off" in fleet.handler.handle(sweep())
    assert "SetInstanceHealth" in calls.made and fleet.volume_state(fleet.volume)[0] == "available"
    calls.clear()
    fleet.handler.handle(sweep())
    assert [c for c in calls.mutating() if c != "PutMetricData"] == []


def test_the_sweep_alerts_once_for_a_holder_gone_without_any_event(fleet, calls):
    fleet.autoscaling.detach_instances(
        InstanceIds=[fleet.first], AutoScalingGroupName=GROUP, ShouldDecrementDesiredCapacity=True
    )
    fleet.clients["ec2"].stop_instances(InstanceIds=[fleet.first])
    CONTEXT.advance(5)
    assert "crash-consistent snapshot" in fleet.handler.handle(sweep())
    [message] = fleet.messages()
    assert (
        message["event"] == "missed-warning"
        and message["reason"] == "the sweep found it stopped and no interruption of it was handled"
    )
    assert "nothing unannounced" in fleet.handler.handle(sweep())
    assert fleet.messages() == []


# ---- the service's address ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "holder_lineage, take_from_any, moved",
    [
        (LINEAGE, False, True),  # the previous holder's kind: the service's own instance
        ("billing", False, False),  # another service's instance: not taken, said
        (None, False, False),  # an instance of no lineage
        ("billing", True, True),  # the operator allowed taking it from anything
    ],
)
def test_the_address_is_taken_only_from_the_lineage_unless_allowed(fleet, launch, holder_lineage, take_from_any, moved):
    with_service(fleet, address_take_from_any=take_from_any)
    ec2 = fleet.clients["ec2"]
    holder = launch(lineage=holder_lineage) if holder_lineage else launch()
    ec2.associate_address(AllocationId=fleet.address["AllocationId"], InstanceId=holder, AllowReassociation=True)
    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(60)
    [action] = fleet.pending_launches()
    fleet.messages()

    outcome = fleet.handler.handle(fleet.launch_event(action))

    on = ec2.describe_addresses(AllocationIds=[fleet.address["AllocationId"]])["Addresses"][0].get("InstanceId")
    assert on == (action["instance_id"] if moved else holder)
    assert outcome.startswith(f"replacement {action['instance_id']} has the data")  # the data moved either way
    failed = [m for m in fleet.messages() if m["event"] == "failed"]
    if moved:
        assert failed == []
    else:
        [message] = failed
        assert (message["step"], message["holder"], message["instance_id"]) == (
            "address",
            holder,
            action["instance_id"],
        )
        assert "not taken" in message["summary"]


def test_a_refusal_reported_by_the_agent_is_a_failed_message_at_once_and_once(fleet, calls):
    report = envelope(
        "ec2spot.autorecover",
        "EC2Spot Recovery Boot Report",
        {
            "instance-id": fleet.first,
            "lineage": LINEAGE,
            "status": "refused",
            "volume-id": fleet.volume,
            "device": "/dev/nvme1n1",
            "reason": "refusing vol-1 for lineage pgdata: its data belongs to lineage 'billing'\\x1b[2J",
        },
    )
    assert fleet.handler.handle(report) == f"failed boot of {fleet.first} reported: refused"
    assert fleet.handler.handle(report).startswith("duplicate")
    assert calls.mutating() == ["Publish", "PutMetricData", "CreateTags"]  # nothing touched: told, counted, recorded
    [message] = fleet.messages()
    assert (message["event"], message["step"], message["status"], message["volume_id"]) == (
        "failed",
        "boot",
        "refused",
        fleet.volume,
    )
    assert "belongs to lineage 'billing'" in message["reason"] and "\x1b" not in message["reason"]
    assert "wrote nothing" in message["safe"] and "restore.yml" in message["summary"]


# ---- no replacement loop ------------------------------------------------------------------------------------------


def test_a_launch_that_can_never_get_the_data_suspends_the_groups_launches_after_the_first_abandon(fleet, calls):
    """No snapshot to restore in the other zone: a new instance would fail the same way. One ABANDON, launches
    suspended, one failed message that says how to resume; the group launches nothing more until the operator does."""
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP, VPCZoneIdentifier=fleet.seeded["subnets"]["us-east-1b"]
    )
    fleet.clients["ec2"].stop_instances(InstanceIds=[fleet.first])
    CONTEXT.advance(60)
    [action] = [a for a in fleet.pending_launches() if a["instance_id"] != fleet.first]

    assert fleet.handler.handle(fleet.launch_event(action)).endswith("; launches suspended")
    CONTEXT.advance(600)  # the group would have launched again and again

    assert [a for a in fleet.pending_launches() if a["instance_id"] not in (fleet.first, action["instance_id"])] == []
    [group] = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]
    assert [p["ProcessName"] for p in group["SuspendedProcesses"]] == ["Launch"]
    assert calls.mutating().count("CompleteLifecycleAction") == 1
    [message] = fleet.messages()
    assert (message["event"], message["step"], message["launches_suspended"]) == ("failed", "launch", True)
    assert message["resume"].endswith(f"--auto-scaling-group-name {GROUP} --scaling-processes Launch")
    fleet.autoscaling.resume_processes(AutoScalingGroupName=GROUP, ScalingProcesses=["Launch"])
    assert [a for a in fleet.pending_launches() if a["instance_id"] not in (fleet.first, action["instance_id"])] != []


# ---- giving up loudly -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("receives, low, high", [(1, 15, 30), (2, 30, 60), (3, 60, 120), (6, 450, 900), (20, 450, 900)])
def test_retries_back_off_exponentially_capped_with_jitter(receives, low, high):
    assert recovery.retry_delay(receives, jitter=0.5) == low and recovery.retry_delay(receives, jitter=1.0) == high
    assert all(low <= recovery.retry_delay(receives) <= high for unused in range(50))


@pytest.mark.parametrize(
    "receives, time_left, receives_left, expected",
    [
        (1, 120, 3, 30),  # within a notice: the receives left fit in the time left (120 / 3 = 40 > 30: not capped)
        (2, 90, 2, 45),  # 60 would leave one receive for 30 s: capped at 45
        (3, 40, 1, 40),  # the last receive inside the notice comes at its end
        (3, 0.5, 1, 1),  # never less than a second
        (3, -5, 1, 120),  # past the notice: the ordinary back-off
        (3, 40, 0, 120),  # no receive left to spend inside the notice (the last is kept for after it)
        (3, None, None, 120),
    ],
)
def test_a_retry_within_a_notice_fits_the_receives_left_in_the_time_left(receives, time_left, receives_left, expected):
    assert recovery.retry_delay(receives, jitter=1.0, time_left=time_left, receives_left=receives_left) == expected


def test_the_last_receive_before_the_dead_letter_queue_publishes_failed_with_the_step(fleet):
    sqs = fleet.clients["sqs"]
    dlq = sqs.get_queue_attributes(
        QueueUrl=sqs.create_queue(QueueName="events-dlq")["QueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName="events", Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq, "maxReceiveCount": 3})}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    [action] = fleet.pending_launches()  # the old holder is running: the launch must wait (Retry)
    sqs.send_message(QueueUrl=url, MessageBody=fleet.launch_event(action))
    message = sqs.receive_message(QueueUrl=url)["Messages"][0]
    fleet.messages()
    for receives, expected in ((1, []), (2, []), (3, ["failed"])):
        record = {
            "messageId": message["MessageId"],
            "body": message["Body"],
            "receiptHandle": message["ReceiptHandle"],
            "eventSourceARN": arn,
            "attributes": {"ApproximateReceiveCount": str(receives)},
        }
        assert recovery.process_batch({"Records": [record]}, fleet.handler)["batchItemFailures"] != []
        published = fleet.messages()
        assert [m["event"] for m in published] == expected
    assert (published[0]["step"], published[0]["instance_id"], published[0]["receives"]) == (
        "retries",
        action["instance_id"],
        3,
    )
    assert "waits for the data" in published[0]["error"]


# ---- every interruption ends ---------------------------------------------------------------------------------------


def test_a_handed_off_interruption_no_replacement_took_is_failed_by_the_deadline_once(fleet):
    with_service(fleet, recovery_deadline=300)
    fleet.handler.handle(warning(fleet.first))  # the launch hook is never answered: no replacement
    fleet.messages()
    assert "nothing unannounced" in fleet.handler.handle(sweep())
    CONTEXT.advance(400)
    outcome = fleet.handler.handle(sweep())
    assert f"{fleet.first}: failed: no replacement took the data within 300 s" in outcome
    [message] = fleet.messages()
    assert (message["event"], message["step"], message["instance_id"]) == ("failed", "deadline", fleet.first)
    assert fleet.volume in message["safe"] and "pg-interruption" in message["safe"]
    fleet.handler.handle(sweep())
    assert fleet.messages() == []


def test_a_replacement_that_never_reports_its_boot_is_failed_by_the_deadline(fleet):
    with_service(fleet, recovery_deadline=300)
    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(60)
    [action] = [a for a in fleet.pending_launches() if a["instance_id"] != fleet.first]
    fleet.handler.handle(fleet.launch_event(action))  # the data moved; the agent says nothing after
    fleet.messages()
    CONTEXT.advance(400)
    assert f"no boot report from {action['instance_id']} within 300 s" in fleet.handler.handle(sweep())
    [message] = fleet.messages()
    assert (message["event"], message["step"], message["instance_id"]) == ("failed", "deadline", action["instance_id"])


# ---- one lineage, one group ----------------------------------------------------------------------------------------


def test_a_second_group_whose_instances_carry_the_lineage_is_reported_once_and_left_alone(fleet, calls):
    """Its launch hook is not ours (not completed, its instance not given the data); the operator is told, once."""
    fleet.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="pg-old",
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateName": f"{GROUP}-template"},
        VPCZoneIdentifier=fleet.seeded["subnets"]["us-east-1a"],
        LifecycleHookSpecificationList=[
            {
                "LifecycleHookName": "launch",
                "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                "HeartbeatTimeout": 600,
                "DefaultResult": "ABANDON",
            }
        ],
    )
    [rogue] = CONTEXT.call_control("autoscaling/actions", {"group": "pg-old"})["actions"]
    body = envelope(
        "aws.autoscaling",
        "EC2 Instance-launch Lifecycle Action",
        {
            "LifecycleActionToken": rogue["token"],
            "AutoScalingGroupName": "pg-old",
            "LifecycleHookName": "launch",
            "EC2InstanceId": rogue["instance_id"],
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        },
    )
    calls.clear()

    assert (
        fleet.handler.handle(body)
        == f"misconfiguration reported: lineage {LINEAGE} in group pg-old ({rogue['instance_id']})"
    )
    assert fleet.handler.handle(body) == f"misconfiguration of {LINEAGE} already reported"
    assert "already reported" in fleet.handler.handle(sweep())
    assert "CompleteLifecycleAction" not in calls.made and "AttachVolume" not in calls.made
    [message] = fleet.messages()
    assert (message["event"], message["step"], message["foreign_groups"]) == (
        "failed",
        "configuration",
        {"pg-old": [rogue["instance_id"]]},
    )


def test_a_launch_redelivered_after_its_attach_still_says_whose_data_it_took(fleet, monkeypatch):
    """The attach went through but the handler failed before recording it (a throttled wait, a timeout): the
    redelivery finds the volume already on the replacement, and the recovery is still told as a recovery of the
    interrupted instance's data, never as the replacement replacing itself."""
    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(60)
    [action] = [a for a in fleet.pending_launches() if a["instance_id"] != fleet.first]
    attach = volumes.attach_volume

    def attach_then_time_out(*args, **kwargs):
        attach(*args, **kwargs)
        raise WaitTimeout("timed out after 600s waiting for the attachment")

    monkeypatch.setattr(volumes, "attach_volume", attach_then_time_out)
    with pytest.raises(WaitTimeout):
        fleet.handler.handle(fleet.launch_event(action))
    monkeypatch.setattr(volumes, "attach_volume", attach)

    assert fleet.handler.handle(fleet.launch_event(action)).startswith(
        f"replacement {action['instance_id']} has the data"
    )
    done = progress.read(fleet.instance(action["instance_id"]))
    assert progress.outcome_of(done["replaces"]) == fleet.first
    fleet.messages()
    report = envelope(
        "ec2spot.autorecover",
        "EC2Spot Recovery Boot Report",
        {"instance-id": action["instance_id"], "lineage": LINEAGE},
    )
    fleet.handler.handle(report)
    [message] = fleet.messages()
    assert (message["event"], message["replaced"], message["losses"]) == ("recovered", fleet.first, [])


# ---- an in-flight recovery survives an upgrade: progress tags as an older handler wrote them -----------------------
# (tests/unit/recovery/test_progress_outcomes.py reads each form; here the upgraded handler acts on them)

FIRST_HANDLER, PREVIOUS_HANDLER = "the first handler", "the one-module handler before the package"


def tag_progress(fleet, instance_id, **steps):
    """Progress tags on ``instance_id`` as an older handler wrote them: ``step=outcome`` (``""``: none)."""
    stamp = (CONTEXT.now() - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.00Z")
    fleet.clients["ec2"].create_tags(
        Resources=[instance_id],
        Tags=[
            {"Key": progress.PROGRESS + step.replace("_", "-"), "Value": f"{stamp} {outcome}" if outcome else stamp}
            for step, outcome in steps.items()
        ],
    )


@pytest.mark.parametrize(
    "by, steps",
    [
        (FIRST_HANDLER, {"continued": ""}),  # completed without the token
        (FIRST_HANDLER, {"abandoned": "NotFound"}),  # abandoned with the error's code only
        (PREVIOUS_HANDLER, {"attached": "vol-0aa same volume", "continued": "token={token}"}),
        (PREVIOUS_HANDLER, {"abandoned": "token={token} FenceViolation"}),
    ],
)
def test_a_launch_an_older_handler_completed_is_not_completed_again(fleet, calls, by, steps):
    fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=2)
    [action] = fleet.pending_launches()
    tag_progress(fleet, action["instance_id"], **{k: v.format(token=action["token"]) for k, v in steps.items()})
    calls.clear()

    assert fleet.handler.handle(fleet.launch_event(action)).startswith("duplicate: launch action"), by
    assert calls.mutating() == [] and fleet.messages() == []


def test_a_stop_notice_an_older_handler_handled_is_not_handled_again(fleet, calls):
    when = CONTEXT.now().replace(microsecond=0)
    tag_progress(fleet, fleet.first, paused=f"stop@{when:%Y%m%dT%H%M%SZ} stop=ok")
    calls.clear()

    assert fleet.handler.handle(warning(fleet.first, when, action="stop")).startswith("duplicate: stop warning")
    assert calls.mutating() == [] and fleet.ssm_commands() == []


def test_a_planned_notice_an_older_handler_snapshotted_is_not_snapshotted_again(fleet, calls):
    start = (CONTEXT.now() + timedelta(days=2)).replace(microsecond=0)
    handoff = start - timedelta(seconds=1800)
    tag_progress(
        fleet,
        fleet.first,
        planned=f"instance-retirement@{start:%Y%m%dT%H%M%SZ} "
        f"handoff={handoff:%Y%m%dT%H%M%SZ} snapshot=pg-planned-{start:%Y%m%d%H%M}",
    )
    calls.clear()

    assert "hand-off due at" in fleet.handler.handle(health_event(fleet.first, start))
    assert calls.mutating() == [] and fleet.messages() == []


def test_a_terminate_action_an_older_handler_completed_is_not_completed_again(fleet, calls):
    token = "c613620e-07e2-4ed2-a9e2-ef8258911ade"
    tag_progress(fleet, fleet.first, terminate_completed=f"token={token}")
    calls.clear()

    assert fleet.handler.handle(terminate_action(fleet, fleet.first, token)).startswith("duplicate: terminate action")
    assert calls.mutating() == []


@pytest.mark.parametrize(
    "by, attached, event, data_age, lost",
    [
        (PREVIOUS_HANDLER, "{volume} same volume", "recovered", 0.0, None),
        # the first handler wrote the age unrounded; the snapshot is gone since, so nothing proves it is the interruption's
        (FIRST_HANDLER, "vol-0bb from snap-0cc age 42.5s", "recovered-with-loss", 42.5, "not a snapshot taken at the"),
        # a backup restore.yml staged, 12 days old: {:g} wrote an exponent the handler before could not read back (it
        # reported the data's origin as not recorded)
        (PREVIOUS_HANDLER, "vol-0bb from snap-0cc age 1.0368e+06s staged", "recovered", 1036800.0, None),
    ],
)
def test_a_boot_report_after_an_older_handlers_launch_judges_its_recorded_origin(
    fleet, launch, by, attached, event, data_age, lost
):
    replacement = launch(lineage=LINEAGE)
    tag_progress(
        fleet,
        fleet.first,
        warned="",
        unhealthy="",
        stopped="ok",
        snapshot="pg-interruption consistent",
        released=fleet.volume,
    )
    tag_progress(
        fleet,
        replacement,
        replaces=fleet.first,
        attached=attached.format(volume=fleet.volume),
        continued="token=c613620e-07e2-4ed2-a9e2-ef8258911ade",
    )

    report = envelope(
        "ec2spot.autorecover", "EC2Spot Recovery Boot Report", {"instance-id": replacement, "lineage": LINEAGE}
    )
    assert fleet.handler.handle(report) == f"success of {replacement} reported", by
    [message] = fleet.messages()
    assert (message["event"], message["replaced"], message["data_age_seconds"]) == (event, fleet.first, data_age)
    assert (message["losses"] == []) if lost is None else (lost in message["losses"][0])
