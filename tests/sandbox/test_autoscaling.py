"""Auto Scaling groups as AWS runs them (sandbox/rules/autoscaling.py).

Every group here launches from the seeded image into the seeded subnet of us-east-1a; each
test uses names of its own (the server is shared by the session) and deletes its groups.
"""

import uuid
from datetime import datetime

import botocore.exceptions
import pytest
from botocore.exceptions import ClientError

from sandbox.clock import CONTEXT

from .conftest import drain_documents, error_code

LAUNCH = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATE = "autoscaling:EC2_INSTANCE_TERMINATING"
LAUNCH_ACTION = "EC2 Instance-launch Lifecycle Action"
TERMINATE_ACTION = "EC2 Instance-terminate Lifecycle Action"


def hook_spec(name, transition=LAUNCH, **extra):
    return {"LifecycleHookName": name, "LifecycleTransition": transition, **extra}


def members(autoscaling, name):
    """[(instance id, lifecycle state, health)] of the group, as DescribeAutoScalingGroups shows them."""
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return [(i["InstanceId"], i["LifecycleState"], i["HealthStatus"]) for i in described["Instances"]]


def states(autoscaling, name):
    return sorted(state for _id, state, _health in members(autoscaling, name))


def only_member(autoscaling, name):
    found = members(autoscaling, name)
    assert len(found) == 1, found
    return found[0][0], found[0][1]


def complete(autoscaling, name, hook, instance_id=None, result="CONTINUE", token=None):
    """CompleteLifecycleAction of the group's ``hook``, naming the action by its token or by its instance."""
    action = {"LifecycleActionToken": token} if token else {"InstanceId": instance_id}
    autoscaling.complete_lifecycle_action(
        AutoScalingGroupName=name, LifecycleHookName=hook, LifecycleActionResult=result, **action
    )


def serve_then_mark_unhealthy(autoscaling, name):
    """The group's one instance through its launch hook ``warm`` to InService, then marked Unhealthy regardless of the
    grace period: ``(its id, its (state, health) now, {each other member: (state, health)})``."""
    old, _state = only_member(autoscaling, name)
    complete(autoscaling, name, "warm", old)
    autoscaling.set_instance_health(InstanceId=old, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False)
    found = {i: (s, h) for i, s, h in members(autoscaling, name)}
    return old, found.pop(old), found


def ec2_state(ec2, instance_id):
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def seconds_between(earlier, later):
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def lifecycle_events(box, detail_type, name):
    return [e for e in box.events(detail_type) if e["detail"]["AutoScalingGroupName"] == name]


# ---- rule 1: hooks given at create ---------------------------------------------------------


def test_hooks_given_at_create_are_kept(autoscaling, box, group):
    """moto 5.2.5 drops LifecycleHookSpecificationList; AWS creates the hooks with the group."""
    name = group(
        0,
        hooks=[
            hook_spec("warm", HeartbeatTimeout=600, DefaultResult="CONTINUE", NotificationMetadata="m"),
            hook_spec("drain", TERMINATE),
        ],
    )
    hooks = {
        h["LifecycleHookName"]: h
        for h in autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
    }
    assert set(hooks) == {"warm", "drain"}
    assert (hooks["warm"]["HeartbeatTimeout"], hooks["warm"]["DefaultResult"], hooks["warm"]["GlobalTimeout"]) == (
        600,
        "CONTINUE",
        60000,
    )
    assert hooks["warm"]["NotificationMetadata"] == "m"
    assert (hooks["drain"]["HeartbeatTimeout"], hooks["drain"]["DefaultResult"], hooks["drain"]["GlobalTimeout"]) == (
        3600,
        "ABANDON",
        172800,
    )
    assert "NotificationTargetARN" not in hooks["drain"] and "RoleARN" not in hooks["drain"]


def test_create_with_a_taken_name_is_refused(autoscaling, box, group):
    """moto 5.2.5 silently replaces the group; AWS answers AlreadyExists."""
    name = group(0)
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    with pytest.raises(ClientError) as refused:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            MinSize=0,
            MaxSize=1,
            LaunchTemplate=described["LaunchTemplate"],
            VPCZoneIdentifier=described["VPCZoneIdentifier"],
        )
    assert error_code(refused) == "AlreadyExists"


