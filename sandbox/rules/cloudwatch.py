"""CloudWatch: the input checks AWS makes on PutMetricAlarm and PutDashboard.

AWS (CloudWatch API reference PutMetricAlarm and MetricDataQuery; "Dashboard Body Structure and Syntax"):

* ``PutMetricAlarm`` takes either one metric (``MetricName``, ``Namespace``, ``Statistic`` or
  ``ExtendedStatistic``, ``Dimensions``, ``Period``) or ``Metrics`` (metric math), never both; each query of
  ``Metrics`` has an ``Id`` starting with a lowercase letter, unique, and exactly one of ``Expression`` and
  ``MetricStat``; exactly one query returns data (``ReturnData`` is true when omitted); a period is 10, 20, 30
  or a multiple of 60 seconds; ``EvaluationPeriods`` x ``Period`` is at most one day (seven days for periods of
  an hour or more); ``DatapointsToAlarm`` is between 1 and ``EvaluationPeriods``; ``ComparisonOperator`` and
  ``Statistic`` are among their enum values; a static threshold alarm has a ``Threshold``. Otherwise
  ``ValidationError``.
* ``PutDashboard`` needs a JSON object with a ``widgets`` array (at most 500 widgets), each with a known
  ``type`` and a ``properties`` object and, when given, ``x`` 0-23, ``width`` 1-24, ``y`` >= 0 and ``height``
  1-1000; a metric widget has a ``region`` and a ``metrics`` array of arrays (namespace and metric name, then
  dimension name/value pairs, an optional options object last; or only an options object with an
  ``expression``); a text widget has ``markdown``; an alarm widget an ``alarms`` array of 1-100 alarm ARNs.
  Otherwise ``InvalidParameterInput`` "The dashboard body is invalid, there are N validation errors: [...]".

moto 5.2.5 stores any alarm (a math alarm without a query returning data, a period of 7 seconds, an unknown
comparison operator) and any JSON as a dashboard body; it only refuses a body that is not JSON.
"""

from __future__ import annotations

import json
import re

COMPARISONS = (
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
)
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
WIDGET_TYPES = ("metric", "text", "log", "alarm", "explorer", "custom")


def _period_ok(period):
    return period in (10, 20, 30) or (period >= 60 and period % 60 == 0)


def _true(value):
    return value is None or value is True or str(value).lower() == "true"


