"""Amazon SQS's CloudWatch metric ``ApproximateNumberOfMessagesVisible``, and the alarms on it, on the modeled clock.

AWS (SQS developer guide "Available CloudWatch metrics for Amazon SQS" and "Monitoring Amazon SQS queues using
CloudWatch": SQS publishes its metrics in the ``AWS/SQS`` namespace, dimension ``QueueName``, at one-minute intervals,
for active queues; ``ApproximateNumberOfMessagesVisible`` is "the number of messages available for retrieval from the
queue", a message moved to a dead-letter queue after ``maxReceiveCount`` receives included; CloudWatch user guide
"Using Amazon CloudWatch alarms": an alarm on a period of a minute or more is evaluated every minute):

* every modeled minute each queue's visible messages (neither in flight nor delayed) are a data point of
  ``AWS/SQS`` ``ApproximateNumberOfMessagesVisible`` ``{QueueName}`` (``Count``): ``GetMetricStatistics`` /
  ``GetMetricData`` read them;
* right after, every static-threshold alarm on that metric is evaluated (``alarms.evaluate_alarm``: the most recent
  ``EvaluationPeriods`` periods, ``DatapointsToAlarm``, ``TreatMissingData``); a change of state goes through the
  alarm rule, which puts ``CloudWatch Alarm State Change`` on the bus and runs the new state's actions (an SNS topic
  gets the alarm notification). So the control plane's dead-letter alarm (``Maximum`` >= 1 over 300 s) reaches
  ``ALARM`` within a minute of a message landing in its queue, whether sent there or moved there by a redrive.

**Choices.** Publishing every minute for ever would keep the modeled clock busy: ``settle`` would run a week of
minutes. The publisher runs only while a minute can change something: a queue whose count changed, that has messages
in flight or delayed (their return changes the count by itself), or whose alarms have not yet seen the count over a
whole evaluation range; an alarm just put or set by ``SetAlarmState`` (AWS re-evaluates it at the next minute). Any
SQS call, and any delivery into a queue, wakes it. When it wakes after a quiet spell it first publishes the minutes it
skipped, with the count each queue kept throughout: the last ``BACKFILL_MINUTES`` (an hour), or the longest
evaluation range of the queue's alarms, so an alarm never sees a gap where the count held.

Deviations: every queue counts as active (AWS stops publishing for an empty queue unused for six hours, after which
an alarm on it sees missing data); a quiet spell longer than the backfill leaves a gap in the series; alarms are
evaluated on the queue's last ``KEPT_MINUTES`` (a day) of points; the sandbox publishes this one SQS metric;
composite, metric math, anomaly and percentile alarms are not evaluated; evaluation windows end at the evaluation
minute (CloudWatch aligns them and reads data a little late).

moto 5.2.5 publishes no SQS metric and never evaluates an alarm (only ``SetAlarmState`` changes a state).
"""

from __future__ import annotations

import math
from collections import deque
from datetime import timedelta

NAMESPACE = "AWS/SQS"
METRIC = "ApproximateNumberOfMessagesVisible"
MINUTE = 60.0
BACKFILL_MINUTES = 60  # skipped minutes published on waking: the last hour, or an alarm's longer evaluation range
KEPT_MINUTES = 1440  # each queue's own last day of points, what its alarms are evaluated on


class QueueSeries:
    """What was published for one queue: the last value, for how many consecutive minutes it held, when; the points."""

    def __init__(self, value, at):
        self.value = value
        self.streak = 1
        self.at = at
        self.points = deque(maxlen=KEPT_MINUTES)


def _series(queue):
    return getattr(queue, "sandbox_metric_series", None)


def _in_motion(queue):
    """Messages whose return changes the count without any call: in flight or delayed."""
    return any(not message.visible or message.delayed for message in queue._messages)  # pylint: disable=protected-access


