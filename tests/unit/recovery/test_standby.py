"""Standby failover (seed 002, pattern 1) through the handler, on the sandbox's AWS.

The world: a primary and a stopped standby of lineage ``webdata`` in one zone (both managed by
SSM), the lineage volume attached to the primary, the service's Elastic IP on the primary, and the
SNS topic read through an SQS queue. Events are the ones the sandbox emitted (EC2 state changes,
CloudWatch alarm state changes), delivered as EventBridge delivers them; the modeled clock moves
only when the handler waits (the status checks pass ``status_checks`` modeled seconds after a start).
"""

import json

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import standby as standbys
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import InvalidInput
from sandbox import scenario
from sandbox import world as sandbox_world
from sandbox.clock import CONTEXT
from sandbox.rules.alarms import status_check_seconds
from sandbox.scenario import delivered

LINEAGE, NAME = "webdata", "web"
ROLE = "ec2spot:role"


class StandbyWorld:
    def __init__(
        self, seeded, standby_zone="us-east-1a", standby_state="stopped", move_volume=True, standby_section=None
    ):
        self.clients = scenario.clients()
        ec2 = self.clients["ec2"]
        sandbox_world.managed_instance_profile(self.clients["iam"], f"{NAME}-instance")
        self.primary = self._launch(seeded, "us-east-1a", "primary")
        self.standby = self._launch(seeded, standby_zone, "standby")
        if standby_state == "stopped":
            ec2.stop_instances(InstanceIds=[self.standby])
        self.volume = sandbox_world.lineage_volume(ec2, LINEAGE, "us-east-1a", 20, {t.DEVICE: "/dev/sdf"})
        ec2.attach_volume(VolumeId=self.volume, InstanceId=self.primary, Device="/dev/sdf")
        self.address = ec2.allocate_address(
            Domain="vpc",
            TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "Service", "Value": NAME}]}],
        )
        ec2.associate_address(AllocationId=self.address["AllocationId"], InstanceId=self.primary)
        self.inbox = scenario.Inbox(self.clients, NAME)
        CONTEXT.advance(status_check_seconds(CONTEXT) + 5)  # the primary is up and passed its checks
        self.config = handler_config.parse(
            {
                "topic_arn": self.inbox.topic,
                "services": [
                    {
                        "name": NAME,
                        "lineage": LINEAGE,
                        "address": {"tags": {"Service": NAME}},
                        "device_name": "/dev/sdf",
                        "standby": standby_section
                        or {"tags": {ROLE: "standby"}, "primary_tags": {ROLE: "primary"}, "move_volume": move_volume},
                    }
                ],
            }
        )
        self.handler = scenario.handler(self.config, self.clients)

    def _launch(self, seeded, zone, role):
        return self.clients["ec2"].run_instances(
            ImageId=seeded["image_id"],
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            SubnetId=seeded["subnets"][zone],
            IamInstanceProfile={"Name": f"{NAME}-instance"},
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": t.LINEAGE, "Value": LINEAGE}, {"Key": ROLE, "Value": role}],
                }
            ],
        )["Instances"][0]["InstanceId"]

    def state(self, instance_id):
        return self.clients["ec2"].describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def address_holder(self):
        return (
            self.clients["ec2"]
            .describe_addresses(AllocationIds=[self.address["AllocationId"]])["Addresses"][0]
            .get("InstanceId")
        )

    def volume_holders(self):
        volume = self.clients["ec2"].describe_volumes(VolumeIds=[self.volume])["Volumes"][0]
        return [(a["InstanceId"], a["State"]) for a in volume["Attachments"]]

    def messages(self):
        return self.inbox.messages()

    def alarm(self, name):
        """A status-check alarm on the primary, driven to ALARM with SetAlarmState: returns the event the sandbox emitted."""
        cloudwatch = self.clients["cloudwatch"]
        scenario.instance_alarm(
            cloudwatch,
            name,
            self.primary,
            MetricName="StatusCheckFailed",
            Statistic="Maximum",
            Period=60,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        return scenario.set_alarm(cloudwatch, name, "ALARM", "test: threshold crossed")


@pytest.fixture
def web(aws, ec2, world):
    return StandbyWorld(world)


def test_stopped_primary_fails_over_to_the_standby_with_address_and_volume(web):
    web.clients["ec2"].stop_instances(InstanceIds=[web.primary])
    [stopped] = delivered("EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopped"})
    clock = web.handler.clock

    outcome = web.handler.handle(stopped)

    assert outcome.startswith(f"failed over from {web.primary} to {web.standby}")
    standby = web.state(web.standby)
    assert standby["State"]["Name"] == "running"
    assert (
        web.clients["ec2"].describe_instance_status(InstanceIds=[web.standby])["InstanceStatuses"][0]["InstanceStatus"][
            "Status"
        ]
        == "ok"
    )
    assert web.address_holder() == web.standby
    assert web.volume_holders() == [(web.standby, "attached")]
    assert (
        t.as_dict(web.clients["ec2"].describe_volumes(VolumeIds=[web.volume])["Volumes"][0]["Tags"])[t.GENERATION]
        == "2"
    )
    [message] = web.messages()
    assert message["event"] == "standby-failover" and message["standby_started"] is True
    assert message["address_moved"] is True and message["volume_moved"] is True
    # It waited for the checks by polling the modeled clock, no fixed sleep: about the modeled check time, in short polls.
    assert status_check_seconds(CONTEXT) <= message["ready_seconds"] <= status_check_seconds(CONTEXT) + 10
    assert max(clock.slept) <= 1.0
    assert progress.outcome_of(progress.read(web.state(web.primary))[standbys.FAILOVER_STEP]) == web.standby
    assert progress.outcome_of(progress.read(standby)[standbys.TOOK_OVER_STEP]) == web.primary
    # The "stopping" event of the same stop comes too: nothing moves twice.
    [stopping] = delivered(
        "EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopping"}
    )
    assert web.handler.handle(stopping).startswith(f"duplicate: {web.primary} already failed over to {web.standby}")
    assert web.messages() == []