# ---- rule 2: launch hooks -------------------------------------------------------------------


def test_launch_hook_holds_the_first_instance_until_continue(autoscaling, ec2, box, group):
    """moto 5.2.5 puts every instance InService at once; AWS holds it in Pending:Wait until CompleteLifecycleAction."""
    name = group(1, hooks=[hook_spec("warm", HeartbeatTimeout=900)])
    instance_id, state = only_member(autoscaling, name)
    assert state == "Pending:Wait"
    assert ec2_state(ec2, instance_id) in ("pending", "running")
    box.advance(600)
    assert only_member(autoscaling, name) == (instance_id, "Pending:Wait")
    [event] = lifecycle_events(box, LAUNCH_ACTION, name)
    complete(autoscaling, name, "warm", token=event["detail"]["LifecycleActionToken"])
    assert only_member(autoscaling, name) == (instance_id, "InService")
    [record] = [r for r in box.records("lifecycle_actions") if r["group"] == name]
    assert (record["result"], record["how"]) == ("CONTINUE", "complete")


def test_launch_abandon_terminates_and_the_group_launches_another(autoscaling, ec2, box, group):
    """moto 5.2.5 raises NotImplementedError; AWS terminates the abandoned instance and launches a replacement."""
    name = group(1, hooks=[hook_spec("warm")])
    first, state = only_member(autoscaling, name)
    assert state == "Pending:Wait"
    complete(autoscaling, name, "warm", first, "ABANDON")
    second, state = only_member(autoscaling, name)
    assert second != first and state == "Pending:Wait"
    assert ec2_state(ec2, first) in ("shutting-down", "terminated")
    tokens = [e["detail"]["LifecycleActionToken"] for e in lifecycle_events(box, LAUNCH_ACTION, name)]
    assert [e["detail"]["EC2InstanceId"] for e in lifecycle_events(box, LAUNCH_ACTION, name)] == [first, second]
    assert len(set(tokens)) == 2 and all(str(uuid.UUID(token)) == token for token in tokens)


def test_launch_hook_timeout_applies_the_default_result(autoscaling, box, group):
    """moto 5.2.5 has no timeout; AWS applies DefaultResult once HeartbeatTimeout passes without a heartbeat."""
    name = group(1, hooks=[hook_spec("warm", HeartbeatTimeout=300, DefaultResult="CONTINUE")])
    instance_id, state = only_member(autoscaling, name)
    assert state == "Pending:Wait"
    box.advance(299)
    assert only_member(autoscaling, name) == (instance_id, "Pending:Wait")
    box.advance(2)
    assert only_member(autoscaling, name) == (instance_id, "InService")
    assert [(r["result"], r["how"]) for r in box.records("lifecycle_actions") if r["group"] == name] == [
        ("CONTINUE", "timeout")
    ]


def test_heartbeat_restarts_the_timeout_up_to_the_global_timeout(autoscaling, box, group):
    """moto 5.2.5 raises NotImplementedError; AWS restarts the timeout, never past 100 x HeartbeatTimeout."""
    name = group(1, hooks=[hook_spec("warm", HeartbeatTimeout=30, DefaultResult="ABANDON")])
    first, state = only_member(autoscaling, name)
    [action] = box.call("autoscaling/actions", group=name)["actions"]
    assert (action["instance_id"], action["hook"], action["transition"]) == (first, "warm", LAUNCH)
    for _beat in range(150):  # one heartbeat every 20 s: 3000 s, the global timeout of a 30 s hook
        box.advance(20)
        if only_member(autoscaling, name)[0] != first:
            break
        autoscaling.record_lifecycle_action_heartbeat(
            AutoScalingGroupName=name, LifecycleHookName="warm", InstanceId=first
        )
    gone = [r for r in box.records("lifecycle_actions") if r["group"] == name and r["instance_id"] == first]
    assert [(r["result"], r["how"]) for r in gone] == [("ABANDON", "timeout")]
    started = seconds_between(action["deadline"], gone[0]["at"]) + 30  # the first deadline was 30 s after the start
    assert started == pytest.approx(3000, abs=0.01)


