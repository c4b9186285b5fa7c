"""Monitoring through deploy.yml and destroy.yml (``ansible-playbook``, the sandbox): check mode, first run, second run.

One variables file: ``ec2spot_monitoring`` enables monitoring for every service and lowers the CPU threshold;
it-mweb sits behind an ALB target group and lowers its interruption threshold; it-mdb turns monitoring off and has
the CPU watchdog of seed 004 instead.
Checked as CloudWatch describes it: the alarms and their metrics, thresholds and actions, the dashboard's widgets,
and that an alarm going to ALARM notifies the control plane's topic.
"""

import json
import os

import pytest

from sandbox import world as sandbox_world

from . import helpers
from .conftest import REPO, ansible_playbook

DEPLOY = os.path.join(REPO, "playbooks", "deploy.yml")
DESTROY = os.path.join(REPO, "playbooks", "destroy.yml")
CONTROL_PLANE = "it-mon"
WEB_ALARMS = [
    "it-mweb-monitoring-alb-5xx-rate",
    "it-mweb-monitoring-group-cpu",
    "it-mweb-monitoring-recovery-failures",
    "it-mweb-monitoring-spot-interruptions",
]
CONTROL_PLANE_ALARMS = [
    "it-mon-monitoring-dead-letters",
    "it-mon-monitoring-function-errors",
    "it-mon-monitoring-handler-errors",
]
DASHBOARD = "ec2spot-it-mweb-us-east-1"


def deploy_vars(world, target_group_arn):
    subnets = [world["subnets"]["us-east-1a"], world["subnets"]["us-east-1b"]]
    service = {
        "image_id": world["image_id"],
        "instance_types": ["m6i.large"],
        "subnet_ids": subnets,
        "instance_profile": "it-mon-given-instance",
        "address": False,
        "agent": {"app_start_commands": ["echo start"]},
    }
    return {
        "ec2spot_region": "us-east-1",
        "ec2spot_price_summary": False,
        "ec2spot_control_plane": {"name": CONTROL_PLANE, "log_retention_days": 7},
        "ec2spot_monitoring": {"enabled": True, "alarms": {"group_cpu": {"threshold": 80}}},
        "ec2spot_services": [
            dict(
                service,
                name="it-mweb",
                lineage="it-mwebdata",
                monitoring={"target_group_arn": target_group_arn, "alarms": {"spot_interruptions": {"threshold": 2}}},
            ),
            dict(
                service,
                name="it-mdb",
                lineage="it-mdbdata",
                monitoring={"enabled": False},
                watchdog={"mode": "alarm-reboot", "threshold": 90},
            ),
        ],
    }


@pytest.fixture(scope="module")
def cloudwatch(sandbox, session):
    return session.client("cloudwatch", endpoint_url=sandbox["endpoint"])


@pytest.fixture(scope="module")
def target_group_arn(sandbox, session):
    elbv2 = session.client("elbv2", endpoint_url=sandbox["endpoint"])
    world = sandbox["world"]
    group = elbv2.create_target_group(Name="it-mweb", Protocol="HTTP", Port=80, VpcId=world["vpc_id"])["TargetGroups"][
        0
    ]
    balancer = elbv2.create_load_balancer(
        Name="it-mweb", Subnets=list(world["subnets"].values()), SecurityGroups=[world["security_group_id"]]
    )["LoadBalancers"][0]
    elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
    )
    return group["TargetGroupArn"], balancer["LoadBalancerArn"]


@pytest.fixture(scope="module")
def play(sandbox, tmp_path_factory, target_group_arn):
    variables = tmp_path_factory.mktemp("monitoring") / "vars.json"
    variables.write_text(json.dumps(deploy_vars(sandbox["world"], target_group_arn[0])))

    def run(playbook, *extra):
        return ansible_playbook(sandbox, playbook, "-e", f"@{variables}", *extra)

    return run


def topic_arn(sandbox):
    return f"arn:aws:sns:us-east-1:{sandbox['env']['EC2SPOT_SANDBOX_ACCOUNT']}:{CONTROL_PLANE}"


def described(cloudwatch):
    """The monitoring role's alarms and dashboards (the watchdog's alarms apart: ``watchdog``)."""
    alarms = {
        a["AlarmName"]: a
        for prefix in ("it-mweb-", "it-mdb-", "it-mon-")
        for a in cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
        if "-watchdog-" not in a["AlarmName"]
    }
    dashboards = {
        d["DashboardName"]: json.loads(cloudwatch.get_dashboard(DashboardName=d["DashboardName"])["DashboardBody"])
        for d in cloudwatch.list_dashboards(DashboardNamePrefix="ec2spot-it-m")["DashboardEntries"]
    }
    return alarms, dashboards