class SqsMetrics:
    """The one publisher: a minute's tick, armed only while a tick can change something."""

    def __init__(self, context):
        self.context = context

    @property
    def state(self):
        # In the context's control state, so that a reset of the context (moto reset under it) forgets it too.
        return self.context.controls_state.setdefault("sqs_metrics", {"entry": None, "alarms_due": False})

    # ---- moto's backends ------------------------------------------------------------------------------------
    @staticmethod
    def regions():
        """[(sqs backend, cloudwatch backend)] of every account and region SQS has been used in."""
        from moto.cloudwatch.models import cloudwatch_backends
        from moto.sqs.models import sqs_backends

        return [
            (backend, cloudwatch_backends[account_id][region])
            for account_id, regions in list(sqs_backends.items())
            for region, backend in list(regions.items())
        ]

    @staticmethod
    def watching(cloudwatch):
        """The alarms evaluated on the published metric, by queue name."""
        alarms = {}
        for alarm in cloudwatch.alarms.values():
            if evaluated(alarm):
                queue_name = {d.name: d.value for d in alarm.dimensions}.get("QueueName")
                alarms.setdefault(queue_name, []).append(alarm)
        return alarms

    # ---- waking -----------------------------------------------------------------------------------------------
    def settled(self, queue, alarms):
        """Whether another minute would publish the same count and change no alarm on this queue."""
        series = _series(queue)
        if series is None or series.value != queue.approximate_number_of_messages or _in_motion(queue):
            return False
        return series.streak >= self.minutes_needed(alarms)

    @staticmethod
    def minutes_needed(alarms):
        """Consecutive equal minutes after which the alarms have seen the count over their whole evaluation range."""
        ranges = [int(alarm.period) * int(alarm.evaluation_periods) for alarm in alarms]
        return 1 + math.ceil(max(ranges, default=0) / MINUTE)

    def busy(self):
        if self.state["alarms_due"]:
            return True
        for sqs, cloudwatch in self.regions():
            alarms = self.watching(cloudwatch)
            if any(not self.settled(queue, alarms.get(queue.name, [])) for queue in sqs.queues.values()):
                return True
        return False

    def armed(self):
        entry = self.state["entry"]
        return entry is not None and entry[4]

    def wake(self):
        """Arm the next minute's tick, unless one is armed or nothing would change."""
        if not self.armed() and self.busy():
            self.arm()

    def arm(self):
        if self.armed():  # an alarm action that sent to a queue during the tick armed it already
            return
        clock = self.context.clock
        minute = clock.duration(MINUTE)
        due = (math.floor(clock.elapsed() / minute) + 1) * minute  # on a whole minute of modeled time
        self.state["entry"] = self.context.at(due, self.tick, "AWS/SQS metrics and the alarms on them")

    # ---- the minute -----------------------------------------------------------------------------------------------
    def tick(self):
        self.state["entry"] = None
        self.state["alarms_due"] = False
        from .alarms import evaluate_alarm

        for sqs, cloudwatch in self.regions():
            watching = self.watching(cloudwatch)
            for queue in list(sqs.queues.values()):
                self.publish(cloudwatch, queue, watching.get(queue.name, []))
            for queue_name, alarms in watching.items():
                series = _series(sqs.queues[queue_name]) if queue_name in sqs.queues else None
                points = list(series.points) if series is not None else []  # a queue that is gone: no data
                for alarm in alarms:
                    evaluate_alarm(self.context, alarm, points)
        if self.busy():
            self.arm()

    def publish(self, cloudwatch, queue, alarms):
        """This minute's data point, after the minutes skipped while the count held."""
        elapsed, value = self.context.clock.elapsed(), queue.approximate_number_of_messages
        series = _series(queue)
        if series is not None:
            self.backfill(cloudwatch, queue, series, elapsed, max(BACKFILL_MINUTES, self.minutes_needed(alarms)))
        if series is None or series.value != value:
            points = series.points if series is not None else deque(maxlen=KEPT_MINUTES)
            series = queue.sandbox_metric_series = QueueSeries(value, elapsed)
            series.points = points
        else:
            series.streak += 1
            series.at = elapsed
        series.points.append(self.put(cloudwatch, queue.name, value, elapsed))

    def backfill(self, cloudwatch, queue, series, elapsed, limit):
        minute = self.context.clock.duration(MINUTE)
        skipped = int((elapsed - series.at) / minute + 1e-9) - 1
        for index in range(max(0, skipped - limit), skipped):
            series.points.append(self.put(cloudwatch, queue.name, series.value, series.at + (index + 1) * minute))
        series.streak += max(0, skipped)

    def put(self, cloudwatch, queue_name, value, elapsed):
        """Store one point where GetMetricStatistics and GetMetricData read them; returns it."""
        from moto.cloudwatch.models import MetricDatum

        moment = self.context.now().replace(tzinfo=None) - timedelta(seconds=self.context.clock.elapsed() - elapsed)
        datum = MetricDatum(
            NAMESPACE, METRIC, float(value), [{"Name": "QueueName", "Value": queue_name}], moment, "Count"
        )
        cloudwatch.metric_data.append(datum)
        return datum


