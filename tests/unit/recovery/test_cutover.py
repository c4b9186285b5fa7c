"""Make-before-break (handler/cutover.py): the old instance serves until its replacement is ready, then one cut-over.

The world of test_handler.py (a Spot group of one, launch and terminate hooks, the lineage's volume, an Elastic IP),
its service configured ``cutover: make-before-break`` with the function's own queue, where the deadline is a delayed
message. Every trigger order is played: ready after the launch, ready before it, the deadline with a replacement held
and with none, duplicates of each, a failed stop, a crash between the stop and the detach.
"""

import json
from datetime import timedelta
import re

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import handler as recovery
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import volumes
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.handler import cutover
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.handler import warning as warning_workflow
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import InvalidInput
from sandbox.clock import CONTEXT
from sandbox.scenario import LINEAGE, World, envelope, warning

QUEUE = "pg-control-events"


@pytest.fixture
def fleet(aws, ec2, world):
    fleet = World(world)
    sqs = fleet.clients["sqs"]
    fleet.queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=fleet.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    fleet.configure(queue_arn=arn, cutover="make-before-break", cutover_reserve=40)
    return fleet


def ready(instance_id):
    return envelope(
        "ec2spot.autorecover",
        "EC2Spot Replacement Ready",
        {"instance-id": instance_id, "lineage": LINEAGE, "service": "pg", "waiting-since": "2026-11-24T10:00:00Z"},
    )