def test_status_check_alarm_on_a_running_primary_moves_the_address_but_not_the_volume(web):
    body = web.alarm(f"ec2spot-autorecover-standby-{NAME}-status")
    outcome = web.handler.handle(body)
    assert web.address_holder() == web.standby
    assert web.volume_holders() == [(web.primary, "attached")]  # the fence: the primary still runs
    assert "refused: the primary" in outcome and "fence" in outcome
    [message] = web.messages()
    assert message["event"] == "standby-failover" and message["volume_moved"] is False
    assert message["trigger"].startswith("alarm ") and "refused" in message["volume"]


def test_alarm_back_to_ok_and_events_about_the_standby_do_nothing(web):
    web.alarm("web-status")
    web.clients["cloudwatch"].set_alarm_state(AlarmName="web-status", StateValue="OK", StateReason="test: recovered")
    back_to_ok = delivered("CloudWatch Alarm State Change", alarmName="web-status")[-1]
    assert json.loads(back_to_ok)["detail"]["previousState"]["value"] == "ALARM"
    assert web.handler.handle(back_to_ok) == "ignored: alarm web-status is OK"
    # Setting the state it already has changes nothing: no event (as AWS).
    web.clients["cloudwatch"].set_alarm_state(AlarmName="web-status", StateValue="OK", StateReason="test: again")
    assert len(delivered("CloudWatch Alarm State Change", alarmName="web-status")) == 2
    web.clients["ec2"].start_instances(InstanceIds=[web.standby])
    running = delivered("EC2 Instance State-change Notification", **{"instance-id": web.standby, "state": "running"})[
        -1
    ]
    assert web.handler.handle(running).startswith(f"ignored: {web.standby} is the standby")
    assert web.address_holder() == web.primary and web.messages() == []


