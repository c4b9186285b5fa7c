"""CloudWatch alarm state changes and EC2 status checks (sandbox/rules/alarms.py), through boto3 and the server."""

from sandbox.rules.alarms import STATUS_CHECK_SECONDS
from sandbox.scenario import instance_alarm

REBOOT = "arn:aws:automate:us-east-1:ec2:reboot"


def checks(ec2, instance_id):
    status = ec2.describe_instance_status(InstanceIds=[instance_id], IncludeAllInstances=True)["InstanceStatuses"][0]
    return status["InstanceStatus"]["Status"], status["SystemStatus"]["Status"]


def test_a_state_change_reaches_an_eventbridge_rule_in_aws_shape(box, cloudwatch, launch, catch):
    instance_id = launch()
    caught = catch(
        {
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {"alarmName": [{"prefix": "cw-cpu-"}], "state": {"value": ["ALARM"]}},
        }
    )
    instance_alarm(cloudwatch, "cw-cpu-1", instance_id)

    cloudwatch.set_alarm_state(AlarmName="cw-cpu-1", StateValue="ALARM", StateReason="Threshold Crossed")
    cloudwatch.set_alarm_state(AlarmName="cw-cpu-1", StateValue="ALARM", StateReason="again")  # no change: no event
    cloudwatch.set_alarm_state(AlarmName="cw-cpu-1", StateValue="OK", StateReason="back")  # not matched by the rule

    [event] = caught.drain()
    assert (event["source"], event["detail-type"]) == ("aws.cloudwatch", "CloudWatch Alarm State Change")
    assert event["resources"] == ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:cw-cpu-1"]
    detail = event["detail"]
    assert detail["alarmName"] == "cw-cpu-1"
    assert (detail["state"]["value"], detail["previousState"]["value"]) == ("ALARM", "OK")
    assert detail["state"]["reason"] == "Threshold Crossed" and detail["state"]["timestamp"].endswith("+0000")
    assert detail["configuration"]["metrics"] == [
        {
            "id": "m1",
            "returnData": True,
            "metricStat": {
                "metric": {"namespace": "AWS/EC2", "name": "CPUUtilization", "dimensions": {"InstanceId": instance_id}},
                "period": 300,
                "stat": "Average",
            },
        }
    ]
    assert [e["detail"]["state"]["value"] for e in box.events("CloudWatch Alarm State Change")] == ["ALARM", "OK"]


def test_the_reboot_action_reboots_and_the_checks_start_again(box, ec2, cloudwatch, launch):
    instance_id = launch()
    box.advance(STATUS_CHECK_SECONDS)
    assert checks(ec2, instance_id) == ("ok", "ok")
    instance_alarm(cloudwatch, "cw-reboot", instance_id, actions=[REBOOT])

    cloudwatch.set_alarm_state(AlarmName="cw-reboot", StateValue="ALARM", StateReason="Threshold Crossed")

    assert [r["instance_id"] for r in box.records("reboots")] == [instance_id]
    assert box.records("alarm_actions")[0]["outcome"] == f"reboot {instance_id}"
    assert (
        ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "running"
    )
    assert checks(ec2, instance_id) == ("initializing", "initializing")
    box.advance(STATUS_CHECK_SECONDS - 1)
    assert checks(ec2, instance_id) == ("initializing", "initializing")
    box.advance(1)
    assert checks(ec2, instance_id) == ("ok", "ok")


def test_disabled_actions_do_not_run(box, cloudwatch, launch):
    instance_id = launch()
    instance_alarm(cloudwatch, "cw-disabled", instance_id, actions=[REBOOT])
    cloudwatch.disable_alarm_actions(AlarmNames=["cw-disabled"])
    cloudwatch.set_alarm_state(AlarmName="cw-disabled", StateValue="ALARM", StateReason="Threshold Crossed")
    assert box.records("reboots") == [] and box.records("alarm_actions") == []
    assert len(box.events("CloudWatch Alarm State Change")) == 1  # the event still goes out


def test_checks_after_a_start_and_an_impaired_check(box, ec2, launch):
    instance_id = launch()
    ec2.stop_instances(InstanceIds=[instance_id])
    assert checks(ec2, instance_id) == ("not-applicable", "not-applicable")
    assert (
        ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"] == []
    )  # only running ones by default
    ec2.start_instances(InstanceIds=[instance_id])
    assert checks(ec2, instance_id) == ("initializing", "initializing")
    box.advance(STATUS_CHECK_SECONDS)
    assert checks(ec2, instance_id) == ("ok", "ok")
    box.call("ec2/status", instance_id=instance_id, instance="impaired")
    status = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0]
    assert status["InstanceStatus"]["Status"] == "impaired" and status["SystemStatus"]["Status"] == "ok"
    assert (
        status["InstanceStatus"]["Details"][0]["Status"] == "failed"
        and "ImpairedSince" in status["InstanceStatus"]["Details"][0]
    )
    box.call("ec2/status", instance_id=instance_id, instance="ok")
    assert checks(ec2, instance_id) == ("ok", "ok")