def deadlines(fleet):
    """The deadline messages visible on the function's queue now (received and deleted)."""
    sqs, bodies = fleet.clients["sqs"], []
    for message in sqs.receive_message(QueueUrl=fleet.queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies.append(message["Body"])
        sqs.delete_message(QueueUrl=fleet.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def interruption_snapshots(fleet, name="pg-interruption"):
    return fleet.clients["ec2"].describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{t.BACKUP_SET}", "Values": [name]}]
    )["Snapshots"]


def steps(fleet, instance_id):
    return progress.read(fleet.instance(instance_id))


@pytest.mark.parametrize(
    "trigger, holder, replacement, decision",
    [
        ("launch", {}, {}, cutover.NOT_ARMED),
        ("ready", {"warned": "x"}, {"held": "x"}, cutover.NOT_ARMED),
        ("deadline", {}, None, cutover.NOT_ARMED),
        ("launch", {"armed": "x"}, {}, cutover.WAIT),
        ("launch", {"armed": "x"}, {"ready": "x"}, cutover.CUT_OVER),
        ("ready", {"armed": "x"}, {"ready": "x"}, cutover.WAIT),
        ("ready", {"armed": "x"}, {"ready": "x", "held": "x"}, cutover.CUT_OVER),
        ("deadline", {"armed": "x"}, None, cutover.FALLBACK),
        ("deadline", {"armed": "x"}, {}, cutover.FALLBACK),
        ("deadline", {"armed": "x"}, {"held": "x"}, cutover.CUT_OVER),
        ("deadline", {"armed": "x"}, {"held": "x", "ready": "x"}, cutover.CUT_OVER),
        ("launch", {"armed": "x", "cutover": "x"}, {"ready": "x"}, cutover.RESUME),
        ("ready", {"armed": "x", "cutover": "x"}, {"held": "x"}, cutover.RESUME),
        ("deadline", {"armed": "x", "cutover": "x"}, None, cutover.RESUME),
    ],
)
def test_what_each_trigger_does(trigger, holder, replacement, decision):
    assert cutover.decide(trigger, holder, replacement) == decision


def test_an_unknown_trigger_is_a_bug():
    with pytest.raises(ValueError, match="unknown cut-over trigger 'sweep'"):
        cutover.decide("sweep", {"armed": "x"}, {})


@pytest.mark.parametrize(
    "settings, refusal",
    [
        ({"cutover": "eventually"}, "services[0].cutover must be one of break-before-make, make-before-break"),
        ({"cutover": "make-before-break", "group": None}, "needs the service's group"),
        ({"cutover_reserve": 19}, "cutover_reserve must be an integer from 20 to 100"),
        ({"cutover_reserve": 101}, "cutover_reserve must be an integer from 20 to 100"),
        ({"cutover_reserve": True}, "cutover_reserve must be an integer from 20 to 100"),
        ({"cutover_reserve": "40"}, "cutover_reserve must be an integer from 20 to 100"),
    ],
)
def test_the_configuration_refuses_what_the_cut_over_cannot_do(fleet, settings, refusal):
    with pytest.raises(InvalidInput, match=re.escape(refusal)):
        fleet.configure(queue_arn=fleet.config.queue_arn, **settings)


def test_make_before_break_needs_the_function_s_queue(fleet):
    with pytest.raises(InvalidInput, match="cutover make-before-break needs queue_arn"):
        fleet.configure(cutover="make-before-break")
    with pytest.raises(InvalidInput, match="queue_arn must be an SQS queue ARN"):
        fleet.configure(queue_arn="arn:aws:sns:us-east-1:123456789012:topic")


def test_warning_keeps_serving_takes_a_pre_snapshot_and_arms_the_deadline(fleet):
    warned_at = CONTEXT.clock.now()
    outcome = fleet.handler.handle(warning(fleet.first))
    assert outcome.startswith(f"warning handled for {fleet.first}: serving until the replacement is ready or ")
    assert fleet.ssm_commands() == []  # the application keeps serving
    assert fleet.volume_state(fleet.volume) == ("in-use", [(fleet.first, "attached")])
    [pre] = interruption_snapshots(fleet, "pg-presnapshot")
    assert pre["VolumeId"] == fleet.volume and t.as_dict(pre["Tags"])[t.LINEAGE] == LINEAGE
    done = steps(fleet, fleet.first)
    assert progress.read_outcome(done, "presnapshot") == progress.SnapshotSet("pg-presnapshot", consistent=False)
    armed = progress.read_outcome(done, "armed")
    assert (armed.cutover_by - armed.interruption_at).total_seconds() == -40
    assert fleet.pending_launches()  # the group launches the replacement now
    assert deadlines(fleet) == []  # delayed: not visible before its time
    CONTEXT.advance((armed.cutover_by - warned_at).total_seconds() + 1)
    [body] = deadlines(fleet)
    sent = json.loads(body)
    assert (sent["source"], sent["detail-type"], sent["detail"]["instance-id"]) == (
        "ec2spot.autorecover",
        "EC2Spot Cut-over Deadline",
        fleet.first,
    )
    # A redelivered warning arms nothing twice.
    fleet.handler.handle(warning(fleet.first))
    assert len(interruption_snapshots(fleet, "pg-presnapshot")) == 1 and deadlines(fleet) == []


def _cut_over_by_ready(fleet, ready_first=False):
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    replacement = action["instance_id"]
    if ready_first:
        assert fleet.handler.handle(ready(replacement)).endswith(
            "its launch action is not held yet: the launch cuts over"
        )
        assert fleet.ssm_commands() == []
        return replacement, fleet.handler.handle(fleet.launch_event(action))
    held = fleet.handler.handle(fleet.launch_event(action))
    assert held.startswith(f"holding {replacement} in Pending:Wait until it is ready or ")
    assert fleet.ssm_commands() == [] and fleet.volume_state(fleet.volume)[1] == [(fleet.first, "attached")]
    assert progress.outcome_of(steps(fleet, fleet.first)["successor"]) == replacement
    return replacement, fleet.handler.handle(ready(replacement))


@pytest.mark.parametrize("ready_first", [False, True], ids=["launch-then-ready", "ready-then-launch"])
def test_ready_replacement_takes_the_very_volume_in_one_cut_over(fleet, ready_first):
    replacement, outcome = _cut_over_by_ready(fleet, ready_first)
    assert f"cut-over (ready) of {fleet.first}, stop ok" in outcome
    [command] = fleet.ssm_commands()
    assert command["instance_ids"] == [fleet.first] and command["commands"][:2] == [
        "echo stopping > app.stopped",
        "sync",
    ]
    assert fleet.volume_state(fleet.volume)[1] == [(replacement, "attached")]
    [final] = interruption_snapshots(fleet)
    assert progress.read_outcome(steps(fleet, fleet.first), "snapshot") == progress.SnapshotSet(
        "pg-interruption", consistent=True
    )
    assert final["VolumeId"] == fleet.volume
    assert progress.read_outcome(steps(fleet, fleet.first), "cutover") == progress.CutOver("ready", replacement)
    done = steps(fleet, replacement)
    assert progress.outcome_of(done["attached"]) == f"{fleet.volume} same volume"
    assert "continued" in done and progress.outcome_of(done["replaces"]) == fleet.first
    address = fleet.clients["ec2"].describe_addresses(AllocationIds=[fleet.address["AllocationId"]])["Addresses"][0]
    assert address["InstanceId"] == replacement
    state = fleet.autoscaling.describe_auto_scaling_instances(InstanceIds=[replacement])["AutoScalingInstances"]
    assert state[0]["LifecycleState"] != "Pending:Wait"
    # Every later trigger finds the cut-over done: no second stop, snapshot or move.
    CONTEXT.advance(80)
    for body in [ready(replacement), warning(fleet.first), *deadlines(fleet)]:
        fleet.handler.handle(body)
    assert len(fleet.ssm_commands()) == 1 and len(interruption_snapshots(fleet)) == 1
    assert fleet.volume_state(fleet.volume)[1] == [(replacement, "attached")]


def test_deadline_with_a_held_replacement_not_ready_cuts_over_to_it(fleet):
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    fleet.handler.handle(fleet.launch_event(action))
    CONTEXT.advance(81)
    [body] = deadlines(fleet)
    outcome = fleet.handler.handle(body)
    assert f"cut-over (deadline) of {fleet.first}, stop ok" in outcome
    assert fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]
    assert progress.read_outcome(steps(fleet, fleet.first), "cutover") == progress.CutOver(
        "deadline", action["instance_id"]
    )
    # Its agent's late readiness changes nothing.
    assert "already complete" in fleet.handler.handle(ready(action["instance_id"])) or len(fleet.ssm_commands()) == 1
    assert len(fleet.ssm_commands()) == 1