@pytest.fixture(scope="module")
def runs(sandbox, session, play, cloudwatch):
    sandbox_world.managed_instance_profile(
        session.client("iam", endpoint_url=sandbox["endpoint"]), "it-mon-given-instance"
    )
    check = play(DEPLOY, "--check")
    after_check = described(cloudwatch) + (
        watchdog(cloudwatch, session.client("events", endpoint_url=sandbox["endpoint"])),
    )
    first = play(DEPLOY)
    second = play(DEPLOY)
    yield {"check": check, "after_check": after_check, "first": first, "second": second}
    autoscaling = session.client("autoscaling", endpoint_url=sandbox["endpoint"])
    for group in autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-mweb", "it-mdb"])[
        "AutoScalingGroups"
    ]:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group["AutoScalingGroupName"], ForceDelete=True)


def failures(run):
    return helpers.failed_tasks(run[0])


def changed_tasks(run):
    return helpers.changed_tasks(run[0])


def watchdog(cloudwatch, events):
    """it-mdb's CPU watchdog: its alarms and its rule (None when there is none)."""
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNamePrefix=f"{CONTROL_PLANE}-watchdog-")["MetricAlarms"]
    }
    rules = events.list_rules(NamePrefix=f"{CONTROL_PLANE}-watchdog-")["Rules"]
    return alarms, rules


def test_check_mode_creates_no_alarm_and_no_dashboard(runs):
    assert runs["check"][1] == 0, failures(runs["check"])
    assert runs["after_check"] == ({}, {}, ({}, []))


def test_deploy_puts_the_cpu_watchdog_on_the_group_s_instance_and_routes_it_to_the_handler(
    runs, sandbox, session, cloudwatch
):
    """Seed 004 from the variables file: a CPU alarm on the group's instance that reboots it, and the rule that
    sends its ALARM state changes to the control plane's queue (the handler reports reboots and moves the alarm
    to a Spot replacement)."""
    autoscaling = session.client("autoscaling", endpoint_url=sandbox["endpoint"])
    events = session.client("events", endpoint_url=sandbox["endpoint"])
    [group] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["it-mdb"])["AutoScalingGroups"]
    [instance] = [i["InstanceId"] for i in group["Instances"]]
    alarms, rules = watchdog(cloudwatch, events)
    assert list(alarms) == [f"{CONTROL_PLANE}-watchdog-it-mdb-{instance}"]
    [alarm] = alarms.values()
    assert (alarm["MetricName"], alarm["Threshold"], alarm["Dimensions"], alarm["AlarmActions"]) == (
        "CPUUtilization",
        90.0,
        [{"Name": "InstanceId", "Value": instance}],
        ["arn:aws:automate:us-east-1:ec2:reboot"],
    )
    assert [r["Name"] for r in rules] == [f"{CONTROL_PLANE}-watchdog-it-mdb"]
    [target] = events.list_targets_by_rule(Rule=f"{CONTROL_PLANE}-watchdog-it-mdb")["Targets"]
    assert target["Arn"].endswith(f":{CONTROL_PLANE}-events")


def test_deploy_creates_the_alarms_and_dashboard_and_a_second_run_changes_nothing(runs, cloudwatch):
    assert runs["first"][1] == 0, failures(runs["first"])
    assert runs["second"][1] == 0, failures(runs["second"])
    assert runs["second"][0]["stats"]["localhost"]["changed"] == 0, changed_tasks(runs["second"])
    alarms, dashboards = described(cloudwatch)
    # it-mdb turned monitoring off: nothing of its own; the control plane's alarms went with it-mweb
    assert sorted(alarms) == sorted(WEB_ALARMS + CONTROL_PLANE_ALARMS)
    assert list(dashboards) == [DASHBOARD]