def test_unknown_token_or_instance_is_a_validation_error(autoscaling, box, group, launch):
    """moto 5.2.5 raises NotImplementedError; AWS refuses with ValidationError naming the token or instance."""
    name = group(1, hooks=[hook_spec("warm")])
    token = str(uuid.uuid4())
    with pytest.raises(ClientError) as refused:
        complete(autoscaling, name, "warm", token=token)
    assert error_code(refused) == "ValidationError"
    assert refused.value.response["Error"]["Message"] == f"No active Lifecycle Action found with token {token}"
    stranger = launch()
    with pytest.raises(ClientError) as refused:
        autoscaling.record_lifecycle_action_heartbeat(
            AutoScalingGroupName=name, LifecycleHookName="warm", InstanceId=stranger
        )
    assert refused.value.response["Error"]["Message"] == f"No active Lifecycle Action found with instance ID {stranger}"
    member, state = only_member(autoscaling, name)
    with pytest.raises(ClientError) as refused:
        complete(autoscaling, name, "other", member)
    assert error_code(refused) == "ValidationError" and state == "Pending:Wait"


def test_a_completed_action_cannot_be_completed_again(autoscaling, box, group):
    """moto 5.2.5 raises NotImplementedError; AWS has no active action left for the token."""
    name = group(1, hooks=[hook_spec("warm")])
    member, _state = only_member(autoscaling, name)
    complete(autoscaling, name, "warm", member)
    with pytest.raises(ClientError) as refused:
        complete(autoscaling, name, "warm", member)
    assert error_code(refused) == "ValidationError"


# ---- rule 3: terminate hooks ------------------------------------------------------------------


def test_terminate_hook_holds_a_scale_in_until_continue(autoscaling, ec2, box, group):
    """moto 5.2.5 terminates at once; AWS holds the instance in Terminating:Wait, then Terminating:Proceed."""
    name = group(1, hooks=[hook_spec("drain", TERMINATE, HeartbeatTimeout=600)])
    instance_id, state = only_member(autoscaling, name)
    assert state == "InService"
    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
    assert only_member(autoscaling, name) == (instance_id, "Terminating:Wait")
    assert ec2_state(ec2, instance_id) == "running"
    box.advance(300)
    [event] = lifecycle_events(box, TERMINATE_ACTION, name)
    complete(autoscaling, name, "drain", token=event["detail"]["LifecycleActionToken"])
    assert members(autoscaling, name) == []
    assert ec2_state(ec2, instance_id) in ("shutting-down", "terminated")


@pytest.mark.parametrize("finish", ["ABANDON", "timeout"])
def test_terminate_hook_abandon_or_timeout_still_terminates(autoscaling, ec2, box, group, finish):
    """moto 5.2.5 never waits; AWS terminates after ABANDON as after CONTINUE, and after the timeout."""
    name = group(2, hooks=[hook_spec("drain", TERMINATE, HeartbeatTimeout=120)])
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, DesiredCapacity=1)
    waiting = [(i, s) for i, s, _h in members(autoscaling, name) if s == "Terminating:Wait"]
    assert len(waiting) == 1 and len(members(autoscaling, name)) == 2
    victim = waiting[0][0]
    if finish == "ABANDON":
        complete(autoscaling, name, "drain", victim, "ABANDON")
    else:
        box.advance(119)
        assert (victim, "Terminating:Wait") in [(i, s) for i, s, _h in members(autoscaling, name)]
        box.advance(2)
    assert [s for _i, s, _h in members(autoscaling, name)] == ["InService"]
    assert ec2_state(ec2, victim) in ("shutting-down", "terminated")


def test_terminate_instance_in_group_goes_through_the_terminate_hook(autoscaling, ec2, box, group):
    """moto 5.2.5 terminates at once; AWS runs the terminate hook and (without decrement) launches a replacement."""
    name = group(1, hooks=[hook_spec("drain", TERMINATE)])
    old, _state = only_member(autoscaling, name)
    autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=old, ShouldDecrementDesiredCapacity=False)
    found = dict((i, s) for i, s, _h in members(autoscaling, name))
    assert found.pop(old) == "Terminating:Wait" and list(found.values()) == ["InService"]
    complete(autoscaling, name, "drain", old)
    assert old not in [i for i, _s, _h in members(autoscaling, name)] and len(members(autoscaling, name)) == 1
    assert ec2_state(ec2, old) in ("shutting-down", "terminated")


