"""Every interruption ends, within its bound, with one true message: one Spot interruption of the fleet's holder
per case, one fault injected, driven to its end on the modeled clock.

``Story`` plays what surrounds the handler in AWS: the control plane's queue (each event EventBridge and Auto
Scaling deliver, redelivered with the handler's own back-off, to the dead-letter queue after ``MAX_RECEIVES``),
the group's lifecycle actions as the sandbox's Auto Scaling raises them, the replacement's agent (its boot report,
a refusal, or silence) and the sweep every modeled minute. Each case asserts the exact list of operator messages,
the facts the terminal one names and how many replacements the group launched.
"""

import itertools

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import handler as recovery
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.handler import retries
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from sandbox.clock import CONTEXT
from sandbox.scenario import GROUP, LINEAGE, World, envelope, warning

MAX_RECEIVES = 5  # the control plane's queue: maxReceiveCount of its redrive policy (control_plane role)
VISIBILITY = 5400  # its visibility timeout (6 x the function's 900 s): a retry the handler did not schedule
SWEEP_EVERY = 60  # modeled seconds (control_plane_sweep_minutes: 1 here)
STEP = 5  # modeled seconds per turn of the story
DEADLINE = 300  # the service's recovery_deadline in these cases


class Story:
    def __init__(self, fleet, agent="ok"):
        self.fleet, self.agent = fleet, agent
        self.queue, self.sequence = [], itertools.count()
        self.seen_tokens, self.reported, self.replacements = set(), set(), []
        self.dead_letters, self.next_sweep, self.messages = [], CONTEXT.now(), []

    def send(self, body):
        self.queue.append([CONTEXT.now(), next(self.sequence), body, 0])

    def _lifecycle_actions(self):
        for action in CONTEXT.call_control("autoscaling/actions", {"group": GROUP})["actions"]:
            if action["token"] in self.seen_tokens:
                continue
            self.seen_tokens.add(action["token"])
            launching = action["transition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
            if launching and action["instance_id"] != self.fleet.first:
                self.replacements.append(action["instance_id"])
            self.send(
                envelope(
                    "aws.autoscaling",
                    f"EC2 Instance-{'launch' if launching else 'terminate'} Lifecycle Action",
                    {
                        "LifecycleActionToken": action["token"],
                        "AutoScalingGroupName": GROUP,
                        "LifecycleHookName": action["hook"],
                        "EC2InstanceId": action["instance_id"],
                        "LifecycleTransition": action["transition"],
                    },
                )
            )

    def _agents(self):
        """A replacement that got the data (its launch completed) boots and its agent reports, as the case says."""
        for instance_id in self.replacements:
            if instance_id in self.reported or "continued" not in progress.read(self.fleet.instance(instance_id)):
                continue
            self.reported.add(instance_id)
            volume = progress.outcome_of(progress.read(self.fleet.instance(instance_id))["attached"]).split(" ")[0]
            if self.agent == "ok":
                detail = {"phases": {"mounted": CONTEXT.now().strftime("%Y-%m-%dT%H:%M:%SZ")}, "volume-id": volume}
            elif self.agent == "refused":
                detail = {
                    "status": "refused",
                    "volume-id": volume,
                    "device": "/dev/nvme1n1",
                    "reason": f"refusing {volume} for lineage {LINEAGE}: its data belongs to lineage 'billing'",
                }
            else:
                continue
            self.send(
                envelope(
                    "ec2spot.autorecover",
                    "EC2Spot Recovery Boot Report",
                    {"instance-id": instance_id, "lineage": LINEAGE, **detail},
                )
            )

    def _deliver(self):
        due = sorted((m for m in self.queue if m[0] <= CONTEXT.now()), key=lambda m: (m[0], m[1]))
        for message in due:
            message[3] += 1
            record = {
                "messageId": str(message[1]),
                "body": message[2],
                "receiptHandle": f"r{message[1]}",
                "attributes": {"ApproximateReceiveCount": str(message[3])},
            }
            scheduled = len(self.fleet.retry_delays)
            failures = recovery.process_batch({"Records": [record]}, self.fleet.handler)["batchItemFailures"]
            if not failures:
                self.queue.remove(message)
            elif message[3] >= MAX_RECEIVES:
                self.queue.remove(message)
                self.dead_letters.append(message[2])
            else:  # visible again after the delay the handler chose (its ChangeMessageVisibility), else the queue's
                delay = self.fleet.retry_delays[-1] if len(self.fleet.retry_delays) > scheduled else VISIBILITY
                message[0] = CONTEXT.now() + recovery.timedelta(seconds=delay)

    def run(self, seconds):
        end = CONTEXT.now() + recovery.timedelta(seconds=seconds)
        while CONTEXT.now() < end:
            if CONTEXT.now() >= self.next_sweep:
                self.send(envelope("ec2spot.autorecover", "EC2Spot Sweep", {}))
                self.next_sweep = CONTEXT.now() + recovery.timedelta(seconds=SWEEP_EVERY)
            self._lifecycle_actions()
            self._agents()
            self._deliver()
            CONTEXT.advance(STEP)
        self.messages += self.fleet.messages()
        return self.messages


@pytest.fixture
def fleet(aws, ec2, world, monkeypatch):
    return story_ready(World(world), monkeypatch)


def story_ready(fleet, monkeypatch):
    """The fleet's service with a recovery deadline, its queue the story's."""
    fleet.configure(recovery_deadline=DEADLINE)
    # The queue is the story's: the back-off the handler chooses is applied there, and the last receive is MAX_RECEIVES.
    monkeypatch.setattr(retries, "_queue_of", lambda handler, record: (None, MAX_RECEIVES))
    fleet.retry_delays, choose = [], retries.retry_delay

    def chosen(*args, **kwargs):
        fleet.retry_delays.append(choose(*args, **kwargs))
        return fleet.retry_delays[-1]

    monkeypatch.setattr(retries, "retry_delay", chosen)
    return fleet


def other_zone(fleet):
    fleet.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP, VPCZoneIdentifier=fleet.seeded["subnets"]["us-east-1b"]
    )