def test_the_alarms_watch_the_right_metrics_with_the_file_s_thresholds(runs, sandbox, cloudwatch, target_group_arn):
    alarms, _dashboards = described(cloudwatch)
    topic = topic_arn(sandbox)
    assert {a["AlarmActions"][0] for a in alarms.values()} == {topic}
    assert alarms and all(a["AlarmActions"] == a["OKActions"] == [topic] for a in alarms.values())
    spot = alarms["it-mweb-monitoring-spot-interruptions"]
    assert (spot["Namespace"], spot["MetricName"], spot["Statistic"], spot["Period"], spot["Threshold"]) == (
        "EC2Spot/AutoRecover",
        "SpotInterruptions",
        "Sum",
        300,
        2.0,
    )  # the service's threshold
    assert spot["Dimensions"] == [{"Name": "Service", "Value": "it-mweb"}]
    cpu = alarms["it-mweb-monitoring-group-cpu"]
    assert (cpu["MetricName"], cpu["Threshold"], cpu["Dimensions"]) == (
        "CPUUtilization",
        80.0,
        [{"Name": "AutoScalingGroupName", "Value": "it-mweb"}],
    )  # the file-wide threshold
    assert alarms["it-mon-monitoring-dead-letters"]["Dimensions"] == [
        {"Name": "QueueName", "Value": "it-mon-events-dlq"}
    ]
    assert alarms["it-mon-monitoring-function-errors"]["Dimensions"] == [{"Name": "FunctionName", "Value": "it-mon"}]
    rate = alarms["it-mweb-monitoring-alb-5xx-rate"]
    group, balancer = target_group_arn
    dimensions = [
        {"Name": "TargetGroup", "Value": group.split(":")[-1]},
        {"Name": "LoadBalancer", "Value": balancer.split(":loadbalancer/")[-1]},
    ]
    assert [q["Id"] for q in rate["Metrics"] if q["ReturnData"]] == ["rate"]
    assert [q["MetricStat"]["Metric"]["Dimensions"] for q in rate["Metrics"] if "MetricStat" in q] == [
        dimensions,
        dimensions,
    ]


def test_the_dashboard_shows_capacity_cpu_interruptions_and_recovery_phases(runs, cloudwatch):
    dashboard = described(cloudwatch)[1][DASHBOARD]
    widgets = {w["properties"].get("title"): w["properties"] for w in dashboard["widgets"]}
    capacity = widgets["Capacity: desired / in service"]["metrics"]
    assert [line[1] for line in capacity][:2] == ["GroupDesiredCapacity", "GroupInServiceInstances"]
    assert {line[3] for line in capacity} == {"it-mweb"}
    assert widgets["CPU utilization (%)"]["metrics"][0][:4] == [
        "AWS/EC2",
        "CPUUtilization",
        "AutoScalingGroupName",
        "it-mweb",
    ]
    assert widgets["Interruptions and recoveries"]["metrics"][0][:4] == [
        "EC2Spot/AutoRecover",
        "SpotInterruptions",
        "Service",
        "it-mweb",
    ]
    phases = [line for line in widgets["Recovery phase durations (s)"]["metrics"] if line[1] == "PhaseSeconds"]
    assert [line[5] for line in phases] == ["ready", "stop", "snapshot", "release", "attach", "address", "hook"]
    assert sorted(arn.split(":alarm:")[1] for arn in widgets["Alarms"]["alarms"]) == sorted(
        WEB_ALARMS + CONTROL_PLANE_ALARMS
    )


def test_an_alarm_in_alarm_state_notifies_the_control_plane_topic(runs, sandbox, cloudwatch, box):
    cloudwatch.set_alarm_state(
        AlarmName="it-mweb-monitoring-spot-interruptions",
        StateValue="ALARM",
        StateReason="test: 3 interruption warnings in 5 minutes",
    )
    actions = [r for r in box.records("alarm_actions") if r["alarm"] == "it-mweb-monitoring-spot-interruptions"]
    assert [(r["state"], r["outcome"]) for r in actions] == [("ALARM", f"notified {topic_arn(sandbox)}")]


def test_destroy_removes_the_alarms_and_the_dashboard(runs, play, sandbox, session, cloudwatch):
    done = play(DESTROY)
    assert done[1] == 0, failures(done)
    assert described(cloudwatch) == ({}, {})
    assert watchdog(cloudwatch, session.client("events", endpoint_url=sandbox["endpoint"])) == ({}, [])


@pytest.mark.parametrize(
    "variables, says",
    [
        (
            {"monitoring_alarms": {"cpu": {"threshold": 80}}},
            "cpu",
        ),  # not an alarm the role knows: refused by its argument spec
        ({"monitoring_alarms": {"group_cpu": {"period": 45}}}, "(group_cpu)"),
        (
            {"monitoring_alarms": {"spot_interruptions": {"evaluation_periods": 1, "datapoints_to_alarm": 2}}},
            "(spot_interruptions)",
        ),
        (
            {
                "monitoring_target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/1"
            },
            "the target group an ELB target group ARN",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_before_anything_changes(playbook, cloudwatch, variables, says):
    run = playbook(
        [
            {
                "name": "Monitoring with bad input",
                "ansible.builtin.include_role": {"name": "ec2spot.autorecover.monitoring"},
                "vars": {"monitoring_service": "it-mbad", **variables},
            }
        ]
    )
    assert run.returncode != 0
    [failed] = [result for result in run.results if result.get("failed")]
    assert says in failed["msg"], failed["msg"]
    assert cloudwatch.describe_alarms(AlarmNamePrefix="it-mbad-")["MetricAlarms"] == []