# ---- rule 4: events and notifications ------------------------------------------------------------


def test_lifecycle_events_carry_the_aws_fields(autoscaling, box, group):
    """moto 5.2.5 emits nothing; AWS emits one event per wait, on the default bus, for the group's ARN."""
    name = group(1, hooks=[hook_spec("warm", NotificationMetadata='{"role": "db"}'), hook_spec("drain", TERMINATE)])
    arn = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
        "AutoScalingGroupARN"
    ]
    instance_id, _state = only_member(autoscaling, name)
    [launch_event] = lifecycle_events(box, LAUNCH_ACTION, name)
    assert launch_event["source"] == "aws.autoscaling" and launch_event["resources"] == [arn]
    detail = launch_event["detail"]
    assert detail == {
        "LifecycleActionToken": detail["LifecycleActionToken"],
        "AutoScalingGroupName": name,
        "LifecycleHookName": "warm",
        "EC2InstanceId": instance_id,
        "LifecycleTransition": LAUNCH,
        "NotificationMetadata": '{"role": "db"}',
        "Origin": "EC2",
        "Destination": "AutoScalingGroup",
    }
    complete(autoscaling, name, "warm", instance_id)
    [launched] = lifecycle_events(box, "EC2 Instance Launch Successful", name)
    assert launched["detail"]["EC2InstanceId"] == instance_id
    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
    [terminate_event] = lifecycle_events(box, TERMINATE_ACTION, name)
    assert terminate_event["detail"]["LifecycleTransition"] == TERMINATE
    assert (terminate_event["detail"]["Origin"], terminate_event["detail"]["Destination"]) == (
        "AutoScalingGroup",
        "EC2",
    )
    assert "NotificationMetadata" not in terminate_event["detail"]


def test_lifecycle_events_reach_an_eventbridge_rule_target(autoscaling, box, group, catch):
    """moto 5.2.5 emits nothing, so no rule ever fires; AWS routes the lifecycle action to the rule's SQS target."""
    caught = catch({"source": ["aws.autoscaling"], "detail-type": [TERMINATE_ACTION]})
    name = group(1, hooks=[hook_spec("drain", TERMINATE)])
    instance_id, _state = only_member(autoscaling, name)
    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
    bodies = [b for b in caught.drain() if b["detail"]["AutoScalingGroupName"] == name]
    assert [(b["detail-type"], b["source"], b["detail"]["EC2InstanceId"]) for b in bodies] == [
        (TERMINATE_ACTION, "aws.autoscaling", instance_id)
    ]


def test_notification_target_gets_the_test_message_and_each_lifecycle_message(autoscaling, sqs, box, group, queue):
    """moto 5.2.5 sends nothing; AWS sends TEST_NOTIFICATION when the hook is put, then one message per action."""
    url, arn = queue()
    name = group(0)
    autoscaling.put_lifecycle_hook(
        AutoScalingGroupName=name,
        LifecycleHookName="warm",
        LifecycleTransition=LAUNCH,
        NotificationTargetARN=arn,
        RoleARN="arn:aws:iam::123456789012:role/autoscaling-notify",
        NotificationMetadata="meta",
    )
    group_arn = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
        "AutoScalingGroupARN"
    ]
    [test_message] = drain_documents(sqs, url)
    assert test_message["Event"] == "autoscaling:TEST_NOTIFICATION"
    assert {k: test_message[k] for k in ("AutoScalingGroupName", "Service", "AccountId", "AutoScalingGroupARN")} == {
        "AutoScalingGroupName": name,
        "Service": "AWS Auto Scaling",
        "AccountId": "123456789012",
        "AutoScalingGroupARN": group_arn,
    }
    assert {"RequestId", "Time"} <= set(test_message)
    [hook] = autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
    assert (hook["NotificationTargetARN"], hook["RoleARN"]) == (
        arn,
        "arn:aws:iam::123456789012:role/autoscaling-notify",
    )
    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=1)
    instance_id, _state = only_member(autoscaling, name)
    [message] = drain_documents(sqs, url)
    assert {
        k: message[k]
        for k in (
            "Origin",
            "Destination",
            "LifecycleHookName",
            "AccountId",
            "LifecycleTransition",
            "AutoScalingGroupName",
            "Service",
            "EC2InstanceId",
            "NotificationMetadata",
        )
    } == {
        "Origin": "EC2",
        "Destination": "AutoScalingGroup",
        "LifecycleHookName": "warm",
        "AccountId": "123456789012",
        "LifecycleTransition": LAUNCH,
        "AutoScalingGroupName": name,
        "Service": "AWS Auto Scaling",
        "EC2InstanceId": instance_id,
        "NotificationMetadata": "meta",
    }
    assert message["Time"].endswith("Z") and {"RequestId", "LifecycleActionToken"} <= set(message)
    complete(autoscaling, name, "warm", token=message["LifecycleActionToken"])
    assert only_member(autoscaling, name) == (instance_id, "InService")