def alarm_problems(params):
    """What AWS refuses in a PutMetricAlarm request (``params`` with the API's names); empty when valid."""
    problems = []
    queries = params.get("Metrics") or []
    single = [
        key
        for key in ("MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Period", "Unit")
        if params.get(key) not in (None, "")
    ] + (["Dimensions"] if params.get("Dimensions") else [])
    comparison = params.get("ComparisonOperator")
    if comparison not in COMPARISONS:
        problems.append(
            f"Value '{comparison}' at 'comparisonOperator' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(COMPARISONS)}]"
        )
    statistic = params.get("Statistic")
    if statistic not in (None, "") and statistic not in STATISTICS:
        problems.append(
            f"Value '{statistic}' at 'statistic' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(STATISTICS)}]"
        )
    periods = int(params.get("EvaluationPeriods") or 0)
    if periods < 1:
        problems.append("EvaluationPeriods must be at least 1")
    datapoints = params.get("DatapointsToAlarm")
    if datapoints not in (None, "") and not 1 <= int(datapoints) <= max(periods, 1):
        problems.append("DatapointsToAlarm must be between 1 and EvaluationPeriods")
    if params.get("Threshold") in (None, "") and not params.get("ThresholdMetricId"):
        problems.append("Threshold is required for a static threshold alarm")
    if queries and single:
        problems.append(
            f"Metrics and {', '.join(single)} are mutually exclusive: an alarm on metric math "
            "takes its metrics only from Metrics"
        )
        return problems
    if not queries:
        if not params.get("MetricName") or not params.get("Namespace"):
            problems.append("MetricName and Namespace (or Metrics) are required")
        if not params.get("Statistic") and not params.get("ExtendedStatistic"):
            problems.append("Statistic or ExtendedStatistic is required")
        period = int(params.get("Period") or 0)
        if not _period_ok(period):
            problems.append(f"Period {period} must be 10, 20, 30 or a multiple of 60")
        elif period * periods > (604800 if period >= 3600 else 86400):
            problems.append(
                "EvaluationPeriods x Period must not exceed one day (seven days for periods of an hour or more)"
            )
        return problems
    ids = [query.get("Id") for query in queries]
    for query in queries:
        query_id = query.get("Id") or ""
        if not QUERY_ID.match(query_id):
            problems.append(
                f"Metrics Id '{query_id}' must start with a lowercase letter and hold only letters, digits and _"
            )
        if bool(query.get("Expression")) == bool(query.get("MetricStat")):
            problems.append(f"Metrics '{query_id}' needs exactly one of Expression and MetricStat")
        stat = query.get("MetricStat") or {}
        if stat:
            period = int(stat.get("Period") or 0)
            if not _period_ok(period):
                problems.append(f"Metrics '{query_id}' Period {period} must be 10, 20, 30 or a multiple of 60")
            elif period * periods > (604800 if period >= 3600 else 86400):
                problems.append(
                    "EvaluationPeriods x Period must not exceed one day (seven days for periods of an hour or more)"
                )
            if not (stat.get("Metric") or {}).get("MetricName") or not stat.get("Stat"):
                problems.append(f"Metrics '{query_id}' MetricStat needs Metric.MetricName and Stat")
    if len(set(ids)) != len(ids):
        problems.append("The Id of each element of Metrics must be unique")
    if sum(1 for query in queries if _true(query.get("ReturnData"))) != 1:
        problems.append("Exactly one element of the metrics list should return data.")
    return problems


def _widget_problems(index, widget):
    where = f"/widgets/{index}"
    if not isinstance(widget, dict):
        return [(where, "Should be object")]
    problems = []
    kind = widget.get("type")
    if kind not in WIDGET_TYPES:
        problems.append((f"{where}/type", f"Should be equal to one of the allowed values {list(WIDGET_TYPES)}"))
    for key, low, high in (("x", 0, 23), ("width", 1, 24), ("y", 0, None), ("height", 1, 1000)):
        value = widget.get(key)
        if value is not None and (not isinstance(value, int) or value < low or (high is not None and value > high)):
            problems.append(
                (f"{where}/{key}", f"Should be an integer from {low}" + (f" to {high}" if high is not None else ""))
            )
    properties = widget.get("properties")
    if not isinstance(properties, dict):
        return problems + [(where, "Should have required property 'properties'")]
    if kind == "metric":
        if not isinstance(properties.get("region"), str):
            problems.append((f"{where}/properties", "Should have required property 'region'"))
        metrics = properties.get("metrics")
        if not isinstance(metrics, list) or not metrics:
            problems.append((f"{where}/properties", "Should have required property 'metrics'"))
        else:
            for number, line in enumerate(metrics):
                problem = _metric_line_problem(line)
                if problem:
                    problems.append((f"{where}/properties/metrics/{number}", problem))
    elif kind == "text" and not isinstance(properties.get("markdown"), str):
        problems.append((f"{where}/properties", "Should have required property 'markdown'"))
    elif kind == "alarm":
        alarms = properties.get("alarms")
        if not isinstance(alarms, list) or not 1 <= len(alarms) <= 100:
            problems.append((f"{where}/properties/alarms", "Should be an array of 1 to 100 alarm ARNs"))
        elif any(
            not isinstance(arn, str) or not re.match(r"^arn:[^:]+:cloudwatch:[^:]+:[0-9]{12}:alarm:.+", arn)
            for arn in alarms
        ):
            problems.append((f"{where}/properties/alarms", "Should hold alarm ARNs"))
    return problems


