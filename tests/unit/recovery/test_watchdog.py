"""The CPU watchdog (seed 004) through the handler, on the sandbox's AWS.

The world: one instance of lineage ``apidata`` managed by SSM (or not), a CPUUtilization alarm on
it, the SNS topic read through an SQS queue. The alarm is driven with SetAlarmState; the sandbox
emits its ``CloudWatch Alarm State Change`` event (and runs its EC2 action) as AWS does, and that
event is what the handler gets. Reboots, status checks and Run Command follow the modeled clock.
"""

import json
import os

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import watchdog as watchdogs
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import InvalidInput
from sandbox import scenario
from sandbox import world as sandbox_world
from sandbox.clock import CONTEXT
from sandbox.rules.alarms import status_check_seconds

LINEAGE, NAME, ALARM = "apidata", "api", "ec2spot-autorecover-watchdog-api"
RESTART = ["echo restarted >> app.restarts"]


class WatchdogWorld:
    def __init__(self, seeded, managed=True, mode="handler", alarm_actions=(), **section):
        self.clients = scenario.clients()
        extra = {}
        if managed:
            extra["IamInstanceProfile"] = {
                "Name": sandbox_world.managed_instance_profile(self.clients["iam"], f"{NAME}-instance")
            }
        self.instance = self.clients["ec2"].run_instances(
            ImageId=seeded["image_id"],
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            SubnetId=seeded["subnets"]["us-east-1a"],
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": t.LINEAGE, "Value": LINEAGE}]}],
            **extra,
        )["Instances"][0]["InstanceId"]
        self.inbox = scenario.Inbox(self.clients, NAME)
        scenario.instance_alarm(
            self.clients["cloudwatch"], ALARM, self.instance, alarm_actions, Period=60, EvaluationPeriods=3
        )
        CONTEXT.advance(status_check_seconds(CONTEXT) + 5)
        self.config = handler_config.parse(
            {
                "topic_arn": self.inbox.topic,
                "services": [
                    {"name": NAME, "lineage": LINEAGE, "watchdog": {"mode": mode, "alarm_prefix": ALARM, **section}}
                ],
            }
        )
        self.handler = scenario.handler(self.config, self.clients)

    def fire(self):
        """The CPU alarm goes to ALARM; returns the event as the queue delivers it."""
        body = scenario.set_alarm(self.clients["cloudwatch"], ALARM, "ALARM", "Threshold Crossed: 3 datapoints > 95.0")
        assert json.loads(body)["detail"]["state"]["value"] == "ALARM"
        return body

    def calm(self, seconds):
        """CPU back to normal, then ``seconds`` of modeled time pass."""
        self.clients["cloudwatch"].set_alarm_state(
            AlarmName=ALARM, StateValue="OK", StateReason="Threshold Crossed: back under"
        )
        CONTEXT.advance(seconds)

    def messages(self):
        return self.inbox.messages()

    def reboots(self):
        return [r["instance_id"] for r in CONTEXT.records.get("reboots", [])]

    def restarts(self):
        path = os.path.join(CONTEXT.instance_root(self.instance), "app.restarts")
        return open(path, encoding="utf-8").read().split() if os.path.exists(path) else []


def test_cpu_alarm_reboots_waits_for_the_checks_then_restarts_through_ssm(aws, ec2, world):
    api = WatchdogWorld(world, commands=RESTART)
    outcome = api.handler.handle(api.fire())

    assert outcome == f"watchdog for {api.instance}: rebooted; restart ok"
    assert api.reboots() == [api.instance]
    [command] = CONTEXT.records["ssm_commands"]
    assert command["document"] == "AWS-RunShellScript" and command["commands"] == RESTART
    assert api.restarts() == ["restarted"]  # the command really ran on the instance, after the reboot
    [reboot] = CONTEXT.records["reboots"]
    [invocation] = CONTEXT.records["ssm_invocations"]
    assert invocation["at"] >= reboot["at"]
    [message] = api.messages()
    assert message["event"] == "watchdog-reboot" and message["restart"] == "ok" and message["reboots_last_hour"] == 1
    # The restart waited for both status checks (initializing after the reboot) on the modeled clock.
    assert status_check_seconds(CONTEXT) <= message["ready_seconds"] <= status_check_seconds(CONTEXT) + 10
    status = ec2.describe_instance_status(InstanceIds=[api.instance])["InstanceStatuses"][0]
    assert (status["InstanceStatus"]["Status"], status["SystemStatus"]["Status"]) == ("ok", "ok")
    history = t.as_dict(ec2.describe_instances(InstanceIds=[api.instance])["Reservations"][0]["Instances"][0]["Tags"])
    assert len(history[watchdogs.HISTORY_TAG].split()) == 1