def test_standby_already_running_is_not_started_again(aws, ec2, world):
    web = StandbyWorld(world, standby_state="running")
    web.clients["ec2"].stop_instances(InstanceIds=[web.primary])
    [stopped] = delivered("EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopped"})
    starts_before = len(
        delivered("EC2 Instance State-change Notification", **{"instance-id": web.standby, "state": "pending"})
    )
    web.handler.handle(stopped)
    assert (
        len(delivered("EC2 Instance State-change Notification", **{"instance-id": web.standby, "state": "pending"}))
        == starts_before
    )
    [message] = web.messages()
    assert message["standby_started"] is False and message["address_moved"] is True
    assert web.address_holder() == web.standby


def test_standby_failing_its_checks_gets_nothing_and_the_failure_is_reported(web):
    CONTEXT.call_control("ec2/status", {"instance_id": web.standby, "instance": "impaired"})
    web.clients["ec2"].stop_instances(InstanceIds=[web.primary])
    [stopped] = delivered("EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopped"})

    outcome = web.handler.handle(stopped)

    assert outcome.startswith(f"standby failover for {web.primary} failed") and "status checks failed" in outcome
    assert web.address_holder() == web.primary  # no address move
    assert web.volume_holders() == [(web.primary, "attached")]
    [message] = web.messages()
    assert message["event"] == "standby-failover-failed" and message["error"]["code"] == "StandbyNotReady"
    assert standbys.FAILOVER_STEP not in progress.read(web.state(web.primary))  # not marked: a later event may retry


def test_standby_that_never_passes_its_checks_times_out_bounded(aws, ec2, world):
    web = StandbyWorld(world, standby_section={"tags": {ROLE: "standby"}, "ready_timeout": 30})
    web.clients["ec2"].stop_instances(InstanceIds=[web.primary])
    [stopped] = delivered("EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopped"})
    started = CONTEXT.clock.elapsed()
    outcome = web.handler.handle(stopped)
    assert "not ready" in outcome and "timed out after" in outcome
    assert CONTEXT.clock.elapsed() - started <= 32  # bounded by ready_timeout (modeled seconds)
    assert web.address_holder() == web.primary


def test_address_moved_back_by_hand_is_left_there_never_flapping(web):
    web.clients["ec2"].stop_instances(InstanceIds=[web.primary])
    [stopped] = delivered("EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopped"})
    web.handler.handle(stopped)
    web.messages()
    # The operator brings the primary back and moves the address back by hand.
    web.clients["ec2"].start_instances(InstanceIds=[web.primary])
    web.clients["ec2"].associate_address(
        AllocationId=web.address["AllocationId"], InstanceId=web.primary, AllowReassociation=True
    )

    redelivered = web.handler.handle(stopped)
    web.clients["ec2"].stop_instances(InstanceIds=[web.primary])  # and a later stop: still no automatic move
    stops = delivered("EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopped"})
    assert len(stops) == 2
    later = stops[-1]
    again = web.handler.handle(later)

    for outcome in (redelivered, again):
        assert outcome.startswith("duplicate") and f"was moved to {web.primary} since and stays there" in outcome
    assert web.address_holder() == web.primary and web.messages() == []


def test_volume_is_not_handed_over_across_zones(aws, ec2, world):
    web = StandbyWorld(world, standby_zone="us-east-1b")
    web.clients["ec2"].stop_instances(InstanceIds=[web.primary])
    [stopped] = delivered("EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopped"})
    outcome = web.handler.handle(stopped)
    assert "is in us-east-1a, the standby in us-east-1b" in outcome
    assert web.address_holder() == web.standby and web.volume_holders() == [(web.primary, "attached")]