def test_hooks_given_at_create_notify_before_the_first_launch(autoscaling, sqs, box, group, queue):
    """moto 5.2.5 drops the hooks; AWS sends the test message, then the first instance's lifecycle message."""
    url, arn = queue()
    name = group(
        1,
        hooks=[
            hook_spec("warm", NotificationTargetARN=arn, RoleARN="arn:aws:iam::123456789012:role/autoscaling-notify")
        ],
    )
    first, second = drain_documents(sqs, url)
    assert first["Event"] == "autoscaling:TEST_NOTIFICATION"
    assert (second["LifecycleTransition"], second["EC2InstanceId"]) == (LAUNCH, only_member(autoscaling, name)[0])


def test_a_hook_whose_target_does_not_exist_is_refused(autoscaling, box, group):
    """moto 5.2.5 accepts any target; AWS refuses a hook it cannot send the test message to."""
    name = group(0)
    with pytest.raises(ClientError) as refused:
        autoscaling.put_lifecycle_hook(
            AutoScalingGroupName=name,
            LifecycleHookName="warm",
            LifecycleTransition=LAUNCH,
            NotificationTargetARN="arn:aws:sqs:us-east-1:123456789012:no-such-queue",
            RoleARN="arn:aws:iam::123456789012:role/autoscaling-notify",
        )
    assert error_code(refused) == "ValidationError"
    assert autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"] == []


def test_sns_target_gets_the_lifecycle_message(autoscaling, sqs, box, group, subscribed_topic):
    """moto 5.2.5 sends nothing; AWS publishes the lifecycle message to an SNS topic target."""
    topic, (url, _arn) = subscribed_topic(raw=True)
    name = group(
        1,
        hooks=[hook_spec("drain", TERMINATE, NotificationTargetARN=topic, RoleARN="arn:aws:iam::123456789012:role/n")],
    )
    instance_id, _state = only_member(autoscaling, name)
    autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
    bodies = drain_documents(sqs, url)
    assert [b.get("Event") for b in bodies] == ["autoscaling:TEST_NOTIFICATION", None]
    assert (bodies[1]["LifecycleTransition"], bodies[1]["EC2InstanceId"], bodies[1]["Origin"]) == (
        TERMINATE,
        instance_id,
        "AutoScalingGroup",
    )


# ---- rule 5: health replacement ----------------------------------------------------------------------


def test_unhealthy_instance_is_replaced_terminate_and_launch(autoscaling, ec2, box, group):
    """moto 5.2.5 records Unhealthy and keeps the instance; AWS terminates it (through the hook) and launches another."""
    name = group(1, hooks=[hook_spec("drain", TERMINATE), hook_spec("warm")])
    old, was, others = serve_then_mark_unhealthy(autoscaling, name)
    assert was == ("Terminating:Wait", "Unhealthy")
    [(new, (state, health))] = others.items()
    assert (state, health) == ("Pending:Wait", "Healthy")
    terminate_at = lifecycle_events(box, TERMINATE_ACTION, name)[0]["time"]
    launch_at = [e for e in lifecycle_events(box, LAUNCH_ACTION, name) if e["detail"]["EC2InstanceId"] == new][0][
        "time"
    ]
    assert terminate_at <= launch_at
    complete(autoscaling, name, "drain", old)
    complete(autoscaling, name, "warm", new)
    assert members(autoscaling, name) == [(new, "InService", "Healthy")]
    assert ec2_state(ec2, old) in ("shutting-down", "terminated")