def test_the_default_restart_command_is_the_seeds(aws, ec2, world):
    api = WatchdogWorld(world)
    api.handler.handle(api.fire())
    assert CONTEXT.records["ssm_commands"][0]["commands"] == ["docker-compose up -d"]


def test_a_third_alarm_within_the_hour_raises_the_cap_alert_instead_of_a_reboot(aws, ec2, world):
    api = WatchdogWorld(world, commands=RESTART, cooldown=300, max_reboots_per_hour=2)
    first = api.handler.handle(api.fire())
    api.calm(400)  # past the cooldown, within the hour
    second = api.handler.handle(api.fire())
    api.calm(400)
    third = api.handler.handle(api.fire())

    assert first.endswith("rebooted; restart ok") and second.endswith("rebooted; restart ok")
    assert third == f"watchdog for {api.instance}: cap of 2 reboots per hour reached, no reboot; alert sent"
    assert api.reboots() == [api.instance, api.instance]  # the third did not reboot
    assert api.restarts() == ["restarted", "restarted"]
    assert [m["event"] for m in api.messages()] == ["watchdog-reboot", "watchdog-reboot", "watchdog-cap"]
    # An hour after the first reboot the window has room again.
    api.calm(3600)
    assert api.handler.handle(api.fire()).endswith("rebooted; restart ok")


def test_alarm_within_the_cooldown_does_not_reboot(aws, ec2, world):
    api = WatchdogWorld(world, commands=RESTART, cooldown=900)
    api.handler.handle(api.fire())
    api.calm(60)
    outcome = api.handler.handle(api.fire())
    assert "no reboot" in outcome and "cooldown 900s" in outcome
    assert api.reboots() == [api.instance]


def test_redelivered_alarm_event_reboots_nothing_twice(aws, ec2, world):
    api = WatchdogWorld(world, commands=RESTART, cooldown=0)
    body = api.fire()
    api.handler.handle(body)
    assert api.handler.handle(body).startswith("duplicate: alarm event")
    assert api.reboots() == [api.instance] and len(CONTEXT.records["ssm_commands"]) == 1


def test_instance_unknown_to_ssm_is_rebooted_and_the_report_names_the_missing_policy(aws, ec2, world):
    api = WatchdogWorld(world, managed=False, commands=RESTART)
    outcome = api.handler.handle(api.fire())
    assert api.reboots() == [api.instance]
    assert "skipped: SSM does not know" in outcome and "AmazonSSMManagedInstanceCore" in outcome
    assert CONTEXT.records.get("ssm_commands", []) == []
    [message] = api.messages()
    assert message["event"] == "watchdog-failed" and "AmazonSSMManagedInstanceCore" in message["restart"]


def test_alarm_reboot_mode_lets_the_alarm_reboot_and_disables_its_actions_at_the_cap(aws, ec2, world):
    api = WatchdogWorld(
        world, mode="alarm-reboot", alarm_actions=["arn:aws:automate:us-east-1:ec2:reboot"], max_reboots_per_hour=2
    )
    first = api.handler.handle(api.fire())  # the alarm's own action rebooted the instance
    assert api.reboots() == [api.instance] and first.endswith("alarm reboot 1 reported")
    assert CONTEXT.records["alarm_actions"][0]["outcome"] == f"reboot {api.instance}"
    api.calm(300)
    second = api.handler.handle(api.fire())
    assert "cap reached: alarm actions disabled" in second
    assert (
        ec2
        and api.clients["cloudwatch"].describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["ActionsEnabled"] is False
    )
    api.calm(300)
    api.fire()
    assert api.reboots() == [api.instance, api.instance]  # actions disabled: the third ALARM reboots nothing
    assert CONTEXT.records.get("ssm_commands", []) == []  # the handler never reboots nor runs commands in this mode
    assert [m["event"] for m in api.messages()] == ["watchdog-reboot", "watchdog-cap"]


def test_other_alarms_and_ok_states_are_ignored(aws, ec2, world):
    api = WatchdogWorld(world, commands=RESTART)
    api.fire()
    body = scenario.set_alarm(api.clients["cloudwatch"], ALARM, "OK", "back")
    assert api.handler.handle(body) == f"ignored: alarm {ALARM} is OK"
    event = json.loads(body)
    other = dict(event["detail"], alarmName="someone-elses-alarm", state={"value": "ALARM"})
    assert api.handler.handle(scenario.envelope(event["source"], event["detail-type"], other)).startswith(
        "ignored: alarm someone-elses-alarm"
    )
    assert api.reboots() == []


