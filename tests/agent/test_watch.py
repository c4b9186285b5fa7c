"""The watcher and the stop: notice -> deregister -> drain -> stop -> sync, once, within the notice's deadline."""

import datetime
import json
import os
import threading
from unittest import mock

import pytest

from tests.agent.conftest import agent_module, running_instance

NOTICE = "meta-data/spot/instance-action"
REBALANCE = "meta-data/events/recommendations/rebalance"


@pytest.fixture
def instance(ec2, seeded):
    """A running instance in us-east-1b, of no lineage, and its IMDS double."""
    yield from running_instance(ec2, seeded, "us-east-1b")


@pytest.fixture
def target_group(session, endpoint, seeded, instance, request):
    elb = session.client("elbv2", endpoint_url=endpoint)
    arn = elb.create_target_group(
        Name=f"tg-{abs(hash(request.node.name)) % 10**8}",
        Protocol="HTTP",
        Port=80,
        VpcId=seeded["vpc_id"],
        TargetType="instance",
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance["id"]}])
    return {
        "arn": arn,
        "targets": lambda: [
            d["Target"]["Id"] for d in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        ],
    }


@pytest.fixture
def make_agent(workdir, instance, endpoint, clock):
    def make(**overrides):
        config = agent_module.validate_config(
            dict(
                {
                    "service": "pg",
                    "lineage": "pgdata",
                    "mount_point": os.path.join(workdir, "data"),
                    "run_dir": os.path.join(workdir, "run"),
                    "state_dir": os.path.join(workdir, "state"),
                    "imds_endpoint": instance["imds"].endpoint,
                    "aws_endpoint_url": endpoint,
                    "poll_seconds": 5,
                    "drain_seconds": 30,
                    "stop_reserve_seconds": 30,
                    "app_stop_commands": [f"echo stopped >> {workdir}/app-stops"],
                },
                **overrides,
            )
        )
        return agent_module.Agent(config, clock=clock)

    return make


def app_stops(workdir):
    path = os.path.join(workdir, "app-stops")
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as handle:
        return len(handle.read().splitlines())