def test_launch_before_terminate_keeps_the_unhealthy_instance_until_the_replacement_serves(
    autoscaling, ec2, box, group
):
    """moto 5.2.5 never replaces; with MinHealthyPercentage 100 AWS launches first and terminates once the new one is InService."""
    name = group(
        1,
        hooks=[hook_spec("warm")],
        InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 200},
    )
    old, was, others = serve_then_mark_unhealthy(autoscaling, name)
    assert was == ("InService", "Unhealthy")
    [(new, (state, _health))] = others.items()
    assert state == "Pending:Wait"
    box.advance(600)
    assert {i for i, _s, _h in members(autoscaling, name)} == {old, new}
    complete(autoscaling, name, "warm", new)
    assert members(autoscaling, name) == [(new, "InService", "Healthy")]
    assert ec2_state(ec2, old) in ("shutting-down", "terminated")


def test_set_instance_health_respects_the_grace_period_unless_told_not_to(autoscaling, box, group):
    """moto 5.2.5 ignores ShouldRespectGracePeriod (and never replaces); AWS waits out the grace period by default."""
    name = group(2, HealthCheckGracePeriod=300)
    (first, _s1, _h1), (second, _s2, _h2) = members(autoscaling, name)
    box.advance(100)
    autoscaling.set_instance_health(InstanceId=first, HealthStatus="Unhealthy")
    assert (first, "InService", "Unhealthy") in members(autoscaling, name)
    autoscaling.set_instance_health(InstanceId=second, HealthStatus="Unhealthy", ShouldRespectGracePeriod=False)
    assert second not in [i for i, _s, _h in members(autoscaling, name)]
    box.advance(199)
    assert first in [i for i, _s, _h in members(autoscaling, name)]
    box.advance(2)
    ids = [i for i, _s, _h in members(autoscaling, name)]
    assert first not in ids and len(ids) == 2


def test_the_api_default_grace_period_is_zero(autoscaling, box, group):
    """moto 5.2.5 defaults HealthCheckGracePeriod to 300; the CreateAutoScalingGroup API default is 0."""
    name = group(1)
    assert (
        autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
            "HealthCheckGracePeriod"
        ]
        == 0
    )
    old, _state = only_member(autoscaling, name)
    autoscaling.set_instance_health(InstanceId=old, HealthStatus="Unhealthy")
    assert old not in [i for i, _s, _h in members(autoscaling, name)] and len(members(autoscaling, name)) == 1


def test_an_instance_terminated_through_ec2_is_replaced_through_the_launch_hook(autoscaling, ec2, box, group):
    """moto 5.2.5 launches the replacement InService; AWS's replacement waits in the launch hook like any launch."""
    name = group(1, hooks=[hook_spec("warm", DefaultResult="CONTINUE")])
    old, _state = only_member(autoscaling, name)
    complete(autoscaling, name, "warm", old)
    ec2.terminate_instances(InstanceIds=[old])
    new, state = only_member(autoscaling, name)
    assert new != old and state == "Pending:Wait"


def test_an_instance_reclaimed_inside_ec2_is_replaced(autoscaling, ec2, box, group):
    """moto 5.2.5 notices only TerminateInstances API calls; AWS's EC2 health check sees any termination (a Spot reclaim)."""
    name = group(1)
    old, _state = only_member(autoscaling, name)
    with CONTEXT.lock:  # as the Spot reclaim of the EC2 rules does it: through the EC2 backend, no API call
        CONTEXT.backend("ec2").terminate_instances([old])
    new, state = only_member(autoscaling, name)
    assert new != old and state == "InService"
    assert ec2_state(ec2, old) == "terminated"


def test_a_stopped_instance_fails_the_ec2_health_check(autoscaling, ec2, box, group):
    """moto 5.2.5 keeps a stopped instance InService; AWS replaces it (terminate and launch)."""
    name = group(1)
    old, _state = only_member(autoscaling, name)
    ec2.stop_instances(InstanceIds=[old])
    new, state = only_member(autoscaling, name)
    assert new != old and state == "InService"
    assert ec2_state(ec2, old) in ("shutting-down", "terminated")