def interrupt(fleet, story):
    """AWS's notice: the warning event now, the reclaim at the notice's time (the sandbox's Spot rule)."""
    CONTEXT.call_control("spot/interrupt", {"instance_id": fleet.first})
    story.send(warning(fleet.first))


def kinds(messages):
    return [m["event"] for m in messages]


def group_launches_suspended(fleet):
    [group] = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]
    return [p["ProcessName"] for p in group["SuspendedProcesses"]] == ["Launch"]


def test_no_fault_same_zone_recovered_with_nothing_lost(fleet):
    story = Story(fleet)
    interrupt(fleet, story)
    messages = story.run(600)
    assert kinds(messages) == ["interruption-warning", "recovered"] and len(story.replacements) == 1
    assert messages[-1]["losses"] == [] and messages[-1]["replaced"] == fleet.first
    assert "nothing lost" in messages[-1]["summary"] and story.dead_letters == []


def test_the_stop_failed_the_data_moved_crash_consistent_and_the_message_says_what_was_lost(fleet):
    CONTEXT.call_control(
        "ssm/script", {"instance_id": fleet.first, "outcome": "Failed", "error": "pg_ctl: could not stop"}
    )
    story = Story(fleet)
    interrupt(fleet, story)
    messages = story.run(600)
    assert kinds(messages) == ["interruption-warning", "crash-consistent-snapshot", "recovered-with-loss"]
    assert len(story.replacements) == 1 and story.dead_letters == []
    [loss] = messages[-1]["losses"]
    assert loss.startswith(f"crash-consistent data: the stop on {fleet.first} did not succeed (failed")
    assert "LOST: crash-consistent data" in messages[-1]["summary"]


def test_the_interruption_snapshot_failed_for_another_zone_one_abandon_and_launches_suspended(fleet):
    """The only snapshot is the interruption's, and it ends in error: no new instance can get the data."""
    other_zone(fleet)
    CONTEXT.call_control("ec2/fail-snapshots", {"volume_id": fleet.volume})
    story = Story(fleet)
    interrupt(fleet, story)
    messages = story.run(900)
    assert kinds(messages) == ["interruption-warning", "failed"] and len(story.replacements) == 1, [
        m["summary"] for m in messages
    ]
    assert (messages[-1]["step"], messages[-1]["launches_suspended"]) == ("launch", True) and group_launches_suspended(
        fleet
    )
    assert messages[-1]["error"]["message"].startswith(f"lineage {LINEAGE} has no completed snapshot to restore from")
    [failed] = CONTEXT.records["failed_snapshots"]
    assert messages[-1]["safe"] == (
        f"the data is on {fleet.volume} in us-east-1a (available), not moved or changed; its newest "
        f"snapshot, {failed['snapshot_id']}, failed (state error)"
    )
    assert messages[-1]["resume"].endswith("--scaling-processes Launch")