def notice(clock, seconds_ahead=120, action="terminate"):
    when = clock.now() + datetime.timedelta(seconds=seconds_ahead)
    return json.dumps({"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}), when


def test_a_hibernate_notice_is_recorded_and_stops_nothing(make_agent, instance, clock, workdir):
    """Hibernation keeps memory: the application resumes where it was; a stop would lose that for nothing."""
    agent = make_agent()
    instance["imds"].set(NOTICE, notice(clock, action="hibernate")[0])
    assert agent.poll_once() == "hibernate"
    assert agent.poll_once() == "hibernate"
    assert app_stops(workdir) == 0 and not os.path.exists(os.path.join(workdir, "run", "stop.json"))
    assert agent_module.read_json(os.path.join(workdir, "run", "hibernate.json"))["notice"]["action"] == "hibernate"


def test_a_stop_notice_stops_the_application_like_a_termination(make_agent, instance, clock, workdir):
    agent = make_agent()
    instance["imds"].set(NOTICE, notice(clock, action="stop")[0])
    assert agent.poll_once() == "interruption"
    assert app_stops(workdir) == 1


def test_notice_deregisters_drains_and_stops_within_the_deadline(make_agent, instance, target_group, clock, workdir):
    agent = make_agent(target_group_arns=[target_group["arn"]])
    agent.watch(max_polls=2)
    assert app_stops(workdir) == 0 and target_group["targets"]() == [instance["id"]]

    value, deadline = notice(clock, 120)
    instance["imds"].set(NOTICE, value)
    agent.watch(max_polls=1)

    record = agent_module.read_json(os.path.join(workdir, "run", "stop.json"))
    assert record["outcome"] == "stopped" and record["met_deadline"] is True
    assert record["deregistered"] == [target_group["arn"]] and target_group["targets"]() == []
    assert record["drained_seconds"] == 30
    assert agent_module.parse_time(record["finished"]) <= deadline
    assert record["reason"].startswith("spot terminate at ")
    assert app_stops(workdir) == 1


def test_a_short_notice_cuts_the_drain_to_keep_time_for_the_stop(make_agent, instance, target_group, clock, workdir):
    agent = make_agent(target_group_arns=[target_group["arn"]], drain_seconds=60)
    value, deadline = notice(clock, 40)
    instance["imds"].set(NOTICE, value)
    agent.watch(max_polls=1)
    record = agent_module.read_json(os.path.join(workdir, "run", "stop.json"))
    assert record["drained_seconds"] == 10  # 40 s left, 30 s kept for the stop
    assert record["met_deadline"] and app_stops(workdir) == 1


def test_no_notice_nothing_happens(make_agent, instance, clock, workdir):
    agent = make_agent()
    agent.watch(max_polls=20)
    assert app_stops(workdir) == 0
    assert not os.path.exists(os.path.join(workdir, "run", "stop.json"))
    assert sum(clock.slept) == 19 * 5


def test_imds_errors_are_retried_and_never_stop_the_app(make_agent, instance, clock, workdir):
    agent = make_agent()
    instance["imds"].fail(3, 500)
    instance["imds"].fail(2, None)  # dropped connections
    instance["imds"].fail(1, 503)
    agent.watch(max_polls=8)
    assert app_stops(workdir) == 0
    statuses = [request[2] for request in instance["imds"].requests]
    assert statuses.count(500) == 3 and statuses.count(None) == 2 and statuses.count(503) == 1 and 404 in statuses

    instance["imds"].set(NOTICE, notice(clock)[0])
    agent.watch(max_polls=1)
    assert app_stops(workdir) == 1


def test_expired_token_is_refreshed(make_agent, instance, workdir):
    agent = make_agent()
    agent.watch(max_polls=1)
    instance["imds"].tokens.clear()  # IMDS forgot every token (restart, expiry): the next GET is a 401
    agent.watch(max_polls=1)
    statuses = [(request[0], request[2]) for request in instance["imds"].requests]
    assert ("GET", 401) in statuses and statuses.count(("PUT", 200)) == 2
    assert app_stops(workdir) == 0


def test_stop_twice_stops_once(make_agent, clock, workdir):
    agent = make_agent()
    first = agent.stop("spot terminate", clock.now() + datetime.timedelta(seconds=120))
    second = agent.stop("control-plane")
    assert first == second and app_stops(workdir) == 1
    history = os.path.join(workdir, "state", "stops.jsonl")
    with open(history, encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) == 1


def test_concurrent_stops_race_safely(make_agent, workdir):
    """The watcher and the control plane's SSM stop arrive together: the app is stopped exactly once."""
    agents = [make_agent(app_stop_commands=[f"sleep 0.3; echo stopped >> {workdir}/app-stops"]) for index in range(3)]
    for each in agents:
        each.clock = agent_module.Clock()
    results = []
    threads = [threading.Thread(target=lambda a=each: results.append(a.stop("race"))) for each in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert app_stops(workdir) == 1 and len(results) == 3
    assert all(result == results[0] for result in results)


def test_stop_via_the_command_line_is_what_ssm_runs(make_agent, workdir, clock):
    agent = make_agent()
    config_path = os.path.join(workdir, "config.json")
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(agent.config, handle)
    assert agent_module.main(["--config", config_path, "stop", "--reason", "control-plane"]) == 0
    assert agent_module.main(["--config", config_path, "stop", "--reason", "control-plane"]) == 0
    assert app_stops(workdir) == 1


def test_failed_app_stop_is_reported_and_can_be_retried(make_agent, clock, workdir):
    flag = os.path.join(workdir, "stop-works")
    agent = make_agent(app_stop_commands=[f"test -e {flag}", f"echo stopped >> {workdir}/app-stops"])
    with pytest.raises(agent_module.AgentError, match="stop incomplete"):
        agent.stop("first try")
    open(flag, "w", encoding="utf-8").close()
    assert agent.stop("second try")["outcome"] == "stopped" and app_stops(workdir) == 1


def test_rebalance_is_recorded_not_acted_on_by_default(make_agent, instance, clock, workdir):
    agent = make_agent()
    instance["imds"].set(REBALANCE, json.dumps({"noticeTime": "2026-11-24T10:00:00Z"}))
    agent.watch(max_polls=3)
    assert app_stops(workdir) == 0
    recorded = agent_module.read_json(os.path.join(workdir, "run", "rebalance.json"))
    assert recorded["action"] == "record" and "2026-11-24T10:00:00Z" in recorded["notice"]


def test_rebalance_stops_when_configured(make_agent, instance, workdir):
    agent = make_agent(on_rebalance="stop")
    instance["imds"].set(REBALANCE, json.dumps({"noticeTime": "2026-11-24T10:00:00Z"}))
    agent.watch(max_polls=2)
    assert app_stops(workdir) == 1


def test_sigv4_signature_matches_botocore():
    """Our stdlib signer produces the signature botocore's SigV4Auth does for the same request."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    moment = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.timezone.utc)
    body = b"Action=DescribeVolumes&Version=2016-11-15&Filter.1.Name=tag-key&Filter.1.Value.1=ec2spot%3Ageneration"
    url = "https://ec2.us-east-1.amazonaws.com/"
    aws = agent_module.Aws("us-east-1", imds=None, clock=None)
    ours = aws.sign(
        "ec2",
        url,
        body,
        {"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
        {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "secret", "Token": "session"},
        moment,
    )

    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    )
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", "secret", "session"), "ec2", "us-east-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment.replace(tzinfo=None)):
        signer.add_auth(request)
    assert ours["Authorization"].split("Signature=")[1] == request.headers["Authorization"].split("Signature=")[1]


def test_bad_configuration_is_refused_with_the_reason(tmp_path):
    with pytest.raises(agent_module.AgentError, match="unknown configuration keys: mountpoint"):
        agent_module.validate_config({"service": "pg", "lineage": "pgdata", "mountpoint": "/data"})
    with pytest.raises(agent_module.AgentError, match="mount_point must be an absolute path other than /"):
        agent_module.validate_config({"service": "pg", "lineage": "pgdata", "mount_point": "/"})
    with pytest.raises(agent_module.AgentError, match="filesystem must be one of"):
        agent_module.validate_config({"service": "pg", "lineage": "pgdata", "filesystem": "btrfs"})
    path = tmp_path / "config.json"
    path.write_text("{not json")
    assert agent_module.main(["--config", str(path), "check-config"]) == 1


def test_sigterm_ends_the_watcher_between_polls_not_during_a_stop(make_agent, instance, clock, workdir):
    """systemd stops the watcher at shutdown: an interruption stop under way is finished first."""
    agent = make_agent(app_stop_commands=[f"kill -TERM {os.getpid()}; echo stopped >> {workdir}/app-stops"])
    instance["imds"].set(NOTICE, notice(clock)[0])
    agent.watch(max_polls=50)  # the stop command sends SIGTERM to this process mid-stop
    record = agent_module.read_json(os.path.join(workdir, "run", "stop.json"))
    assert record["outcome"] == "stopped" and app_stops(workdir) == 1
    assert len(clock.slept) <= 1  # the loop ended after the poll that stopped, instead of polling 50 times


def test_scheduled_maintenance_in_the_metadata_is_told_to_the_control_plane_once(make_agent, instance, clock, catch):
    """EC2 lists a retirement in events/maintenance/scheduled: the watcher puts one EC2Spot Scheduled Maintenance event."""
    told = catch(
        {
            "source": ["ec2spot.autorecover"],
            "detail-type": ["EC2Spot Scheduled Maintenance"],
            "detail": {"instance-id": [instance["id"]]},
        }
    )
    instance["imds"].set(
        "meta-data/events/maintenance/scheduled",
        json.dumps(
            [
                {
                    "Code": "instance-retirement",
                    "Description": "degraded hardware",
                    "EventId": "instance-event-0abc",
                    "NotBefore": "21 Dec 2026 09:00:43 GMT",
                    "NotAfter": "28 Dec 2026 09:00:43 GMT",
                    "State": "active",
                },
                {
                    "Code": "system-reboot",
                    "Description": "[Completed] done",
                    "EventId": "instance-event-0def",
                    "NotBefore": "01 Dec 2026 09:00:43 GMT",
                    "NotAfter": "02 Dec 2026 09:00:43 GMT",
                    "State": "completed",
                },
            ]
        ),
    )
    agent = make_agent(report_boot=True)

    assert agent.check_maintenance() == ["instance-event-0abc"]
    assert agent.check_maintenance() == []  # told once: the record survives the watcher's restarts

    [event] = told.drain()
    detail = event["detail"]
    assert detail == {
        "instance-id": instance["id"],
        "lineage": "pgdata",
        "service": "pg",
        "code": "instance-retirement",
        "event-id": "instance-event-0abc",
        "not-before": "2026-12-21T09:00:43.000Z",
    }


def test_before_reclaim_serves_on_a_terminate_notice_and_stops_only_when_the_reclaim_is_near(
    make_agent, instance, clock, workdir
):
    """Make-before-break: the control plane stops the application at its cut-over; the agent keeps it serving and
    stops it itself only when the reclaim is closer than its reserve (30 s) and one more look (5 s)."""
    agent = make_agent(notice_stop="before-reclaim")
    text, when = notice(clock, seconds_ahead=120)
    instance["imds"].set(NOTICE, text)
    assert agent.poll_once() == "notice" and agent.poll_once() == "notice"
    assert app_stops(workdir) == 0
    assert agent_module.read_json(os.path.join(workdir, "run", "notice.json"))["notice"]["action"] == "terminate"
    instance["imds"].set(NOTICE, notice(clock, seconds_ahead=36)[0])
    assert agent.poll_once() == "notice" and app_stops(workdir) == 0
    instance["imds"].set(NOTICE, notice(clock, seconds_ahead=35)[0])
    assert agent.poll_once() == "interruption" and app_stops(workdir) == 1


@pytest.mark.parametrize("action", ["stop", "hibernate"])
def test_before_reclaim_changes_nothing_for_a_stop_or_hibernate_notice(make_agent, instance, clock, workdir, action):
    agent = make_agent(notice_stop="before-reclaim")
    instance["imds"].set(NOTICE, notice(clock, action=action)[0])
    assert agent.poll_once() == ("interruption" if action == "stop" else "hibernate")
    assert app_stops(workdir) == (1 if action == "stop" else 0)


def test_notice_stop_takes_only_its_two_choices():
    with pytest.raises(agent_module.AgentError, match="notice_stop must be 'at-once' or 'before-reclaim'"):
        agent_module.validate_config({"service": "pg", "lineage": "pgdata", "notice_stop": "later"})