def test_deadline_with_no_replacement_falls_back_to_the_early_release(fleet):
    CONTEXT.call_control("ec2/capacity", {"zone": "us-east-1a", "available": False})
    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(81)
    [body] = deadlines(fleet)
    outcome = fleet.handler.handle(body)
    assert outcome.startswith(
        f"cut-over deadline with no replacement held: fallback hand-off of {fleet.first} (stop ok)"
    )
    assert fleet.volume_state(fleet.volume) == ("available", [])  # released before the reclaim: nothing lost
    assert progress.read_outcome(steps(fleet, fleet.first), "snapshot").consistent
    assert progress.read_outcome(steps(fleet, fleet.first), "cutover") == progress.CutOver("deadline", None)
    # The replacement that comes later takes the data the usual way.
    CONTEXT.call_control("ec2/capacity", {"zone": "us-east-1a", "available": True})
    CONTEXT.advance(60)  # the group retries its launch (sandbox: every asg_launch_retry, 60 s)
    actions = fleet.pending_launches()
    assert actions, "the group launched no replacement once capacity came back"
    fleet.handler.handle(fleet.launch_event(actions[0]))
    assert fleet.volume_state(fleet.volume)[1] == [(actions[0]["instance_id"], "attached")]
    assert len(fleet.ssm_commands()) == 1


def test_a_failed_stop_keeps_the_volume_and_retries(fleet):
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    fleet.handler.handle(fleet.launch_event(action))
    CONTEXT.call_control("ssm/script", {"instance_id": fleet.first, "outcome": "Failed", "exit_code": 3})
    with pytest.raises(recovery.Retry):
        fleet.handler.handle(ready(action["instance_id"]))
    assert fleet.volume_state(fleet.volume)[1] == [(fleet.first, "attached")]  # the fence holds
    assert progress.read_outcome(steps(fleet, fleet.first), "snapshot") == progress.SnapshotSet(
        "pg-interruption", consistent=False
    )
    [message] = [m for m in fleet.messages() if m["event"] == "crash-consistent-snapshot"]
    assert message["instance_id"] == fleet.first


def test_a_crash_between_the_stop_and_the_detach_resumes_without_a_second_stop(fleet, monkeypatch):
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    fleet.handler.handle(fleet.launch_event(action))

    def crash(*args, **kwargs):
        raise RuntimeError("the function's sandbox was recycled")

    monkeypatch.setattr(warning_workflow, "release_volume", crash)
    result = recovery.process_batch(
        {"Records": [{"messageId": "m0", "body": ready(action["instance_id"])}]}, fleet.handler
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "m0"}]}  # redelivered
    assert fleet.volume_state(fleet.volume)[1] == [(fleet.first, "attached")]
    monkeypatch.setattr(warning_workflow, "release_volume", volumes.release_volume)
    fleet.handler.handle(ready(action["instance_id"]))
    assert len(fleet.ssm_commands()) == 1
    assert fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]


