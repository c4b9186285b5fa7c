"""Rule 4: EC2's own events, Spot interruptions, rebalance recommendations (sandbox/rules/ec2_events.py)."""

import json
import re
from datetime import datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT
from sandbox.control import SandboxError
from sandbox.rules import ec2_events

ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def state_changes(catch):
    """``state_changes(instance_id)``: the states delivered for that instance since the last call."""
    inbox, seen = catch({"source": ["aws.ec2"], "detail-type": [ec2_events.STATE_CHANGE]}), {}

    def _states(instance_id):
        for event in inbox.drain():
            seen.setdefault(event["detail"]["instance-id"], []).append(event["detail"]["state"])
        return seen.pop(instance_id, [])

    return _states


def describe(ec2, instance_id):
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def arn(instance_id):
    return f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"


def modeled_now(box):
    return datetime.fromisoformat(box.clock()["now"])


def test_run_instances_emits_pending_then_running(ec2, box, launch, catch):
    """moto 5.2.5 emits no EC2 event; AWS emits a state-change event for pending, then for running."""
    inbox = catch({"source": ["aws.ec2"], "detail-type": [ec2_events.STATE_CHANGE]})
    instance = launch()
    delivered = [e for e in inbox.drain() if e["detail"]["instance-id"] == instance]
    assert [e["detail"]["state"] for e in delivered] == ["pending", "running"]
    event = delivered[0]
    assert event["source"] == "aws.ec2" and event["detail-type"] == "EC2 Instance State-change Notification"
    assert event["resources"] == [arn(instance)]
    assert event["account"] == "123456789012" and event["region"] == "us-east-1"
    assert event["detail"] == {"instance-id": instance, "state": "pending"}
    assert ISO_SECONDS.match(event["time"])
    assert [
        e["detail"]["state"] for e in box.events(ec2_events.STATE_CHANGE) if e["detail"]["instance-id"] == instance
    ] == ["pending", "running"]


def test_stop_start_and_terminate_pass_through_intermediate_states(ec2, box, launch, state_changes):
    """moto 5.2.5 emits no EC2 event; AWS emits stopping/stopped, pending/running, shutting-down/terminated."""
    instance = launch()
    assert state_changes(instance) == ["pending", "running"]
    ec2.stop_instances(InstanceIds=[instance])
    assert state_changes(instance) == ["stopping", "stopped"]
    ec2.start_instances(InstanceIds=[instance])
    assert state_changes(instance) == ["pending", "running"]
    ec2.terminate_instances(InstanceIds=[instance])
    assert state_changes(instance) == ["shutting-down", "terminated"]
    ec2.terminate_instances(InstanceIds=[instance])
    assert state_changes(instance) == []  # no transition, no event


def test_stopping_a_stopped_instance_emits_nothing(ec2, box, launch, state_changes):
    """moto 5.2.5 emits no EC2 event; AWS emits only on a transition."""
    instance = launch()
    ec2.stop_instances(InstanceIds=[instance])
    state_changes(instance)
    ec2.stop_instances(InstanceIds=[instance])
    ec2.start_instances(InstanceIds=[instance])
    ec2.start_instances(InstanceIds=[instance])
    assert state_changes(instance) == ["pending", "running"]


def test_internal_terminations_emit_too(ec2, box, launch, state_changes):
    """moto 5.2.5 emits no EC2 event; AWS emits for terminations by its own services (Auto Scaling, Spot)."""
    first, second = launch(), launch()
    with CONTEXT.lock:
        CONTEXT.backend("ec2").terminate_instances([first])
        CONTEXT.backend("ec2").get_instance(second).terminate()
    assert state_changes(first) == ["pending", "running", "shutting-down", "terminated"]
    assert state_changes(second) == ["pending", "running", "shutting-down", "terminated"]


def test_instances_created_inside_moto_emit_too(ec2, box, seeded, state_changes):
    """moto 5.2.5 emits no EC2 event; AWS emits pending/running for any launch (here moto's backend directly)."""
    with CONTEXT.lock:
        backend = CONTEXT.backend("ec2")
        reservation = backend.run_instances(
            seeded["image_id"], 2, None, [], instance_type="t3.micro", is_instance_type_default=False
        )
    for instance in reservation.instances:
        assert state_changes(instance.id) == ["pending", "running"]


def test_instances_made_outside_run_instances_emit_on_the_next_tick(box, seeded, state_changes):
    """moto 5.2.5 emits no EC2 event; whatever path creates an instance, AWS announces it."""
    from moto.ec2.models.instances import Instance

    with CONTEXT.lock:
        instance = Instance(CONTEXT.backend("ec2"), seeded["image_id"], None, [])
    assert state_changes(instance.id) == ["pending", "running"]