def test_the_replacements_agent_refuses_the_data_failed_at_once_with_its_reason(fleet):
    story = Story(fleet, agent="refused")
    interrupt(fleet, story)
    messages = story.run(600)
    assert kinds(messages) == ["interruption-warning", "failed"] and len(story.replacements) == 1
    assert (messages[-1]["step"], messages[-1]["status"], messages[-1]["instance_id"]) == (
        "boot",
        "refused",
        story.replacements[0],
    )
    assert "belongs to lineage 'billing'" in messages[-1]["reason"]


def test_a_replacement_that_never_reports_is_failed_once_by_the_deadline(fleet):
    story = Story(fleet, agent="silent")
    interrupt(fleet, story)
    messages = story.run(DEADLINE + 300)
    assert kinds(messages) == ["interruption-warning", "failed"] and len(story.replacements) == 1
    assert (messages[-1]["step"], messages[-1]["instance_id"]) == ("deadline", story.replacements[0])
    assert messages[-1]["reason"].startswith(f"no boot report from {story.replacements[0]} within {DEADLINE} s")


def test_the_address_held_by_another_lineage_is_not_taken_and_the_data_still_recovers(fleet, launch):
    other = launch(lineage="billing")
    fleet.clients["ec2"].associate_address(
        AllocationId=fleet.address["AllocationId"], InstanceId=other, AllowReassociation=True
    )
    story = Story(fleet)
    interrupt(fleet, story)
    messages = story.run(600)
    assert kinds(messages) == ["interruption-warning", "failed", "recovered"] and len(story.replacements) == 1
    assert (messages[1]["step"], messages[1]["holder"]) == ("address", other)
    address = fleet.clients["ec2"].describe_addresses(AllocationIds=[fleet.address["AllocationId"]])["Addresses"][0]
    assert address["InstanceId"] == other


def test_restored_in_another_zone_from_the_interruptions_consistent_snapshot_nothing_is_lost(fleet):
    other_zone(fleet)
    story = Story(fleet)
    interrupt(fleet, story)
    messages = story.run(900)
    assert kinds(messages) == ["interruption-warning", "recovered"] and len(story.replacements) == 1
    assert messages[-1]["losses"] == [] and " from snap-" in messages[-1]["data"]
    restored = [
        v
        for v in fleet.clients["ec2"].describe_volumes()["Volumes"]
        if v["AvailabilityZone"] == "us-east-1b" and t.as_dict(v.get("Tags")).get(t.LINEAGE) == LINEAGE
    ]
    assert len(restored) == 1


def throttle(fleet, refused, monkeypatch):
    """EC2 throttling as AWS answers it (503 ``RequestLimitExceeded``, the request not executed) on each request of
    the handler's own EC2 client for which ``refused(n)`` (n counts the requests) is true; botocore's standard retry
    mode sees the real error shape and backs off (its sleeps are skipped: the modeled clock is the story's)."""
    import boto3
    import botocore.endpoint
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import BotocoreStubber

    seen = itertools.count(1)
    body = (
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>"
        b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttled</RequestID></Response>"
    )

    class Raw:
        def stream(self, **unused):
            yield body

    def refuse(request, **unused):
        if not refused(next(seen)):
            return None
        request.sandbox_throttled = True  # botocore offers the request to every handler: moto must not run it
        CONTEXT.record("throttled", "ec2")
        return AWSResponse(request.url, 503, {"Content-Type": "text/xml"}, Raw())

    moto_answers = BotocoreStubber.__call__

    def unless_throttled(self, event_name, request, **kwargs):
        return (
            None if getattr(request, "sandbox_throttled", False) else moto_answers(self, event_name, request, **kwargs)
        )

    monkeypatch.setattr(BotocoreStubber, "__call__", unless_throttled)
    monkeypatch.setattr(botocore.endpoint.time, "sleep", lambda seconds: None)
    client = boto3.client("ec2", region_name="us-east-1", config=RETRY_CONFIG)
    client.meta.events.register_first("before-send", refuse)
    fleet.handler.clients = recovery.Clients(lambda name: client if name == "ec2" else fleet.clients[name])