def test_the_old_instance_s_terminate_action_waits_for_the_cut_over(fleet):
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    fleet.handler.handle(fleet.launch_event(action))
    token = "0123abcd-0123-4567-89ab-0123456789ab"
    terminate = envelope(
        "aws.autoscaling",
        "EC2 Instance-terminate Lifecycle Action",
        {
            "LifecycleActionToken": token,
            "AutoScalingGroupName": fleet.group,
            "LifecycleHookName": "terminate",
            "EC2InstanceId": fleet.first,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        },
    )
    assert fleet.handler.handle(terminate).endswith("held until its cut-over has released the data")
    assert progress.read_outcome(steps(fleet, fleet.first), "terminate-held") == progress.HeldLaunch("terminate", token)
    fleet.handler.handle(ready(action["instance_id"]))
    assert progress.read_outcome(steps(fleet, fleet.first), "terminate-completed") == progress.LifecycleCompletion(
        token
    )


TOKEN = "c613620e-07e2-4ed2-a9e2-ef8258911ade"
AT = progress.time_of("2026-12-07T10:02:00Z")
RECORDED = [
    ("armed", progress.CutOverDeadline(AT, AT)),
    ("armed", progress.CutOverDeadline(AT, progress.time_of("2026-12-07T10:01:20Z"))),
    ("cutover", progress.CutOver("ready", "i-0123456789abcdef0")),
    ("cutover", progress.CutOver("deadline", "i-01234567")),
    ("cutover", progress.CutOver("deadline", None)),
    ("held", progress.HeldLaunch("pg-fleet-launch", TOKEN)),
    ("held", progress.HeldLaunch("a hook/with spaces and = signs", TOKEN)),
    ("terminate-held", progress.HeldLaunch("terminate", TOKEN)),
    ("steered", progress.ZoneSteering("us-east-1a", ("subnet-0123abcd", "subnet-0123456789abcdef0"))),
    ("steered", progress.ZoneSteering("us-west-2-lax-1a", ("subnet-0a",))),
    ("steered", progress.ZoneSteering("us-gov-west-1b", ("subnet-0a", "subnet-0b", "subnet-0c"))),
    ("steered", progress.ZoneSteering("us-east-1-wl1-bos-wlz-1", ("subnet-0a", "subnet-0b"))),
    ("avoided", progress.PoolAvoidance("t3.micro", AT, (("t3.micro", None), ("t3a.micro", "2")))),
    ("avoided", progress.PoolAvoidance("m7i-flex.large", AT, (("m6i.large", "999"), ("m7i-flex.large", None)))),
    ("avoided", progress.PoolAvoidance("u-6tb1.metal", AT, (("u-6tb1.metal", None), ("x2iedn.32xlarge", "1")))),
]


@pytest.mark.parametrize("step, outcome", RECORDED, ids=[f"{s}: {o.describe()}" for s, o in RECORDED])
def test_what_the_cut_over_records_reads_back_whole(step, outcome):
    assert progress.read_outcome({step: f"2026-12-07T10:00:00.00Z {outcome.describe()}"}, step) == outcome


@pytest.mark.parametrize(
    "step, written",
    [
        ("armed", "interruption=20261207T100200Z"),
        ("armed", "interruption=2026-12-07 cutover-by=20261207T100120Z"),
        ("cutover", "sweep to=i-0123456789abcdef0"),
        ("cutover", "ready to=vol-0123456789abcdef0"),
        ("cutover", "ready"),
        ("cutover", "ready fallback extra"),
        ("held", "token=not-a-token hook=launch"),
        ("held", f"hook=launch token={TOKEN}"),
        ("held", f"token={TOKEN} hook="),
        ("steered", "zone=us-east-1a restore="),
        ("steered", "zone=us-east-1a restore=subnet-0a,,subnet-0b"),
        ("steered", "zone=us-east-1a restore=sg-0a"),
        ("steered", "restore=subnet-0a zone=us-east-1a"),
        ("steered", "zone=US-EAST-1A restore=subnet-0a"),
        ("steered", "zone=us-east-1a- restore=subnet-0a"),
        ("steered", "zone=us restore=subnet-0a"),
        ("avoided", "type=t3.micro until=20261207T100200Z restore="),
        ("avoided", "type=t3.micro until=20261207T100200Z restore=t3.micro:0"),
        ("avoided", "type=t3.micro until=20261207T100200Z restore=t3.micro:1000"),
        ("avoided", "type=t3.micro until=2026-12-07 restore=t3.micro"),
        ("avoided", "type=T3.MICRO until=20261207T100200Z restore=t3.micro"),
        ("avoided", "type=t3micro until=20261207T100200Z restore=t3.micro"),
        ("avoided", "until=20261207T100200Z type=t3.micro restore=t3.micro"),
    ],
)
def test_a_cut_over_value_no_handler_wrote_is_unknown(step, written):
    assert progress.read_outcome({step: f"2026-12-07T10:00:00.00Z {written}"}, step) is None