def _metric_line_problem(line):
    if not isinstance(line, list) or not line:
        return "Should be array"
    options = line[-1] if isinstance(line[-1], dict) else None
    names = line[:-1] if options is not None else line
    if any(not isinstance(item, str) for item in names):
        return "Should be strings followed by at most one options object"
    if not names:
        return (
            None
            if options and options.get("expression")
            else "Should have a namespace and a metric name, or an expression"
        )
    if len(names) < 2 or len(names) % 2:
        return "Should be a namespace, a metric name and dimension name/value pairs"
    return None


def dashboard_problems(body):
    """AWS's validation errors for a PutDashboard body (a JSON string): (dataPath, message) pairs."""
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        return [("", "Body is invalid JSON")]
    if not isinstance(document, dict):
        return [("", "Should be object")]
    widgets = document.get("widgets")
    if not isinstance(widgets, list):
        return [("", "Should have required property 'widgets'")]
    if len(widgets) > 500:
        return [("/widgets", "Should NOT have more than 500 items")]
    return [problem for index, widget in enumerate(widgets) for problem in _widget_problems(index, widget)]


def _query(query):
    """moto's MetricDataQuery back in the API's names."""
    stat = query.metric_stat
    return {
        "Id": query.id,
        "Expression": query.expression,
        "ReturnData": query.return_data,
        "MetricStat": {
            "Metric": {"MetricName": stat.metric.metric_name, "Namespace": stat.metric.namespace},
            "Period": stat.period,
            "Stat": stat.stat,
        }
        if stat
        else None,
    }


def install(context):  # noqa: ARG001 - every rule module takes the context
    from moto.cloudwatch.exceptions import DashboardInvalidInputError, ValidationError
    from moto.cloudwatch.models import CloudWatchBackend

    moto_put_metric_alarm = CloudWatchBackend.put_metric_alarm
    moto_put_dashboard = CloudWatchBackend.put_dashboard

    def put_metric_alarm(
        self,
        name,
        namespace,
        metric_name,
        comparison_operator,
        evaluation_periods,
        period,
        threshold,
        statistic,
        description,
        dimensions,
        alarm_actions,
        metric_data_queries=None,
        **kwargs,
    ):
        if not kwargs.get("rule"):  # composite alarms come through here too
            problems = alarm_problems(
                {
                    "MetricName": metric_name,
                    "Namespace": namespace,
                    "Statistic": statistic,
                    "ExtendedStatistic": kwargs.get("extended_statistic"),
                    "Period": period,
                    "Unit": kwargs.get("unit"),
                    "Dimensions": dimensions,
                    "ComparisonOperator": comparison_operator,
                    "EvaluationPeriods": evaluation_periods,
                    "DatapointsToAlarm": kwargs.get("datapoints_to_alarm"),
                    "Threshold": threshold,
                    "ThresholdMetricId": kwargs.get("threshold_metric_id"),
                    "Metrics": [_query(query) for query in metric_data_queries or []],
                }
            )
            if problems:
                raise ValidationError(f"{len(problems)} validation error(s) detected: " + "; ".join(problems))
        return moto_put_metric_alarm(
            self,
            name,
            namespace,
            metric_name,
            comparison_operator,
            evaluation_periods,
            period,
            threshold,
            statistic,
            description,
            dimensions,
            alarm_actions,
            metric_data_queries=metric_data_queries,
            **kwargs,
        )

    def put_dashboard(self, name, body):
        problems = dashboard_problems(body)
        if problems:
            listed = json.dumps([{"dataPath": path, "message": message} for path, message in problems])
            raise DashboardInvalidInputError(
                f"The dashboard body is invalid, there are {len(problems)} validation errors: {listed}"
            )
        return moto_put_dashboard(self, name, body)

    CloudWatchBackend.put_metric_alarm = put_metric_alarm
    CloudWatchBackend.put_dashboard = put_dashboard