@pytest.mark.parametrize(
    "detail, message",
    [
        ({"alarmName": "a", "state": {"value": "RED"}, "configuration": {"metrics": []}}, "must be one of OK, ALARM"),
        (
            {"alarmName": "a", "state": {"value": "ALARM"}, "configuration": {"metrics": []}},
            "no metric with an InstanceId",
        ),
        (
            {
                "alarmName": "a",
                "state": {"value": "ALARM"},
                "configuration": {"metrics": [{"metricStat": {"metric": {"dimensions": {"InstanceId": "i-nope"}}}}]},
            },
            "is not valid",
        ),
        ({"state": {"value": "ALARM"}}, "alarmName must be a non-empty string"),
    ],
)
def test_malformed_alarm_events_are_dropped_with_a_reason(detail, message):
    from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import events

    with pytest.raises(events.InvalidEvent, match=message):
        events.parse(
            scenario.envelope("aws.cloudwatch", "CloudWatch Alarm State Change", detail),
            account=CONTEXT.account_id,
            region=CONTEXT.region,
        )


@pytest.mark.parametrize(
    "section, message",
    [
        ({}, "mode must be one of alarm-reboot, handler"),
        ({"mode": "reboot"}, "mode must be one of alarm-reboot, handler"),
        ({"mode": "handler", "commands": "docker-compose up -d"}, "commands must be a non-empty list"),
        ({"mode": "handler", "commands": []}, "commands must be a non-empty list"),
        ({"mode": "handler", "max_reboots_per_hour": 0}, "max_reboots_per_hour must be an integer from 1 to 20"),
        ({"mode": "handler", "cooldown": -1}, "cooldown must be an integer from 0 to 86400"),
        ({"mode": "handler", "ready_timeout": 800, "command_timeout": 200}, "must fit in the function's 900 seconds"),
        ({"mode": "handler", "surprise": 1}, "unknown keys: surprise"),
    ],
)
def test_bad_watchdog_configuration_is_refused_precisely(section, message):
    with pytest.raises(InvalidInput, match=message):
        handler_config.parse({"services": [{"name": NAME, "lineage": LINEAGE, "watchdog": section}]})


def test_the_cpu_alarm_follows_the_data_to_a_spot_replacement(aws, ec2, world):
    """The role watches the group's instances as they are; the handler moves the alarm to each replacement."""
    from sandbox.scenario import World, warning

    fleet = World(world)
    prefix = "ec2spot-autorecover-watchdog-pg-"
    cloudwatch = fleet.clients["cloudwatch"]
    scenario.instance_alarm(
        cloudwatch,
        prefix + fleet.first,
        fleet.first,
        ["arn:aws:automate:us-east-1:ec2:reboot"],
        AlarmDescription="seed 004",
    )
    fleet.configure(watchdog={"mode": "alarm-reboot", "alarm_prefix": prefix})

    fleet.handler.handle(warning(fleet.first))
    CONTEXT.advance(60)
    [action] = fleet.pending_launches()
    replacement = action["instance_id"]
    outcome = fleet.handler.handle(fleet.launch_event(action))

    assert outcome.endswith(f"; watchdog alarm {prefix}{replacement} (moved from {fleet.first})"), outcome
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]}
    assert list(alarms) == [prefix + replacement]
    moved = alarms[prefix + replacement]
    assert moved["Dimensions"] == [{"Name": "InstanceId", "Value": replacement}]
    assert (
        moved["Threshold"],
        moved["Period"],
        moved["EvaluationPeriods"],
        moved["ComparisonOperator"],
        moved["Statistic"],
        moved["AlarmActions"],
        moved["AlarmDescription"],
        moved["ActionsEnabled"],
    ) == (95.0, 300, 2, "GreaterThanThreshold", "Average", ["arn:aws:automate:us-east-1:ec2:reboot"], "seed 004", True)
    # Idempotent: asked again, the replacement's alarm is left as it is.
    assert (
        watchdogs.follow_replacement(cloudwatch, prefix, fleet.first, replacement)
        == f"watchdog alarm {prefix}{replacement} (existing)"
    )
    # An instance that was never watched gives nothing to move.
    assert watchdogs.follow_replacement(cloudwatch, prefix, "i-0123456789abcdef0", "i-0fedcba9876543210") is None
