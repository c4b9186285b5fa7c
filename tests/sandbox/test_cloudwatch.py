"""CloudWatch's input checks on PutMetricAlarm and PutDashboard (sandbox/rules/cloudwatch.py), through boto3."""

import json

import pytest
from botocore.exceptions import ClientError

from tests.sandbox.conftest import error_code

TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"
SINGLE = dict(
    MetricName="SpotInterruptions",
    Namespace="EC2Spot/AutoRecover",
    Statistic="Sum",
    Dimensions=[{"Name": "Service", "Value": "web"}],
    Period=300,
    EvaluationPeriods=1,
    Threshold=3.0,
    ComparisonOperator="GreaterThanOrEqualToThreshold",
    AlarmActions=[TOPIC],
)
DIMENSIONS = [{"Name": "TargetGroup", "Value": "targetgroup/web/1"}, {"Name": "LoadBalancer", "Value": "app/web/2"}]


def stat(query_id, name, period=300):
    return {
        "Id": query_id,
        "ReturnData": False,
        "MetricStat": {
            "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": name, "Dimensions": DIMENSIONS},
            "Period": period,
            "Stat": "Sum",
        },
    }


RATE = dict(
    EvaluationPeriods=2,
    Threshold=5.0,
    ComparisonOperator="GreaterThanThreshold",
    AlarmActions=[TOPIC],
    Metrics=[
        {"Id": "rate", "Expression": "100 * FILL(errors, 0) / requests", "ReturnData": True},
        stat("errors", "HTTPCode_Target_5XX_Count"),
        stat("requests", "RequestCount"),
    ],
)


def test_valid_alarms_are_stored_as_given(cloudwatch):
    cloudwatch.put_metric_alarm(AlarmName="cw-single", **SINGLE)
    cloudwatch.put_metric_alarm(AlarmName="cw-rate", **RATE)
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix="cw-")["MetricAlarms"]}
    assert alarms["cw-single"]["Threshold"] == 3.0 and alarms["cw-single"]["Period"] == 300
    assert [q["Id"] for q in alarms["cw-rate"]["Metrics"]] == ["rate", "errors", "requests"]
    assert alarms["cw-rate"]["Metrics"][1]["MetricStat"]["Metric"]["Dimensions"] == DIMENSIONS


@pytest.mark.parametrize(
    "change, says",
    [
        (dict(Period=7), "Period 7 must be 10, 20, 30 or a multiple of 60"),
        (dict(Period=3600, EvaluationPeriods=200), "must not exceed one day"),
        (dict(ComparisonOperator="GreaterThan"), "comparisonOperator"),
        (dict(Statistic="Total"), "statistic"),
        (dict(DatapointsToAlarm=2), "DatapointsToAlarm must be between 1 and EvaluationPeriods"),
        (dict(Metrics=RATE["Metrics"]), "mutually exclusive"),
    ],
)
def test_a_single_metric_alarm_aws_refuses_is_refused(cloudwatch, change, says):
    with pytest.raises(ClientError) as refused:
        cloudwatch.put_metric_alarm(AlarmName="cw-bad", **dict(SINGLE, **change))
    assert error_code(refused) == "ValidationError"
    assert says in str(refused.value)
    assert cloudwatch.describe_alarms(AlarmNames=["cw-bad"])["MetricAlarms"] == []


@pytest.mark.parametrize(
    "metrics, says",
    [
        (
            [stat("errors", "HTTPCode_Target_5XX_Count"), stat("requests", "RequestCount")],
            "Exactly one element of the metrics list should return data",
        ),
        (
            [
                {"Id": "rate", "Expression": "errors / requests"},
                stat("errors", "HTTPCode_Target_5XX_Count"),
                {**stat("requests", "RequestCount"), "ReturnData": True},
            ],
            "Exactly one element",
        ),  # ReturnData defaults to true
        ([{"Id": "Rate", "Expression": "1", "ReturnData": True}], "must start with a lowercase letter"),
        ([{"Id": "rate", "Expression": "1", "ReturnData": True}, stat("rate", "RequestCount")], "must be unique"),
        (
            [
                {"Id": "rate", "Expression": "100 * errors", "ReturnData": True},
                stat("errors", "HTTPCode_Target_5XX_Count", period=45),
            ],
            "Period 45",
        ),
    ],
)
def test_a_metric_math_alarm_aws_refuses_is_refused(cloudwatch, metrics, says):
    with pytest.raises(ClientError) as refused:
        cloudwatch.put_metric_alarm(AlarmName="cw-bad-rate", **dict(RATE, Metrics=metrics))
    assert error_code(refused) == "ValidationError"
    assert says in str(refused.value)


def widget(**properties):
    return {"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6, "properties": properties}


def test_a_valid_dashboard_is_stored_and_read_back(cloudwatch):
    body = {
        "widgets": [
            widget(
                region="us-east-1",
                title="CPU",
                metrics=[["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", "web", {"stat": "Average"}]],
            ),
            widget(
                region="us-east-1",
                metrics=[["AWS/ApplicationELB", "RequestCount", {"id": "requests"}], [{"expression": "requests * 2"}]],
            ),
            {"type": "text", "x": 0, "y": 6, "width": 24, "height": 2, "properties": {"markdown": "## web"}},
            {"type": "alarm", "properties": {"alarms": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:cw-single"]}},
        ]
    }
    assert (
        cloudwatch.put_dashboard(DashboardName="cw-web", DashboardBody=json.dumps(body))["DashboardValidationMessages"]
        == []
    )
    assert json.loads(cloudwatch.get_dashboard(DashboardName="cw-web")["DashboardBody"]) == body


@pytest.mark.parametrize(
    "body, path, says",
    [
        ({"nowidgets": []}, "", "Should have required property 'widgets'"),
        ({"widgets": [{"type": "metric", "x": 0, "y": 0}]}, "/widgets/0", "Should have required property 'properties'"),
        (
            {"widgets": [widget(metrics=[["AWS/EC2", "CPUUtilization"]])]},
            "/widgets/0/properties",
            "Should have required property 'region'",
        ),
        (
            {"widgets": [widget(region="us-east-1", metrics=[["AWS/EC2", "CPUUtilization", "AutoScalingGroupName"]])]},
            "/widgets/0/properties/metrics/0",
            "dimension name/value pairs",
        ),
        (
            {"widgets": [dict(widget(region="us-east-1", metrics=[["AWS/EC2", "CPUUtilization"]]), width=30)]},
            "/widgets/0/width",
            "1 to 24",
        ),
        ({"widgets": [{"type": "graph", "properties": {}}]}, "/widgets/0/type", "allowed values"),
        ({"widgets": [{"type": "alarm", "properties": {"alarms": []}}]}, "/widgets/0/properties/alarms", "1 to 100"),
    ],
)
def test_a_dashboard_body_aws_refuses_is_refused(cloudwatch, body, path, says):
    with pytest.raises(ClientError) as refused:
        cloudwatch.put_dashboard(DashboardName="cw-bad", DashboardBody=json.dumps(body))
    assert error_code(refused) == "InvalidParameterInput"
    message = str(refused.value)
    assert "The dashboard body is invalid" in message and f'"dataPath": "{path}"' in message and says in message
    with pytest.raises(ClientError) as missing:
        cloudwatch.get_dashboard(DashboardName="cw-bad")
    assert error_code(missing) == "ResourceNotFound"