# The SQS backend calls that can change a queue's count, whether an API request or another service's delivery
# (SNS, EventBridge, Auto Scaling notifications, the Lambda runner's polls). A receive may move messages to a DLQ.
CHANGING_CALLS = (
    "create_queue",
    "delete_queue",
    "set_queue_attributes",
    "send_message",
    "send_message_batch",
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
)


def _patch_sqs(metrics):
    """Wake the publisher after every call that can change a count."""
    from moto.sqs.models import SQSBackend

    for name in CHANGING_CALLS:
        method = getattr(SQSBackend, name)

        def woken(self, *args, _method=method, **kwargs):
            try:
                return _method(self, *args, **kwargs)
            finally:
                metrics.wake()

        setattr(SQSBackend, name, woken)


def evaluated(alarm):
    return (
        alarm is not None
        and alarm.namespace == NAMESPACE
        and alarm.metric_name == METRIC
        and not alarm.metric_data_queries
    )


def _carry_state(alarm, previous):
    """PutMetricAlarm: "When this operation creates an alarm, the alarm state is immediately set to INSUFFICIENT_DATA
    ... When you update an existing alarm, its state is left unchanged" (moto starts every alarm it stores at OK)."""
    if previous is None:
        alarm.state_value, alarm.state_reason = "INSUFFICIENT_DATA", "Unchecked: Initial alarm creation"
        return
    for name in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp"):
        setattr(alarm, name, getattr(previous, name))


def _patch_alarms(metrics):
    """An alarm the publisher evaluates starts as AWS starts it; a new one, or one set by SetAlarmState, is evaluated
    at the next minute."""
    from moto.cloudwatch.models import CloudWatchBackend

    put_alarm = CloudWatchBackend.put_metric_alarm
    set_state = CloudWatchBackend.set_alarm_state

    def due(alarm):
        if evaluated(alarm):
            metrics.state["alarms_due"] = True
            metrics.wake()

    def put_metric_alarm(self, name, *args, **kwargs):
        previous = self.alarms.get(name)
        alarm = put_alarm(self, name, *args, **kwargs)
        if evaluated(alarm):
            _carry_state(alarm, previous)
        due(alarm)
        return alarm

    def set_alarm_state(self, alarm_name, *args, **kwargs):
        answer = set_state(self, alarm_name, *args, **kwargs)
        due(self.alarms.get(alarm_name))
        return answer

    CloudWatchBackend.put_metric_alarm = put_metric_alarm
    CloudWatchBackend.set_alarm_state = set_alarm_state


def install(context):
    """After the CloudWatch rules (their put_metric_alarm checks the request before this one sees the alarm)."""
    metrics = SqsMetrics(context)
    _patch_sqs(metrics)
    _patch_alarms(metrics)