def test_spot_interruption_warns_serves_the_notice_and_terminates_at_the_notice_time(
    ec2, box, launch, catch, state_changes
):
    """moto 5.2.5 cannot interrupt a Spot instance (no warning, no IMDS notice, no reclaim); AWS does all three."""
    warnings = catch({"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]})
    instance = launch(InstanceMarketOptions={"MarketType": "spot"})
    state_changes(instance)
    start = modeled_now(box)
    notice = box.call("spot/interrupt", instance_id=instance)

    delivered = [e for e in warnings.drain() if e["detail"]["instance-id"] == instance]
    assert len(delivered) == 1
    assert delivered[0]["detail"] == {"instance-id": instance, "instance-action": "terminate"}
    assert delivered[0]["resources"] == [arn(instance)] and delivered[0]["source"] == "aws.ec2"

    action = json.loads(box.call("imds", instance_id=instance, path="spot/instance-action")["value"])
    assert action["action"] == "terminate" and ISO_SECONDS.match(action["time"])
    when = datetime.strptime(action["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=start.tzinfo)
    assert abs((when - (start + timedelta(seconds=120))).total_seconds()) <= 1
    assert notice["time"] == action["time"]
    assert (
        box.call("imds", instance_id=instance, path="/latest/meta-data/spot/termination-time")["value"]
        == action["time"]
    )

    box.advance(119)
    assert describe(ec2, instance)["State"]["Name"] == "running"
    assert state_changes(instance) == []
    box.advance(1.5)
    described = describe(ec2, instance)
    assert described["State"]["Name"] == "terminated"
    assert described["StateReason"]["Code"] == "Server.SpotInstanceTermination"
    assert state_changes(instance) == ["shutting-down", "terminated"]
    assert [r["instance_id"] for r in box.records("spot_interruptions")] == [instance]


@pytest.mark.parametrize(
    "action, reason", [("stop", "Server.SpotInstanceShutdown"), ("hibernate", "Server.SpotInstanceHibernate")]
)
def test_spot_stop_and_hibernate_interruptions_stop_the_instance_with_its_volumes(
    ec2, box, launch, catch, state_changes, action, reason
):
    """AWS (interruption behaviour stop/hibernate, a persistent request): the same notice with that action, then the
    instance is stopped, not terminated, and keeps its volumes; only EC2 starts it again. moto cannot interrupt."""
    warnings = catch({"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]})
    instance = launch(
        InstanceMarketOptions={
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": action},
        }
    )
    zone = describe(ec2, instance)["Placement"]["AvailabilityZone"]
    volume = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
    box.advance(5)
    state_changes(instance)
    box.call("spot/interrupt", instance_id=instance, action=action)

    [delivered] = [e for e in warnings.drain() if e["detail"]["instance-id"] == instance]
    assert delivered["detail"] == {"instance-id": instance, "instance-action": action}
    assert json.loads(box.call("imds", instance_id=instance, path="spot/instance-action")["value"])["action"] == action
    box.advance(121)
    described = describe(ec2, instance)
    assert (described["State"]["Name"], described["StateReason"]["Code"]) == ("stopped", reason)
    assert state_changes(instance) == ["stopping", "stopped"]
    attachments = ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"]
    assert [(a["InstanceId"], a["State"]) for a in attachments] == [(instance, "attached")]

    box.call("spot/capacity", instance_id=instance)
    assert describe(ec2, instance)["State"]["Name"] == "running"
    with pytest.raises(Exception, match="404"):  # a new boot has no notice
        box.call("imds", instance_id=instance, path="spot/instance-action")
    with pytest.raises(Exception, match="not stopped by a Spot interruption"):
        box.call("spot/capacity", instance_id=instance)


def test_spot_interruption_with_a_short_lead_and_termination_protection(ec2, box, launch, state_changes):
    """moto 5.2.5 cannot interrupt; AWS reclaims at the notice time even with termination protection on."""
    instance = launch(DisableApiTermination=True)
    ec2_events.interrupt(instance, lead=30)
    box.advance(29)
    assert describe(ec2, instance)["State"]["Name"] == "running"
    box.advance(1.5)
    assert describe(ec2, instance)["State"]["Name"] == "terminated"
    assert state_changes(instance)[-2:] == ["shutting-down", "terminated"]


def test_an_instance_terminated_before_its_notice_time_is_not_reclaimed_again(ec2, box, launch, state_changes):
    """moto 5.2.5 cannot interrupt; in AWS an instance gone before its notice time emits no second termination."""
    instance = launch()
    box.call("spot/interrupt", instance_id=instance, lead=60)
    ec2.terminate_instances(InstanceIds=[instance])
    box.advance(120)
    assert state_changes(instance) == ["pending", "running", "shutting-down", "terminated"]
    assert "spot reclaim " + instance not in [p["label"] for p in box.clock()["pending"]]


def test_spot_interruption_is_refused_for_unknown_and_not_running_instances(ec2, box, launch):
    """moto 5.2.5 has no interruption at all; the sandbox refuses what AWS/FIS cannot interrupt."""
    with pytest.raises(SandboxError, match="does not exist"):
        box.call("spot/interrupt", instance_id="i-0123456789abcdef0")
    stopped = launch()
    ec2.stop_instances(InstanceIds=[stopped])
    with pytest.raises(SandboxError, match="not running"):
        box.call("spot/interrupt", instance_id=stopped)
    twice = launch()
    box.call("spot/interrupt", instance_id=twice)
    with pytest.raises(SandboxError, match="already"):
        box.call("spot/interrupt", instance_id=twice)
    with pytest.raises(SandboxError, match="does not exist"):
        box.call("spot/rebalance", instance_id="i-0123456789abcdef0")
    with pytest.raises(SandboxError, match="not running"):
        box.call("spot/rebalance", instance_id=stopped)


def test_rebalance_recommendation_emits_and_serves_the_notice_without_terminating(ec2, box, launch, catch):
    """moto 5.2.5 has no rebalance recommendation; AWS emits the event and serves the IMDS notice."""
    inbox = catch({"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]})
    instance = launch()
    now = modeled_now(box)
    box.call("spot/rebalance", instance_id=instance)
    delivered = [e for e in inbox.drain() if e["detail"]["instance-id"] == instance]
    assert len(delivered) == 1 and delivered[0]["detail"] == {"instance-id": instance}
    assert delivered[0]["resources"] == [arn(instance)]
    notice = json.loads(box.call("imds", instance_id=instance, path="events/recommendations/rebalance")["value"])
    assert notice == {"noticeTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    box.advance(600)
    assert describe(ec2, instance)["State"]["Name"] == "running"
    with pytest.raises(SandboxError, match="Not Found"):
        box.call("imds", instance_id=instance, path="spot/instance-action")


def test_imds_control_answers_not_found_for_absent_paths(box, launch):
    """moto 5.2.5 keeps no instance metadata; IMDS answers 404 for a notice that was never given."""
    instance = launch()
    with pytest.raises(SandboxError, match="Not Found"):
        box.call("imds", instance_id=instance, path="events/recommendations/rebalance")
    with pytest.raises(SandboxError, match="Not Found"):
        box.call("imds", instance_id="i-0123456789abcdef0", path="spot/instance-action")


def test_stop_of_a_terminated_instance_still_fails_as_before(ec2, box, launch, state_changes):
    """The events layer must not change moto's answers: a stop refused by moto stays refused, no event."""
    instance = launch(DisableApiStop=True)
    state_changes(instance)
    with pytest.raises(ClientError):
        ec2.stop_instances(InstanceIds=[instance])
    assert state_changes(instance) == []


def test_a_scheduled_retirement_is_listed_announced_and_stops_the_instance_at_its_time(ec2, box, launch, catch):
    """AWS lists a scheduled event in DescribeInstanceStatus and the instance's metadata, announces it through AWS
    Health (best effort) and stops an EBS-backed instance at NotBefore. moto 5.2.5 has no scheduled events at all."""
    health = catch({"source": ["aws.health"], "detail-type": ["AWS Health Event"]})
    instance = launch()
    record = box.call("ec2/schedule-event", instance_id=instance, code="instance-retirement", lead=3600)

    [status] = ec2.describe_instance_status(InstanceIds=[instance], IncludeAllInstances=True)["InstanceStatuses"]
    [event] = status["Events"]
    assert (event["Code"], event["InstanceEventId"]) == ("instance-retirement", record["event_id"])
    listed = json.loads(box.call("imds", instance_id=instance, path="events/maintenance/scheduled")["value"])
    assert [(e["Code"], e["State"], e["EventId"]) for e in listed] == [
        ("instance-retirement", "active", record["event_id"])
    ]
    datetime.strptime(listed[0]["NotBefore"], "%d %b %Y %H:%M:%S GMT")
    [announced] = [e for e in health.drain() if e["detail"]["affectedEntities"] == [{"entityValue": instance}]]
    assert announced["detail"]["eventTypeCode"] == "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"
    assert announced["resources"] == [instance] and announced["detail"]["statusCode"] == "upcoming"

    box.advance(3599)
    assert describe(ec2, instance)["State"]["Name"] == "running"
    box.advance(2)
    assert describe(ec2, instance)["State"]["Name"] == "stopped"
    [event] = ec2.describe_instance_status(InstanceIds=[instance], IncludeAllInstances=True)["InstanceStatuses"][0][
        "Events"
    ]
    assert event["Description"].startswith("[Completed]")


def test_a_scheduled_event_can_go_unannounced_and_bad_requests_are_refused(box, launch, catch):
    health = catch({"source": ["aws.health"], "detail-type": ["AWS Health Event"]})
    instance = launch()
    box.call("ec2/schedule-event", instance_id=instance, code="system-reboot", lead=600, health=False)
    assert [e for e in health.drain() if e["detail"]["affectedEntities"] == [{"entityValue": instance}]] == []
    for payload, words in (
        ({"instance_id": instance, "code": "instance-melt"}, "code must be one of"),
        ({"instance_id": "i-0000000000000000f", "code": "instance-stop"}, "does not exist"),
    ):
        with pytest.raises(SandboxError, match=words):
            box.call("ec2/schedule-event", **payload)
