"""SQS's ApproximateNumberOfMessagesVisible on the modeled clock, and the alarms on it (sandbox/rules/sqs_metrics.py).

The dead-letter alarm is the monitoring role's (roles/monitoring/vars/main.yml, ``dead_letters``): Maximum >= 1 over
one 300 s period, its action the control plane's topic.
"""

import json
import uuid
from datetime import timedelta

import pytest

from sandbox.clock import CONTEXT
from sandbox.rules.sqs_metrics import METRIC, NAMESPACE

STATE_CHANGE = "CloudWatch Alarm State Change"
TICK = "AWS/SQS metrics and the alarms on them"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def sqs(aws):
    return aws("sqs")


@pytest.fixture(scope="module")
def cloudwatch(aws):
    return aws("cloudwatch")


def make_queue(sqs, **attributes):
    """(name, url, arn) of a fresh queue."""
    name = unique("q")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return name, url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def visible_series(cloudwatch, queue_name, minutes):
    """The last ``minutes`` one-minute Maximum data points, oldest first."""
    end = CONTEXT.now() + timedelta(seconds=1)
    points = cloudwatch.get_metric_statistics(Namespace=NAMESPACE, MetricName=METRIC, Statistics=["Maximum"], Period=60,
                                              Dimensions=[{"Name": "QueueName", "Value": queue_name}],
                                              StartTime=end - timedelta(minutes=minutes), EndTime=end)["Datapoints"]
    return [point["Maximum"] for point in sorted(points, key=lambda point: point["Timestamp"])]


def dead_letter_alarm(cloudwatch, queue_name, topic_arn):
    name = unique("dead-letters")
    cloudwatch.put_metric_alarm(AlarmName=name, Namespace=NAMESPACE, MetricName=METRIC, Statistic="Maximum",
                                Dimensions=[{"Name": "QueueName", "Value": queue_name}], Period=300, EvaluationPeriods=1,
                                DatapointsToAlarm=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
                                AlarmActions=[topic_arn], OKActions=[topic_arn])
    return name


def alarm_state(cloudwatch, name):
    return cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]


@pytest.fixture
def topic(aws, sqs):
    """(topic ARN, URL of a queue subscribed to it)."""
    sns = aws("sns")
    arn = sns.create_topic(Name=unique("ops"))["TopicArn"]
    dummy_name, url, queue_arn = make_queue(sqs)
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return arn, url


def notifications(sqs, url):
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def test_each_minute_publishes_the_visible_count(box, sqs, cloudwatch):
    """moto 5.2.5 publishes nothing; AWS publishes the visible messages (not in flight) every minute."""
    name, url, dummy_arn = make_queue(sqs, VisibilityTimeout="90")
    box.advance(60 - CONTEXT.clock.elapsed() % 60 + 0.5)     # just past a whole minute, when the empty queue was published
    sqs.send_message(QueueUrl=url, MessageBody="one")
    sqs.send_message(QueueUrl=url, MessageBody="two")
    box.advance(60)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)   # in flight for 90 s
    box.advance(60)
    box.advance(60)                                             # back in the queue
    assert visible_series(cloudwatch, name, 4) == [0.0, 2.0, 1.0, 2.0]


