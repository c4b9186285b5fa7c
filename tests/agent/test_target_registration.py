"""start-app joins the fleet's target groups once the application has started, and only then.

The load balancer's first health check should find the application serving: a target must pass one health check to be
healthy after its registration, but one that failed UnhealthyThresholdCount checks needs HealthyThresholdCount passes
(ALB user guide, "Health checks for Application Load Balancer target groups"). The stop's mirror, the deregistration,
is tested in test_watch.py.
"""

import os
import re
from unittest import mock

import pytest

from tests.agent.conftest import FRESH, agent_module, lineage_tags

MISSING_GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/not-there/0123456789abcdef"


def without_request_id(text):
    return re.sub(r"<RequestId>[^<]*</RequestId>", "", text)


@pytest.fixture
def target_group(session, endpoint, seeded, request):
    """A target group of the seeded VPC with no target yet, and a reader of its registered targets."""
    elb = session.client("elbv2", endpoint_url=endpoint)
    arn = elb.create_target_group(
        Name=f"join-{abs(hash(request.node.name)) % 10**8}",
        Protocol="HTTP",
        Port=80,
        VpcId=seeded["vpc_id"],
        TargetType="instance",
    )["TargetGroups"][0]["TargetGroupArn"]
    return {
        "arn": arn,
        "targets": lambda: [
            d["Target"]["Id"] for d in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        ],
    }


def test_the_instance_joins_its_target_groups_once_the_application_has_started(
    make_agent, attached_device, lineage, instance, target_group, workdir
):
    agent = make_agent(lineage, target_group_arns=[target_group["arn"]])
    attached_device(lineage_tags(lineage, 1, **FRESH))
    agent.mount()
    assert target_group["targets"]() == []  # mounted, the application not started: not yet

    state = agent.start_app()

    assert os.path.exists(os.path.join(workdir, "app-started"))
    assert target_group["targets"]() == [instance["id"]]
    assert state["registered"] == [target_group["arn"]] and state["registration_errors"] == []
    assert state["phases"]["app_started"] <= state["phases"]["registered"]
    kept = agent_module.read_json(os.path.join(workdir, "run", "boot.json"))
    assert kept["phases"]["registered"] == state["phases"]["registered"]

    with mock.patch.object(agent_module.Aws, "register_target") as register:
        agent.start_app()  # a second start-app in the same boot registers nothing again
    register.assert_not_called()
    assert target_group["targets"]() == [instance["id"]]


def test_a_failed_application_start_registers_nothing(make_agent, attached_device, lineage, target_group, workdir):
    agent = make_agent(lineage, target_group_arns=[target_group["arn"]], app_start_commands=["exit 3"])
    attached_device(lineage_tags(lineage, 1, **FRESH))
    agent.mount()

    with pytest.raises(agent_module.AgentError, match="failed \\(3\\)"):
        agent.start_app()

    assert target_group["targets"]() == []
    assert "registered" not in agent_module.read_json(os.path.join(workdir, "run", "boot.json"))["phases"]


def test_an_unmounted_volume_registers_nothing(make_agent, lineage, target_group):
    agent = make_agent(lineage, target_group_arns=[target_group["arn"]])
    with pytest.raises(agent_module.Refused, match="not mounted"):
        agent.start_app()
    assert target_group["targets"]() == []


def test_without_target_groups_nothing_is_registered(make_agent, attached_device, lineage, target_group):
    agent = make_agent(lineage)
    attached_device(lineage_tags(lineage, 1, **FRESH))
    agent.mount()
    with mock.patch.object(agent_module.Aws, "register_target") as register:
        state = agent.start_app()
    register.assert_not_called()
    assert "registered" not in state and "registered" not in state["phases"]
    assert target_group["targets"]() == []


def test_a_refused_registration_is_recorded_and_reported_and_the_application_keeps_running(
    make_agent, attached_device, lineage, instance, target_group, workdir, catch
):
    """One target group that does not exist: the other is joined, the failure recorded and told in the boot report;
    the application stays up (no stop command runs) and the next start-app tries again."""
    reports = catch({"source": ["ec2spot.autorecover"], "detail": {"lineage": [lineage]}})
    agent = make_agent(
        lineage,
        report_boot=True,
        target_group_arns=[MISSING_GROUP, target_group["arn"]],
        app_stop_commands=[f"touch {workdir}/app-stopped"],
    )
    attached_device(lineage_tags(lineage, 1, **FRESH))
    agent.mount()

    state = agent.start_app()

    assert os.path.exists(os.path.join(workdir, "app-started"))
    assert not os.path.exists(os.path.join(workdir, "app-stopped"))
    assert state["registered"] == [target_group["arn"]] and target_group["targets"]() == [instance["id"]]
    [error] = state["registration_errors"]
    assert error.startswith(f"register {MISSING_GROUP}: elasticloadbalancing answered 400")
    assert "registered" not in state["phases"] and "reported" in state["phases"]
    [report] = reports.drain()
    told = report["detail"]["target-groups"]
    assert told["registered"] == [target_group["arn"]]
    # moto stamps a fresh RequestId into every XML it serves, the queue's message with the report included
    assert [without_request_id(e) for e in told["errors"]] == [without_request_id(error)]

    with mock.patch.object(agent_module.Aws, "register_target") as register:
        agent.start_app()  # not registered everywhere: tried again, the application not restarted
    assert [c.args[0] for c in register.call_args_list] == [MISSING_GROUP, target_group["arn"]]
