"""SQS's ApproximateNumberOfMessagesVisible on the modeled clock, and the alarms on it (sandbox/rules/sqs_metrics.py).

The dead-letter alarm is the monitoring role's (roles/monitoring/vars/main.yml, ``dead_letters``): Maximum >= 1 over
one 300 s period, its action the control plane's topic.
"""

import json
from datetime import timedelta

import pytest

from sandbox.clock import CONTEXT
from sandbox.rules.sqs_metrics import METRIC, NAMESPACE

from .conftest import drain_documents, unique

STATE_CHANGE = "CloudWatch Alarm State Change"
TICK = "AWS/SQS metrics and the alarms on them"


def visible_series(cloudwatch, queue_name, minutes):
    """The last ``minutes`` one-minute Maximum data points, oldest first."""
    end = CONTEXT.now() + timedelta(seconds=1)
    points = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=METRIC,
        Statistics=["Maximum"],
        Period=60,
        Dimensions=[{"Name": "QueueName", "Value": queue_name}],
        StartTime=end - timedelta(minutes=minutes),
        EndTime=end,
    )["Datapoints"]
    return [point["Maximum"] for point in sorted(points, key=lambda point: point["Timestamp"])]


def dead_letter_alarm(cloudwatch, queue_name, topic_arn):
    name = unique("dead-letters")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace=NAMESPACE,
        MetricName=METRIC,
        Statistic="Maximum",
        Dimensions=[{"Name": "QueueName", "Value": queue_name}],
        Period=300,
        EvaluationPeriods=1,
        DatapointsToAlarm=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[topic_arn],
        OKActions=[topic_arn],
    )
    return name


def alarm_state(cloudwatch, name):
    return cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]


@pytest.fixture
def watched_dead_letters(sqs, cloudwatch, queue, subscribed_topic):
    """A dead-letter queue holding one message and the alarm on it, not evaluated yet: ``(queue, alarm name)``."""
    topic_arn, _inbox = subscribed_topic(raw=True)
    dlq = queue()
    sqs.send_message(QueueUrl=dlq.url, MessageBody="never handled")
    return dlq, dead_letter_alarm(cloudwatch, dlq.name, topic_arn)


def test_each_minute_publishes_the_visible_count(box, sqs, cloudwatch, queue):
    """moto 5.2.5 publishes nothing; AWS publishes the visible messages (not in flight) every minute."""
    counted = queue(VisibilityTimeout="90")
    box.advance(60 - CONTEXT.clock.elapsed() % 60 + 0.5)  # just past a whole minute, when the empty queue was published
    sqs.send_message(QueueUrl=counted.url, MessageBody="one")
    sqs.send_message(QueueUrl=counted.url, MessageBody="two")
    box.advance(60)
    sqs.receive_message(QueueUrl=counted.url, MaxNumberOfMessages=1)  # in flight for 90 s
    box.advance(60)
    box.advance(60)  # back in the queue
    assert visible_series(cloudwatch, counted.name, 4) == [0.0, 2.0, 1.0, 2.0]


@pytest.mark.parametrize("arrival", ["sent", "redriven"])
def test_a_dead_letter_puts_the_alarm_in_alarm_and_notifies_the_topic(
    box, sqs, cloudwatch, queue, subscribed_topic, arrival
):
    """A message in the dead-letter queue, sent there or moved there after maxReceiveCount receives: within a minute
    the alarm is ALARM, its state change is on the bus and its SNS action notified the topic."""
    topic_arn, inbox = subscribed_topic(raw=True)
    dlq = queue()
    alarm = dead_letter_alarm(cloudwatch, dlq.name, topic_arn)
    assert alarm_state(cloudwatch, alarm) == "INSUFFICIENT_DATA"  # PutMetricAlarm: a new alarm starts there
    box.advance(60)
    assert alarm_state(cloudwatch, alarm) == "OK"
    if arrival == "sent":
        sqs.send_message(QueueUrl=dlq.url, MessageBody="never handled")
    else:
        source = queue(RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 1})).url
        sqs.send_message(QueueUrl=source, MessageBody="never handled")
        sqs.receive_message(QueueUrl=source, VisibilityTimeout=0)  # the one receive it is allowed
        assert sqs.receive_message(QueueUrl=source).get("Messages", []) == []  # the next receive moves it to the DLQ
    box.advance(60)
    assert alarm_state(cloudwatch, alarm) == "ALARM"
    events = [e for e in box.events(STATE_CHANGE) if e["detail"]["alarmName"] == alarm]
    assert [(e["detail"]["previousState"]["value"], e["detail"]["state"]["value"]) for e in events] == [
        ("INSUFFICIENT_DATA", "OK"),
        ("OK", "ALARM"),
    ]
    assert events[-1]["detail"]["state"]["reason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [1.0 ")
    notified = [n for n in drain_documents(sqs, inbox.url) if n["AlarmName"] == alarm]
    assert [(n["OldStateValue"], n["NewStateValue"]) for n in notified] == [
        ("INSUFFICIENT_DATA", "OK"),
        ("OK", "ALARM"),
    ]
    assert notified[-1]["Trigger"]["Dimensions"] == [{"name": "QueueName", "value": dlq.name}]


def test_the_alarm_returns_to_ok_once_its_period_holds_no_dead_letter(box, sqs, cloudwatch, watched_dead_letters):
    dlq, alarm = watched_dead_letters
    box.advance(60)
    assert alarm_state(cloudwatch, alarm) == "ALARM"
    sqs.purge_queue(QueueUrl=dlq.url)
    box.advance(240)
    assert alarm_state(cloudwatch, alarm) == "ALARM"  # a 1 still in the last 300 s: Maximum >= 1
    box.advance(120)
    assert alarm_state(cloudwatch, alarm) == "OK"


def test_an_updated_alarm_keeps_its_state_and_set_alarm_state_is_evaluated_again(box, cloudwatch, watched_dead_letters):
    """PutMetricAlarm on an existing alarm leaves its state; a state set by SetAlarmState lasts until the next minute."""
    dlq, alarm = watched_dead_letters
    box.advance(60)
    cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        Namespace=NAMESPACE,
        MetricName=METRIC,
        Statistic="Maximum",
        Dimensions=[{"Name": "QueueName", "Value": dlq.name}],
        Period=300,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmDescription="updated",
    )
    assert alarm_state(cloudwatch, alarm) == "ALARM"
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="testing")
    assert alarm_state(cloudwatch, alarm) == "OK"
    box.advance(60)
    assert alarm_state(cloudwatch, alarm) == "ALARM"


def test_the_publisher_goes_quiet_so_settle_ends(box, sqs, cloudwatch, watched_dead_letters):
    """Nothing changing, nothing is scheduled: a settle does not run a week of minutes."""
    dlq, _alarm = watched_dead_letters
    box.advance(3600)
    assert TICK not in [entry["label"] for entry in box.clock()["pending"]]
    before = CONTEXT.clock.elapsed()
    box.settle()
    assert CONTEXT.clock.elapsed() - before < 3600
    sqs.send_message(QueueUrl=dlq.url, MessageBody="another")
    assert TICK in [entry["label"] for entry in box.clock()["pending"]]
    box.advance(60)
    assert visible_series(cloudwatch, dlq.name, 62)[-3:] == [1.0, 1.0, 2.0]  # the quiet hour was published too
    assert len(visible_series(cloudwatch, dlq.name, 62)) >= 61