@pytest.mark.parametrize("arrival", ["sent", "redriven"])
def test_a_dead_letter_puts_the_alarm_in_alarm_and_notifies_the_topic(box, sqs, cloudwatch, topic, arrival):
    """A message in the dead-letter queue, sent there or moved there after maxReceiveCount receives: within a minute
    the alarm is ALARM, its state change is on the bus and its SNS action notified the topic."""
    topic_arn, inbox = topic
    dlq_name, dlq_url, dlq_arn = make_queue(sqs)
    alarm = dead_letter_alarm(cloudwatch, dlq_name, topic_arn)
    assert alarm_state(cloudwatch, alarm) == "INSUFFICIENT_DATA"   # PutMetricAlarm: a new alarm starts there
    box.advance(60)
    assert alarm_state(cloudwatch, alarm) == "OK"
    if arrival == "sent":
        sqs.send_message(QueueUrl=dlq_url, MessageBody="never handled")
    else:
        dummy_name, source, dummy_arn = make_queue(sqs, RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1}))
        sqs.send_message(QueueUrl=source, MessageBody="never handled")
        sqs.receive_message(QueueUrl=source, VisibilityTimeout=0)   # the one receive it is allowed
        assert sqs.receive_message(QueueUrl=source).get("Messages", []) == []   # the next receive moves it to the DLQ
    box.advance(60)
    assert alarm_state(cloudwatch, alarm) == "ALARM"
    events = [e for e in box.events(STATE_CHANGE) if e["detail"]["alarmName"] == alarm]
    assert [(e["detail"]["previousState"]["value"], e["detail"]["state"]["value"]) for e in events] == [
        ("INSUFFICIENT_DATA", "OK"), ("OK", "ALARM")]
    assert events[-1]["detail"]["state"]["reason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [1.0 ")
    notified = [n for n in notifications(sqs, inbox) if n["AlarmName"] == alarm]
    assert [(n["OldStateValue"], n["NewStateValue"]) for n in notified] == [("INSUFFICIENT_DATA", "OK"), ("OK", "ALARM")]
    assert notified[-1]["Trigger"]["Dimensions"] == [{"name": "QueueName", "value": dlq_name}]


def test_the_alarm_returns_to_ok_once_its_period_holds_no_dead_letter(box, sqs, cloudwatch, topic):
    topic_arn, dummy_inbox = topic
    dlq_name, dlq_url, dummy_arn = make_queue(sqs)
    sqs.send_message(QueueUrl=dlq_url, MessageBody="never handled")
    alarm = dead_letter_alarm(cloudwatch, dlq_name, topic_arn)
    box.advance(60)
    assert alarm_state(cloudwatch, alarm) == "ALARM"
    sqs.purge_queue(QueueUrl=dlq_url)
    box.advance(240)
    assert alarm_state(cloudwatch, alarm) == "ALARM"   # a 1 still in the last 300 s: Maximum >= 1
    box.advance(120)
    assert alarm_state(cloudwatch, alarm) == "OK"


def test_an_updated_alarm_keeps_its_state_and_set_alarm_state_is_evaluated_again(box, sqs, cloudwatch, topic):
    """PutMetricAlarm on an existing alarm leaves its state; a state set by SetAlarmState lasts until the next minute."""
    topic_arn, dummy_inbox = topic
    dlq_name, dlq_url, dummy_arn = make_queue(sqs)
    sqs.send_message(QueueUrl=dlq_url, MessageBody="never handled")
    alarm = dead_letter_alarm(cloudwatch, dlq_name, topic_arn)
    box.advance(60)
    cloudwatch.put_metric_alarm(AlarmName=alarm, Namespace=NAMESPACE, MetricName=METRIC, Statistic="Maximum",
                                Dimensions=[{"Name": "QueueName", "Value": dlq_name}], Period=300, EvaluationPeriods=1,
                                Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmDescription="updated")
    assert alarm_state(cloudwatch, alarm) == "ALARM"
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="testing")
    assert alarm_state(cloudwatch, alarm) == "OK"
    box.advance(60)
    assert alarm_state(cloudwatch, alarm) == "ALARM"


def test_the_publisher_goes_quiet_so_settle_ends(box, sqs, cloudwatch, topic):
    """Nothing changing, nothing is scheduled: a settle does not run a week of minutes."""
    topic_arn, dummy_inbox = topic
    dlq_name, dlq_url, dummy_arn = make_queue(sqs)
    dead_letter_alarm(cloudwatch, dlq_name, topic_arn)
    sqs.send_message(QueueUrl=dlq_url, MessageBody="never handled")
    box.advance(3600)
    assert TICK not in [entry["label"] for entry in box.clock()["pending"]]
    before = CONTEXT.clock.elapsed()
    box.settle()
    assert CONTEXT.clock.elapsed() - before < 3600
    sqs.send_message(QueueUrl=dlq_url, MessageBody="another")
    assert TICK in [entry["label"] for entry in box.clock()["pending"]]
    box.advance(60)
    assert visible_series(cloudwatch, dlq_name, 62)[-3:] == [1.0, 1.0, 2.0]   # the quiet hour was published too
    assert len(visible_series(cloudwatch, dlq_name, 62)) >= 61