def test_replace_control_plays_a_failed_ec2_health_check(autoscaling, box, group):
    """The sandbox's drill control: the group replaces an instance as on an EC2 health check failure."""
    name = group(1)
    old, _state = only_member(autoscaling, name)
    answer = box.call("autoscaling/replace", instance_id=old)
    assert answer["group"] == name
    new, state = only_member(autoscaling, name)
    assert new != old and state == "InService"


# ---- rule 6: update -------------------------------------------------------------------------------------


def test_update_changes_capacity_rebalance_and_the_maintenance_policy(autoscaling, box, group):
    """moto 5.2.5 ignores both on update; AWS changes them and DescribeAutoScalingGroups shows them."""
    name = group(0, CapacityRebalance=False)
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=name,
        CapacityRebalance=True,
        InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 110},
    )
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    assert described["CapacityRebalance"] is True
    assert described["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 110}
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, CapacityRebalance=False)
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    assert (
        described["CapacityRebalance"] is False
        and described["InstanceMaintenancePolicy"]["MinHealthyPercentage"] == 100
    )


def test_update_keeps_the_mixed_instances_policy_it_is_not_given(autoscaling, box, group, template):
    """moto 5.2.5 wipes MixedInstancesPolicy on any update; AWS keeps it."""
    policy = {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateName": template()},
            "Overrides": [{"InstanceType": "m5.large"}],
        },
        "InstancesDistribution": {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0},
    }
    name = group(0, MixedInstancesPolicy=policy)
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, CapacityRebalance=True)
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    assert described["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0
    assert described["CapacityRebalance"] is True


# ---- rule 7: launch settings ------------------------------------------------------------------------------


def test_instances_take_the_templates_metadata_and_market_options(autoscaling, ec2, box, group):
    """moto 5.2.5 ignores both; AWS launches with IMDSv2 required, the hop limit, and as Spot."""
    name = group(
        1,
        template_data={
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled"},
            "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}},
        },
    )
    instance_id, _state = only_member(autoscaling, name)
    described = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert (described["MetadataOptions"]["HttpTokens"], described["MetadataOptions"]["HttpPutResponseHopLimit"]) == (
        "required",
        2,
    )
    assert described.get("InstanceLifecycle") == "spot"


def test_a_template_without_market_options_launches_on_demand(autoscaling, ec2, box, group):
    """moto 5.2.5 agrees: the control case of the test above (no Spot, IMDS tokens optional)."""
    name = group(1)
    instance_id, _state = only_member(autoscaling, name)
    described = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert "InstanceLifecycle" not in described and described["MetadataOptions"]["HttpTokens"] == "optional"


@pytest.mark.parametrize(
    "base, desired, expected", [(0, 1, ["spot"]), (1, 2, ["on-demand", "spot"]), (1, 1, ["on-demand"])]
)
def test_mixed_instances_policy_makes_the_part_above_the_base_spot(
    autoscaling, ec2, box, group, template, base, desired, expected
):
    """moto 5.2.5 launches every instance On-Demand of the template's type; AWS launches Spot above the On-Demand base
    (at 0 % On-Demand above it) and, prioritized, the first override's type."""
    policy = {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateName": template()},
            "Overrides": [{"InstanceType": "m5.large"}, {"InstanceType": "m5a.large"}],
        },
        "InstancesDistribution": {"OnDemandBaseCapacity": base, "OnDemandPercentageAboveBaseCapacity": 0},
    }
    name = group(desired, MixedInstancesPolicy=policy)
    ids = [i for i, _s, _h in members(autoscaling, name)]
    described = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
    assert sorted(i.get("InstanceLifecycle", "on-demand") for i in described) == expected
    assert {i["InstanceType"] for i in described} == {"m5.large"}


# ---- rule 8: controls ---------------------------------------------------------------------------------------