def test_a_hook_name_too_long_for_a_tag_is_not_held_but_takes_the_usual_path():
    assert progress.fits(progress.HeldLaunch("h" * 180, TOKEN))
    assert not progress.fits(progress.HeldLaunch("h" * 255, TOKEN))


def test_a_holder_reclaimed_before_any_trigger_cuts_over_to_the_held_replacement_once_the_volume_is_free(fleet):
    """The deadline's message lost or late, and the instance already going: its state change takes the deadline's
    path. Nothing answers a stop any more (recorded as skipped, no SSM command); the pre-snapshot is the safety net,
    and the held replacement gets the very volume once the reclaim has let go of it."""
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    fleet.handler.handle(fleet.launch_event(action))
    fleet.clients["ec2"].terminate_instances(InstanceIds=[fleet.first])
    changed = envelope(
        "aws.ec2", "EC2 Instance State-change Notification", {"instance-id": fleet.first, "state": "shutting-down"}
    )
    for unused_delivery in range(3):  # retried while the volume is still attached to the instance going away
        recovery.process_batch({"Records": [{"messageId": "m0", "body": changed}]}, fleet.handler)
        if fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]:
            break
        CONTEXT.advance(60)
    assert fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]
    done = steps(fleet, fleet.first)
    assert progress.read_outcome(done, "cutover") == progress.CutOver("deadline", action["instance_id"])
    assert progress.outcome_of(done["stopped"]).startswith("skipped: it was ")
    assert fleet.ssm_commands() == [] and "continued" in steps(fleet, action["instance_id"])


def test_a_warning_handled_after_its_deadline_falls_back_at_once(fleet):
    """Delivered late (a backlog, retries): the deadline has passed already, so nothing waits for a replacement."""
    late = warning(fleet.first, when=CONTEXT.now() - timedelta(seconds=90))
    outcome = fleet.handler.handle(late)
    assert "fallback hand-off of" in outcome and deadlines(fleet) == []
    assert fleet.volume_state(fleet.volume) == ("available", [])
    assert progress.read_outcome(steps(fleet, fleet.first), "cutover") == progress.CutOver("deadline", None)
    assert len(fleet.ssm_commands()) == 1


def test_a_deadline_for_an_instance_with_no_cut_over_armed_changes_nothing(fleet):
    forged = envelope(
        "ec2spot.autorecover", "EC2Spot Cut-over Deadline", {"instance-id": fleet.first, "cutover-by": "x"}
    )
    assert fleet.handler.handle(forged) == f"ignored: no cut-over is armed for {fleet.first}"
    assert fleet.ssm_commands() == [] and fleet.volume_state(fleet.volume)[1] == [(fleet.first, "attached")]


def test_the_old_instance_saying_it_is_ready_starts_nothing(fleet):
    fleet.handler.handle(warning(fleet.first))
    assert fleet.handler.handle(ready(fleet.first)).endswith("no cut-over waits for it")
    assert fleet.ssm_commands() == []


# ---- Zone steering (handler/steering.py): the replacement comes from the data's zone -------------------------


def _two_zones(fleet):
    """The group spans the data's zone (us-east-1a, first) and us-east-1b, and replaces launch-first as the fleet
    role sets it up (fleet_instance_maintenance_policy); answers the subnets in that order."""
    subnets = [fleet.seeded["subnets"][zone] for zone in ("us-east-1a", "us-east-1b")]
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=fleet.group,
        VPCZoneIdentifier=",".join(subnets),
        InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
    )
    return subnets


