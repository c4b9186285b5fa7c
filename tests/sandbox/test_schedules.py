"""Scheduled rules run on the modeled clock (sandbox/rules/schedules.py), with their targets' input transformers."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import events as recovery_events
from sandbox.control import SandboxError
from sandbox.rules import schedules

from .conftest import drain, error_code, unique

UTC = timezone.utc


def at(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now(box):
    return at(box.clock()["now"])


def listed(box, name):
    return next(s for s in box.schedules() if s["rule"] == name)


# ---- due times ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "expression, after, due",
    [
        ("cron(0 3 * * ? *)", "2026-11-24T19:40:12", "2026-11-25T03:00:00"),
        ("cron(0 3 * * ? *)", "2026-11-25T02:59:59", "2026-11-25T03:00:00"),
        ("cron(0 3 * * ? *)", "2026-11-25T03:00:00", "2026-11-26T03:00:00"),  # strictly after
        ("cron(0/15 * * * ? *)", "2026-11-24T19:40:12", "2026-11-24T19:45:00"),
        ("cron(15 10 ? * MON-FRI *)", "2026-11-27T11:00:00", "2026-11-30T10:15:00"),  # Friday after -> Monday
        ("cron(0 18 ? * 2,6 *)", "2026-11-24T00:00:00", "2026-11-27T18:00:00"),  # 2 = MON, 6 = FRI
        ("cron(0 12 L * ? *)", "2026-02-10T00:00:00", "2026-02-28T12:00:00"),
        ("cron(0 12 L * ? *)", "2028-02-10T00:00:00", "2028-02-29T12:00:00"),
        ("cron(0 9 ? * 6L *)", "2026-11-01T00:00:00", "2026-11-27T09:00:00"),  # last Friday
        ("cron(0 9 ? * 3#2 *)", "2026-11-01T00:00:00", "2026-11-10T09:00:00"),  # second Tuesday
        ("cron(0 8 15W * ? *)", "2026-11-01T00:00:00", "2026-11-16T08:00:00"),  # the 15th is a Sunday
        ("cron(0 8 1W * ? *)", "2026-08-01T00:00:00", "2026-08-03T08:00:00"),  # Saturday the 1st -> Monday 3rd
        ("cron(0 8 LW * ? *)", "2026-05-01T00:00:00", "2026-05-29T08:00:00"),  # the 31st is a Sunday
        ("cron(30 6 1 JAN,JUL ? 2027-2028)", "2026-11-24T00:00:00", "2027-01-01T06:30:00"),
        ("cron(0 0 1 1 ? 2027)", "2027-01-01T00:00:00", None),  # no due time left
    ],
)
def test_cron_due_times(expression, after, due):
    moment = datetime.fromisoformat(after).replace(tzinfo=UTC)
    found = schedules.parse(expression).next_after(moment)
    assert found == (datetime.fromisoformat(due).replace(tzinfo=UTC) if due else None)


def test_rate_due_times_count_from_the_start():
    start = datetime(2026, 11, 24, 19, 40, 12, tzinfo=UTC)
    rate = schedules.parse("rate(5 minutes)")
    assert rate.next_after(start, start) == start + timedelta(minutes=5)
    assert rate.next_after(start + timedelta(minutes=5), start) == start + timedelta(minutes=10)
    assert rate.next_after(start + timedelta(minutes=12, seconds=1), start) == start + timedelta(minutes=15)
    assert schedules.parse("rate(1 day)").next_after(start, start) == start + timedelta(days=1)


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(5 weeks)",
        "cron(0 3 * * * *)",
        "cron(0 3 ? * ? *)",
        "cron(0 3 * * ?)",
        "cron(60 3 * * ? *)",
        "cron(0 3 32 * ? *)",
        "cron(0 3 ? * 8 *)",
        "cron(0 3 * * ? 2200)",
        "cron(bogus)",
    ],
)
def test_put_rule_refuses_what_aws_refuses(events, expression):
    """moto 5.2.5 accepts any cron(...) and rate(<n> minute...); AWS answers ValidationException."""
    with pytest.raises(ClientError) as refused:
        events.put_rule(Name=unique("sched-bad"), ScheduleExpression=expression)
    assert error_code(refused) == "ValidationException"
    assert refused.value.response["Error"]["Message"] == "Parameter ScheduleExpression is not valid."


# ---- firing on the modeled clock ---------------------------------------------------------------------
def test_rate_rule_fires_every_period_from_its_creation(events, sqs, box, queue, rule):
    """moto 5.2.5 never runs a schedule; AWS sends a Scheduled Event at each due time."""
    url, arn = queue()
    created = now(box)
    name = rule({"Arn": arn}, schedule="rate(5 minutes)")
    box.advance(299)
    assert drain(sqs, url) == []
    box.advance(1)
    [body] = drain(sqs, url)
    event = json.loads(body)
    assert (event["source"], event["detail-type"], event["detail"]) == ("aws.events", "Scheduled Event", {})
    assert event["resources"] == [events.describe_rule(Name=name)["Arn"]] and event["account"] == "123456789012"
    first = at(event["time"])
    assert first == (created + timedelta(minutes=5)).replace(microsecond=0)
    box.advance(600)
    times = [at(json.loads(b)["time"]) for b in drain(sqs, url)]
    assert times == [first + timedelta(minutes=5), first + timedelta(minutes=10)]
    assert listed(box, name)["fired"] == 3 and at(listed(box, name)["next"]) == first + timedelta(minutes=15)


def test_cron_rule_fires_at_its_time_with_the_transformed_input(events, sqs, box, queue, rule):
    """The input transformer turns the Scheduled Event into the handler's envelope, as backup.yml's rule does."""
    url, arn = queue()
    clock = now(box)
    daily = (clock + timedelta(minutes=30)).replace(second=0, microsecond=0)
    template = (
        '{"version": "0", "id": "<id>", "source": "ec2spot.autorecover", "detail-type": "EC2Spot Scheduled Backup", '
        '"account": "<account>", "region": "<region>", '
        '"time": "<time>", "resources": ["<aws.events.rule-arn>"], "when": <time>, '
        '"detail": {"lineage": "pgdata", "max_age_days": 7, "keep_newest": 3, "create_image": true}}'
    )
    paths = {"id": "$.id", "time": "$.time", "account": "$.account", "region": "$.region"}
    name = rule(
        {"Arn": arn, "InputTransformer": {"InputPathsMap": paths, "InputTemplate": template}},
        schedule=f"cron({daily.minute} {daily.hour} * * ? *)",
    )
    assert at(listed(box, name)["next"]) == daily
    box.advance((daily - clock).total_seconds() - 1)
    assert drain(sqs, url) == []

    fired = box.fire_schedule(name)
    assert [f["time"] for f in fired] == [daily.strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert now(box) - daily < timedelta(seconds=1)  # the clock moved to the due time, not past it
    [body] = drain(sqs, url)
    assert fired[0]["deliveries"] == [{"target": arn, "body": body}]
    envelope = json.loads(body)
    assert envelope["time"] == envelope["when"] == fired[0]["time"] and envelope["id"] == fired[0]["event_id"]
    assert envelope["resources"] == [events.describe_rule(Name=name)["Arn"]]
    parsed = recovery_events.parse(body, account="123456789012", region="us-east-1")  # what the handler makes of it
    assert parsed.kind == recovery_events.SCHEDULED_BACKUP and parsed.time == daily
    assert parsed.detail == {"lineage": "pgdata", "max_age_days": 7, "keep_newest": 3, "create_image": True}
    assert at(listed(box, name)["next"]) == daily + timedelta(days=1)


def test_a_schedule_only_rule_gets_no_bus_events_and_a_pattern_rule_no_scheduled_events(events, sqs, box, queue, rule):
    """moto 5.2.5 delivers every event put on the bus to a rule whose only trigger is a schedule."""
    scheduled_url, scheduled_arn = queue()
    pattern_url, pattern_arn = queue()
    source = unique("sandbox.test")
    rule({"Arn": scheduled_arn}, schedule="rate(1 minute)")
    rule({"Arn": pattern_arn}, pattern={"source": [source]})
    catch_all_url, catch_all_arn = queue()
    rule({"Arn": catch_all_arn}, pattern={"source": ["aws.events"]})
    events.put_events(Entries=[{"Source": source, "DetailType": "Sandbox Test", "Detail": "{}"}])
    assert drain(sqs, scheduled_url) == []
    assert [json.loads(b)["source"] for b in drain(sqs, pattern_url)] == [source]
    box.advance(120)
    assert [json.loads(b)["detail-type"] for b in drain(sqs, scheduled_url)] == ["Scheduled Event"] * 2
    assert drain(sqs, pattern_url) == [] and drain(sqs, catch_all_url) == []  # scheduled events never reach the bus


def test_a_disabled_rule_neither_self_triggers_nor_matches(events, sqs, box, queue, rule):
    url, arn = queue()
    source = unique("sandbox.test")
    name = rule({"Arn": arn}, schedule="rate(2 minutes)", pattern={"source": [source]})
    events.disable_rule(Name=name)
    box.advance(300)
    events.put_events(Entries=[{"Source": source, "DetailType": "Sandbox Test", "Detail": "{}"}])
    assert drain(sqs, url) == []
    events.enable_rule(Name=name)
    box.advance(30)  # created at t, due t+2, t+4 (missed while disabled, never caught up), t+6
    assert drain(sqs, url) == []
    box.advance(30)
    assert [json.loads(b)["detail-type"] for b in drain(sqs, url)] == ["Scheduled Event"]


def test_a_deleted_or_rescheduled_rule_stops_its_old_schedule(events, sqs, box, queue, rule):
    url, arn = queue()
    name = rule({"Arn": arn}, schedule="rate(1 minute)")
    box.advance(60)
    assert len(drain(sqs, url)) == 1
    events.put_rule(Name=name, ScheduleExpression="rate(10 minutes)")  # same rule, new schedule: starts again
    box.advance(9 * 60)
    assert drain(sqs, url) == []
    box.advance(60)
    assert len(drain(sqs, url)) == 1
    events.put_rule(Name=name, ScheduleExpression="rate(10 minutes)")  # same expression: the schedule stands
    assert listed(box, name)["fired"] == 1
    gone = rule({"Arn": arn}, schedule="rate(1 minute)")
    events.remove_targets(Rule=gone, Ids=["t0"])
    events.delete_rule(Name=gone)
    events.put_rule(Name=gone, EventPattern=json.dumps({"source": ["nothing.here"]}))  # re-made with no schedule
    events.put_targets(Rule=gone, Targets=[{"Id": "t0", "Arn": arn}])
    box.advance(120)
    assert drain(sqs, url) == []
    assert gone not in [s["rule"] for s in box.schedules()]


def test_fire_names_a_scheduled_rule(box):
    with pytest.raises(SandboxError, match="no scheduled rule named 'nope'"):
        box.fire_schedule("nope")