def test_actions_control_lists_pending_actions_with_deadlines(autoscaling, box, group):
    """The sandbox's control: every pending lifecycle action, its token and its modeled deadline."""
    name = group(2, hooks=[hook_spec("warm", HeartbeatTimeout=120)])
    actions = box.call("autoscaling/actions", group=name)["actions"]
    assert sorted(a["instance_id"] for a in actions) == sorted(i for i, _s, _h in members(autoscaling, name))
    tokens = {e["detail"]["LifecycleActionToken"] for e in lifecycle_events(box, LAUNCH_ACTION, name)}
    assert {a["token"] for a in actions} == tokens
    first = actions[0]
    box.advance(60)
    autoscaling.record_lifecycle_action_heartbeat(
        AutoScalingGroupName=name, LifecycleHookName="warm", LifecycleActionToken=first["token"]
    )
    later = {a["token"]: a for a in box.call("autoscaling/actions", group=name)["actions"]}
    assert seconds_between(first["deadline"], later[first["token"]]["deadline"]) == pytest.approx(60, abs=0.01)
    box.advance(61)  # the other action timed out (ABANDON): its replacement waits under a new token
    pending = [a["token"] for a in box.call("autoscaling/actions", group=name)["actions"]]
    assert pending[0] == first["token"] and len(pending) == 2 and not set(pending) & (tokens - {first["token"]})


def test_terminate_control_runs_the_terminate_hook(autoscaling, box, group):
    """The sandbox's drill control: the group itself terminates an instance, through its terminate hook."""
    name = group(1, hooks=[hook_spec("drain", TERMINATE)])
    old, _state = only_member(autoscaling, name)
    answer = box.call("autoscaling/terminate", instance_id=old)
    assert answer["lifecycle_state"] == "Terminating:Wait"
    assert sorted(s for _i, s, _h in members(autoscaling, name)) == ["InService", "Terminating:Wait"]


def test_deleting_a_group_leaves_no_instance_or_action(autoscaling, ec2, box, group):
    """moto 5.2.5 leaves the group's hooks behind; AWS deletes them with the group (ForceDelete skips the hooks)."""
    name = group(1, hooks=[hook_spec("warm"), hook_spec("drain", TERMINATE)])
    instance_id, _state = only_member(autoscaling, name)
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
    assert ec2_state(ec2, instance_id) in ("shutting-down", "terminated")
    assert box.call("autoscaling/actions", group=name)["actions"] == []
    assert autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"] == []


def test_notification_configurations_are_stored_described_and_deleted(aws, seeded):
    autoscaling, sns = aws("autoscaling"), aws("sns")
    topic = sns.create_topic(Name="autoscaling-notices")["TopicArn"]
    autoscaling.create_launch_configuration(
        LaunchConfigurationName="notify-lc", ImageId=seeded["image_id"], InstanceType="t3.micro"
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="notify",
        LaunchConfigurationName="notify-lc",
        MinSize=0,
        MaxSize=1,
        VPCZoneIdentifier=seeded["subnets"]["us-east-1a"],
    )
    kinds = ["autoscaling:EC2_INSTANCE_TERMINATE", "autoscaling:EC2_INSTANCE_LAUNCH"]
    autoscaling.put_notification_configuration(AutoScalingGroupName="notify", TopicARN=topic, NotificationTypes=kinds)
    described = autoscaling.describe_notification_configurations(AutoScalingGroupNames=["notify"])[
        "NotificationConfigurations"
    ]
    assert [(d["TopicARN"], d["NotificationType"]) for d in described] == [(topic, kind) for kind in sorted(kinds)]
    with pytest.raises(botocore.exceptions.ClientError, match="Invalid notification types"):
        autoscaling.put_notification_configuration(
            AutoScalingGroupName="notify", TopicARN=topic, NotificationTypes=["bogus"]
        )
    with pytest.raises(botocore.exceptions.ClientError, match="not found"):
        autoscaling.put_notification_configuration(
            AutoScalingGroupName="nobody", TopicARN=topic, NotificationTypes=kinds
        )
    autoscaling.delete_notification_configuration(AutoScalingGroupName="notify", TopicARN=topic)
    assert (
        autoscaling.describe_notification_configurations(AutoScalingGroupNames=["notify"])["NotificationConfigurations"]
        == []
    )
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName="notify", ForceDelete=True)