def test_standby_without_the_lineage_tag_is_refused_clearly(aws, ec2, world):
    stranger = ec2.run_instances(
        ImageId=world["image_id"],
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        SubnetId=world["subnets"]["us-east-1a"],
    )["Instances"][0]["InstanceId"]
    web = StandbyWorld(world, standby_section={"instance_id": stranger})
    web.clients["ec2"].stop_instances(InstanceIds=[web.primary])
    [stopped] = delivered("EC2 Instance State-change Notification", **{"instance-id": web.primary, "state": "stopped"})
    outcome = web.handler.handle(stopped)
    assert f"does not carry the tag {t.LINEAGE}={LINEAGE}" in outcome
    assert web.address_holder() == web.primary
    assert web.messages()[0]["event"] == "standby-failover-failed"


@pytest.mark.parametrize(
    "section, message",
    [
        ({}, "exactly one of instance_id or tags"),
        ({"instance_id": "i-0123456789abcdef0", "tags": {"a": "b"}}, "exactly one of instance_id or tags"),
        ({"instance_id": "web-2"}, "not an EC2 instance id"),
        ({"tags": {"a": 1}}, "mapping of tag keys to string values"),
        ({"tags": {"a": "b"}, "ready_timeout": 5}, "ready_timeout must be an integer from 30 to 900"),
        ({"tags": {"a": "b"}, "move_volume": "yes"}, "move_volume must be true or false"),
        ({"tags": {"a": "b"}, "surprise": 1}, "unknown keys: surprise"),
        ("i-0123456789abcdef0", "must be an object"),
        ({"instance_id": "i-0123456789abcdef0\n"}, "not an EC2 instance id"),
        ({"tags": {"a": "b"}, "primary_instance_id": "i-123"}, "primary_instance_id 'i-123' is not an EC2 instance id"),
        ({"tags": {"a": "b"}, "primary_instance_id": "i-0123456789abcdef0", "primary_tags": {"r": "p"}}, "not both"),
    ],
)
def test_bad_standby_configuration_is_refused_precisely(section, message):
    with pytest.raises(InvalidInput, match=message):
        handler_config.parse({"services": [{"name": NAME, "lineage": LINEAGE, "standby": section}]})


@pytest.mark.parametrize(
    "section, expected",
    [
        # the standby by id; the primary: every other instance of the lineage
        ({"instance_id": "B"}, {"standby": ["B"], "primary": ["A", "C"]}),
        # the standby by tags, the primary by tags
        ({"tags": {"role": "standby"}, "primary_tags": {"role": "primary"}}, {"standby": ["B"], "primary": ["A"]}),
        # the primary by id: a third instance is neither
        ({"tags": {"role": "standby"}, "primary_instance_id": "C"}, {"standby": ["B"], "primary": ["C"]}),
        # the standby is never the primary, even when it is named as both
        ({"instance_id": "B", "primary_instance_id": "B"}, {"standby": ["B"], "primary": []}),
        # tags that match nothing
        ({"tags": {"role": "spare"}}, {"standby": [], "primary": ["A", "B", "C"]}),
    ],
)
def test_the_standby_and_the_primary_are_told_apart_by_one_rule(aws, ec2, world, section, expected):
    """The rule the handler acts on is the one the standby role asks (through lineage_info): instances A (primary),
    B (standby), C (another of the lineage), D (another lineage, never counted)."""
    ids = {}
    for name, tags in (("A", {"role": "primary"}), ("B", {"role": "standby"}), ("C", {}), ("D", None)):
        lineage_tags = {t.LINEAGE: LINEAGE, **tags} if tags is not None else {t.LINEAGE: "other"}
        ids[name] = ec2.run_instances(
            ImageId=world["image_id"],
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            SubnetId=world["subnets"]["us-east-1a"],
            TagSpecifications=[{"ResourceType": "instance", "Tags": t.as_list(lineage_tags)}],
        )["Instances"][0]["InstanceId"]
    by_id = {value: key for key, value in ids.items()}
    raw = {key: (ids[value] if key.endswith("instance_id") else value) for key, value in section.items()}
    found = standbys.classify(ec2, LINEAGE, standbys.parse_settings(raw, "standby"))
    assert {role: sorted(by_id[i] for i in found_ids) for role, found_ids in found.items()} == expected