def _group_subnets(fleet):
    group = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.group])["AutoScalingGroups"][0]
    return group["VPCZoneIdentifier"].split(",")


@pytest.mark.parametrize(
    "keep_data_zone, replacement_zone",
    [(True, "us-east-1a"), (False, "us-east-1b")],
    ids=["steered", "left-to-the-group"],
)
def test_the_group_is_narrowed_to_the_data_s_zone_until_the_cut_over(fleet, keep_data_zone, replacement_zone):
    """Under the reading where the instance being replaced still counts in its zone (the sandbox's
    asg_balance_counts_replaced), a group of one in two zones launches its replacement in the other zone; steered,
    it launches in the data's zone, and gets both subnets back once the very volume has moved."""
    subnets = _two_zones(fleet)
    fleet.configure(queue_arn=fleet.config.queue_arn, cutover="make-before-break", keep_data_zone=keep_data_zone)
    CONTEXT.latency["asg_balance_counts_replaced"] = 1.0
    fleet.handler.handle(warning(fleet.first))
    done = steps(fleet, fleet.first)
    if keep_data_zone:
        assert progress.read_outcome(done, "steered") == progress.ZoneSteering("us-east-1a", tuple(subnets))
        assert _group_subnets(fleet) == subnets[:1]
    else:
        assert "steered" not in done and _group_subnets(fleet) == subnets
    [action] = fleet.pending_launches()
    replacement = action["instance_id"]
    assert fleet.instance(replacement)["Placement"]["AvailabilityZone"] == replacement_zone
    fleet.handler.handle(fleet.launch_event(action))
    fleet.handler.handle(ready(replacement))
    attached = progress.read_outcome(steps(fleet, replacement), "attached")
    assert attached.restored is (not keep_data_zone)  # the very volume only in the data's zone
    assert _group_subnets(fleet) == subnets
    done = steps(fleet, fleet.first)
    assert ("unsteered" in done) is keep_data_zone
    if keep_data_zone:
        assert progress.outcome_of(done["unsteered"]) == "restored"
        # A redelivered warning narrows nothing again.
        fleet.handler.handle(warning(fleet.first))
        assert _group_subnets(fleet) == subnets


def test_a_reclaimed_pool_is_replaced_from_another_pool_of_the_data_s_zone(fleet):
    """The interrupted pool (t3.micro in us-east-1a) has no capacity left; the group's overrides offer another type in
    the zone, which the narrowed group takes: the very volume moves."""
    subnets = _two_zones(fleet)
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=fleet.group,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": f"{fleet.group}-template"},
                "Overrides": [{"InstanceType": "t3.micro"}, {"InstanceType": "t3a.micro"}],
            },
            "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0},
        },
    )
    CONTEXT.call_control("ec2/capacity", {"zone": "us-east-1a", "instance_type": "t3.micro", "available": False})
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    launched = fleet.instance(action["instance_id"])
    assert (launched["Placement"]["AvailabilityZone"], launched["InstanceType"]) == ("us-east-1a", "t3a.micro")
    fleet.handler.handle(fleet.launch_event(action))
    fleet.handler.handle(ready(action["instance_id"]))
    assert fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]
    assert _group_subnets(fleet) == subnets


def test_a_data_zone_without_capacity_is_widened_at_the_deadline(fleet):
    """The bound: no capacity in the data's zone by the deadline. The fallback releases the data and gives the group
    its zones back; its next try launches in us-east-1b, which restores the data from the final snapshot."""
    subnets = _two_zones(fleet)
    CONTEXT.call_control("ec2/capacity", {"zone": "us-east-1a", "available": False})
    fleet.handler.handle(warning(fleet.first))
    assert fleet.pending_launches() == [] and _group_subnets(fleet) == subnets[:1]
    CONTEXT.advance(81)
    [body] = deadlines(fleet)
    assert "fallback hand-off" in fleet.handler.handle(body)
    assert _group_subnets(fleet) == subnets
    assert progress.outcome_of(steps(fleet, fleet.first)["unsteered"]) == "restored"
    CONTEXT.advance(60)  # the group's next try (sandbox: asg_launch_retry)
    [action] = fleet.pending_launches()
    assert fleet.instance(action["instance_id"])["Placement"]["AvailabilityZone"] == "us-east-1b"
    fleet.handler.handle(fleet.launch_event(action))
    attached = progress.read_outcome(steps(fleet, action["instance_id"]), "attached")
    assert attached.restored and attached.data_age_seconds < 120
    CONTEXT.call_control("ec2/capacity", {"reset": True})