@pytest.mark.parametrize(
    "refused, outage, expected",
    [
        # every third request: botocore's own retries absorb it
        (lambda n: n % 3 == 0, 0, ["interruption-warning", "recovered"]),
        # every request for a minute: the queue's back-off carries the warning through, inside the notice
        (lambda n: CONTEXT.now() < OUTAGE_END[0], 60, ["interruption-warning", "recovered"]),
        # every request for three minutes, past the reclaim: nothing could be stopped, and the data, moved once EC2
        # answers, is crash-consistent. Whether the sweep reaches the gone holder before the replacement takes its data
        # (then it says so first) depends on the retries' jitter: either way one terminal message, and it is true.
        (
            lambda n: CONTEXT.now() < OUTAGE_END[0],
            180,
            [["missed-warning", "recovered-with-loss"], ["recovered-with-loss"]],
        ),
    ],
    ids=["every-third-request", "one-minute-outage", "three-minute-outage"],
)
def test_throttling_slows_a_recovery_it_never_stalls_it_or_empties_the_queue(
    fleet, monkeypatch, refused, outage, expected
):
    OUTAGE_END[0] = CONTEXT.now() + recovery.timedelta(seconds=outage)
    throttle(fleet, refused, monkeypatch)
    story = Story(fleet)
    interrupt(fleet, story)
    messages = story.run(900)
    assert len(CONTEXT.records["throttled"]) > 10
    assert kinds(messages) in (expected if isinstance(expected[0], list) else [expected]), [
        m["summary"] for m in messages
    ]
    assert len(story.replacements) == 1
    assert story.dead_letters == [] and messages[-1]["replaced"] == fleet.first


OUTAGE_END = [None]


def test_no_capacity_for_the_replacement_failed_by_the_deadline_with_the_groups_reason(fleet):
    """EC2 has no t3.micro in the group's zone: the group's launches fail and it retries; no replacement ever takes
    the data, and the deadline says so with Auto Scaling's own reason."""
    story = Story(fleet)
    interrupt(fleet, story)
    CONTEXT.call_control("ec2/capacity", {"zone": "us-east-1a", "instance_type": "t3.micro", "available": False})
    messages = story.run(DEADLINE + 300)
    assert kinds(messages) == ["interruption-warning", "failed"] and story.replacements == []
    assert messages[-1]["step"] == "deadline" and messages[-1]["instance_id"] == fleet.first
    assert "the group's launches failed" in messages[-1]["reason"]
    assert (
        "We currently do not have sufficient t3.micro capacity in the Availability Zone you requested (us-east-1a)"
        in messages[-1]["reason"]
    )
    assert fleet.volume in messages[-1]["safe"] and len(CONTEXT.records["failed_launches"]) >= 2


@pytest.fixture
def kms_fleet(aws, ec2, world, monkeypatch):
    import boto3

    key = boto3.client("kms", region_name="us-east-1").create_key(Description="pgdata")["KeyMetadata"]["Arn"]
    fleet = story_ready(World(world, kms_key_id=key), monkeypatch)
    fleet.key = key
    return fleet


def test_a_disabled_kms_key_for_another_zone_one_abandon_naming_the_key_and_launches_suspended(kms_fleet):
    import boto3

    fleet = kms_fleet
    other_zone(fleet)
    story = Story(fleet)
    interrupt(fleet, story)
    boto3.client("kms", region_name="us-east-1").disable_key(KeyId=fleet.key)
    messages = story.run(900)
    assert kinds(messages) == ["interruption-warning", "failed"] and len(story.replacements) == 1
    assert (messages[-1]["step"], messages[-1]["launches_suspended"]) == ("launch", True) and group_launches_suspended(
        fleet
    )
    assert f"EBS could not use {fleet.key}" in messages[-1]["error"]["message"]
    assert messages[-1]["safe"].startswith(f"the data is on {fleet.volume} in us-east-1a (available)")
    [failure] = CONTEXT.records["kms_volume_failures"]
    assert failure["reason"].startswith("Client.InvalidKMSKey.InvalidState")