@pytest.mark.parametrize(
    "change, outcome",
    [
        ("deploy", "skipped: the group's subnets changed since"),
        ("nothing", "restored"),
    ],
)
def test_subnets_changed_meanwhile_are_never_overwritten(fleet, change, outcome):
    subnets = _two_zones(fleet)
    fleet.handler.handle(warning(fleet.first))
    if change == "deploy":  # a deploy gave the group a new set while the cut-over waited
        fleet.autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=fleet.group, VPCZoneIdentifier=fleet.seeded["subnets"]["us-east-1c"]
        )
    [action] = fleet.pending_launches()
    fleet.handler.handle(fleet.launch_event(action))
    fleet.handler.handle(ready(action["instance_id"]))
    assert progress.outcome_of(steps(fleet, fleet.first)["unsteered"]) == outcome
    expected = [fleet.seeded["subnets"]["us-east-1c"]] if change == "deploy" else subnets
    assert _group_subnets(fleet) == expected


def test_a_group_in_the_data_s_zone_only_is_not_steered(fleet):
    fleet.handler.handle(warning(fleet.first))
    assert "steered" not in steps(fleet, fleet.first)


def test_a_group_with_an_instance_outside_the_data_s_zone_is_not_steered(fleet):
    """Removing a zone where the group runs an instance would make Auto Scaling replace that instance."""
    subnets = _two_zones(fleet)
    fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=fleet.group, DesiredCapacity=2)
    [action] = fleet.pending_launches()
    assert fleet.instance(action["instance_id"])["Placement"]["AvailabilityZone"] == "us-east-1b"
    fleet.complete(action["instance_id"])
    fleet.handler.handle(warning(fleet.first))
    assert "steered" not in steps(fleet, fleet.first) and _group_subnets(fleet) == subnets


def test_a_holder_reclaimed_during_its_hand_off_still_hands_the_volume_to_the_held_replacement(fleet, monkeypatch):
    """The reclaim comes between the confirmed stop and the final snapshot (a cut-over late on its deadline): nothing
    can be snapshotted through the instance any more; as for a holder away before its cut-over, the held replacement
    gets the very volume once the reclaim has let go of it, and nothing fails."""
    real_backup = warning_workflow.backup_instance

    def reclaimed_first(ec2, instance_id, set_name, **kwargs):
        if set_name == "pg-interruption":
            ec2.terminate_instances(InstanceIds=[instance_id])
        return real_backup(ec2, instance_id, set_name, **kwargs)

    monkeypatch.setattr(warning_workflow, "backup_instance", reclaimed_first)
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    fleet.handler.handle(fleet.launch_event(action))
    for unused_delivery in range(3):  # retried while the volume is still attached to the instance going away
        recovery.process_batch({"Records": [{"messageId": "m0", "body": ready(action["instance_id"])}]}, fleet.handler)
        if fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]:
            break
        CONTEXT.advance(60)
    assert fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]
    done = steps(fleet, fleet.first)
    assert progress.outcome_of(done["stopped"]) == "ok" and "snapshot" not in done
    assert len(fleet.ssm_commands()) == 1 and "continued" in steps(fleet, action["instance_id"])


def _mixed(fleet, overrides):
    """The group launches Spot from ``overrides`` (``[(type, weight or None)]``), in that order."""
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=fleet.group,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": f"{fleet.group}-template"},
                "Overrides": [
                    {"InstanceType": kind, **({"WeightedCapacity": weight} if weight else {})}
                    for kind, weight in overrides
                ],
            },
            "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0},
        },
    )


def _overrides(fleet):
    group = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.group])["AutoScalingGroups"][0]
    policy = group["MixedInstancesPolicy"]
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateName"] == f"{fleet.group}-template"
    return [(o["InstanceType"], o.get("WeightedCapacity")) for o in policy["LaunchTemplate"]["Overrides"]]


SWEEP = envelope("ec2spot.autorecover", "EC2Spot Sweep", {})


@pytest.mark.parametrize("avoid", [300, 0], ids=["avoided", "off"])
def test_the_interrupted_type_is_left_out_of_the_overrides_until_the_sweep_puts_it_back(fleet, avoid):
    """The interrupted pool still has capacity (a reclaim may leave some): with the type left out, the replacement
    comes from another pool; the sweep puts the type back where it was once the time is up, once. Off (0), the group
    takes its first override again, the pool being reclaimed."""
    original = [("t3.micro", None), ("t3a.micro", "2"), ("t3.small", None)]
    _mixed(fleet, original)
    fleet.configure(queue_arn=fleet.config.queue_arn, cutover="make-before-break", avoid_interrupted_pool=avoid)
    interrupted = fleet.instance(fleet.first)["InstanceType"]
    assert interrupted == "t3.micro"
    fleet.handler.handle(warning(fleet.first))
    [action] = fleet.pending_launches()
    replacement = fleet.instance(action["instance_id"])["InstanceType"]
    if not avoid:
        assert replacement == "t3.micro" and _overrides(fleet) == original
        assert "avoided" not in steps(fleet, fleet.first)
        return
    assert replacement == "t3a.micro" and _overrides(fleet) == original[1:]
    avoided = progress.read_outcome(steps(fleet, fleet.first), "avoided")
    assert (avoided.instance_type, avoided.restore) == ("t3.micro", tuple(original))
    fleet.handler.handle(fleet.launch_event(action))
    fleet.handler.handle(ready(action["instance_id"]))  # the cut-over: the very volume moves
    assert fleet.volume_state(fleet.volume)[1] == [(action["instance_id"], "attached")]
    CONTEXT.advance(120)
    assert "back in the overrides" not in fleet.handler.handle(SWEEP) and _overrides(fleet) == original[1:]
    CONTEXT.advance(200)
    assert f"t3.micro back in the overrides of {fleet.group} ({fleet.first}): restored" in fleet.handler.handle(SWEEP)
    assert _overrides(fleet) == original
    assert progress.outcome_of(steps(fleet, fleet.first)["unavoided"]) == "restored"
    assert "back in the overrides" not in fleet.handler.handle(SWEEP)


@pytest.mark.parametrize(
    "meanwhile, expected, outcome",
    [
        # another type left out since (a second interruption, a deploy): only the avoided type goes back
        ([("t3a.micro", "2")], [("t3.micro", None), ("t3a.micro", "2")], "restored"),
        # a deploy put it back already
        (
            [("t3a.micro", "2"), ("t3.micro", None)],
            [("t3a.micro", "2"), ("t3.micro", None)],
            "restored: the group had it",
        ),
    ],
    ids=["another-type-left-out", "put-back-by-a-deploy"],
)
def test_overrides_changed_meanwhile_get_only_the_avoided_type_back(fleet, meanwhile, expected, outcome):
    _mixed(fleet, [("t3.micro", None), ("t3a.micro", "2"), ("t3.small", None)])
    fleet.handler.handle(warning(fleet.first))
    _mixed(fleet, meanwhile)
    CONTEXT.advance(301)
    assert f"({fleet.first}): {outcome}" in fleet.handler.handle(SWEEP)
    assert _overrides(fleet) == expected


@pytest.mark.parametrize("own_template", [False, True], ids=["one-type", "an-override-with-its-own-template"])
def test_a_group_of_one_type_or_of_richer_overrides_is_not_avoided(fleet, own_template):
    """Nothing else to launch, or overrides with a launch template (or instance requirements) of their own: rewriting
    them would name a launch template. The group is left as it is."""
    _mixed(fleet, [("t3.micro", None)] + ([("t3a.micro", None)] if own_template else []))
    if own_template:
        policy = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.group])[
            "AutoScalingGroups"
        ][0]["MixedInstancesPolicy"]
        policy["LaunchTemplate"]["Overrides"][1]["LaunchTemplateSpecification"] = {
            "LaunchTemplateName": f"{fleet.group}-template"
        }
        fleet.autoscaling.update_auto_scaling_group(AutoScalingGroupName=fleet.group, MixedInstancesPolicy=policy)
    before = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.group])["AutoScalingGroups"][0]
    fleet.handler.handle(warning(fleet.first))
    after = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[fleet.group])["AutoScalingGroups"][0]
    assert "avoided" not in steps(fleet, fleet.first)
    assert after["MixedInstancesPolicy"] == before["MixedInstancesPolicy"]
