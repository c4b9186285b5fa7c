"""Elastic IP moves, group targets, standby start, and throttling-safe calls."""

import pytest
from botocore.awsrequest import AWSResponse

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import errors
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.addresses import find_address, move_address
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import call, paginate, wait_until
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.instances import (
    ensure_running,
    healthy_group_instance,
)
from sandbox import world as sandbox_world


@pytest.fixture
def eip(ec2):
    return ec2.allocate_address(
        Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "Service", "Value": "pg"}]}]
    )


def test_find_address_by_each_key(ec2, eip):
    assert find_address(ec2, allocation_id=eip["AllocationId"])["PublicIp"] == eip["PublicIp"]
    assert find_address(ec2, public_ip=eip["PublicIp"])["AllocationId"] == eip["AllocationId"]
    assert find_address(ec2, address_tags={"Service": "pg"})["AllocationId"] == eip["AllocationId"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, errors.InvalidInput, "exactly one of allocation_id, public_ip or tags"),
        ({"public_ip": "not-an-ip"}, errors.InvalidInput, "is not an IPv4 address"),
        ({"address_tags": {"Service": "nope"}}, errors.NotFound, "no Elastic IP with tags"),
        ({"allocation_id": "eipalloc-00000000000000000"}, errors.NotFound, "no Elastic IP with allocation id"),
    ],
)
def test_find_address_refuses_bad_or_unknown_names(ec2, eip, kwargs, error, message):
    with pytest.raises(error, match=message):
        find_address(ec2, **kwargs)


def test_find_address_refuses_ambiguous_tags(ec2, eip):
    ec2.allocate_address(
        Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "Service", "Value": "pg"}]}]
    )
    with pytest.raises(errors.Ambiguous, match="2 Elastic IPs match"):
        find_address(ec2, address_tags={"Service": "pg"})


def test_move_is_idempotent_and_reassociation_is_explicit(ec2, eip, launch):
    first, second = launch(), launch("us-east-1b")
    move = move_address(ec2, find_address(ec2, allocation_id=eip["AllocationId"]), first)
    assert move.changed and move.previous_instance_id is None
    assert not move_address(ec2, find_address(ec2, allocation_id=eip["AllocationId"]), first).changed

    with pytest.raises(errors.Conflict, match=f"is associated with {first}; set allow_reassociation"):
        move_address(ec2, find_address(ec2, allocation_id=eip["AllocationId"]), second)
    assert ec2.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"][0]["InstanceId"] == first

    planned = move_address(
        ec2, find_address(ec2, allocation_id=eip["AllocationId"]), second, allow_reassociation=True, dry_run=True
    )
    assert planned.changed
    assert ec2.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"][0]["InstanceId"] == first

    moved = move_address(ec2, find_address(ec2, allocation_id=eip["AllocationId"]), second, allow_reassociation=True)
    assert moved.changed and moved.previous_instance_id == first
    assert ec2.describe_addresses(AllocationIds=[eip["AllocationId"]])["Addresses"][0]["InstanceId"] == second


def test_standby_is_started_and_a_running_one_left_alone(ec2, launch, clock):
    standby = launch(state="stopped")
    instance, started = ensure_running(ec2, standby, dry_run=False, timeout=30, clock=clock)
    assert started and instance["State"]["Name"] == "running"
    started_again = ensure_running(ec2, standby, dry_run=False, timeout=30, clock=clock)[1]
    assert not started_again


def test_terminated_standby_is_refused(ec2, launch, clock):
    gone = launch()
    ec2.terminate_instances(InstanceIds=[gone])
    with pytest.raises(errors.InvalidInput, match="is terminated; it cannot be started"):
        ensure_running(ec2, gone, dry_run=False, timeout=30, clock=clock)


def test_group_target_must_be_exactly_one_healthy_instance(ec2, autoscaling, world):
    only = sandbox_world.group(ec2, autoscaling, world, "pg-fleet", max_size=2)
    assert healthy_group_instance(autoscaling, "pg-fleet") == only
    autoscaling.set_desired_capacity(AutoScalingGroupName="pg-fleet", DesiredCapacity=2)
    with pytest.raises(errors.Ambiguous, match="has 2 healthy InService instances"):
        healthy_group_instance(autoscaling, "pg-fleet")
    with pytest.raises(errors.NotFound, match="Auto Scaling group nope does not exist"):
        healthy_group_instance(autoscaling, "nope")


def throttle(client, times):
    """Answer the next ``times`` requests with AWS's throttling error, as a busy account would."""
    budget = {"left": times, "seen": 0}

    def respond(request, **_):
        budget["seen"] += 1
        if budget["left"] > 0:
            budget["left"] -= 1
            body = (
                b'<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.'
                b'</Message></Error></Errors><RequestID>x</RequestID></Response>'
            )
            return AWSResponse(request.url, 503, {}, _Raw(body))
        return None

    client.meta.events.register("before-send.ec2", respond)
    return budget


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **_):
        yield self._body


@pytest.fixture
def no_backoff_sleep(monkeypatch):
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)


def test_throttled_calls_are_retried_by_botocore(ec2, world, no_backoff_sleep):
    budget = throttle(ec2, 3)
    vpcs = call(ec2, "describe_vpcs")["Vpcs"]
    assert vpcs and budget["seen"] == 4


def test_persistent_throttling_surfaces_as_a_precise_error(ec2, world, no_backoff_sleep):
    throttle(ec2, 100)
    with pytest.raises(errors.AwsApiError, match="describe_vpcs failed: RequestLimitExceeded") as caught:
        call(ec2, "describe_vpcs")
    assert caught.value.aws_code == "RequestLimitExceeded"


def test_wait_until_polls_fast_then_backs_off_and_times_out(clock):
    with pytest.raises(errors.WaitTimeout, match="timed out after 10s waiting for nothing"):
        wait_until(lambda: None, lambda _: False, "nothing", 10, clock)
    assert clock.slept[0] <= 0.3 and max(clock.slept) <= 1.0
    assert sum(clock.slept) == pytest.approx(10, abs=0.01)


def test_a_connection_lost_while_paging_is_the_cores_error_not_a_bare_botocore_one(ec2, world, no_backoff_sleep):
    """The second page's request times out on every attempt: ``paginate`` raises ``AwsApiError`` naming the
    operation and botocore's words, as ``call`` does (a module then fails cleanly instead of a traceback)."""
    from botocore.exceptions import ReadTimeoutError

    for unused in range(6):  # more than one page: the sandbox pages DescribeVolumes by 5
        ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)
    sent = {"requests": 0, "timed_out": 0}

    def time_out_after_the_first_page(request, **unused):
        sent["requests"] += 1
        if sent["requests"] > 1:
            sent["timed_out"] += 1
            raise ReadTimeoutError(endpoint_url=request.url)

    ec2.meta.events.register_first("before-send.ec2.DescribeVolumes", time_out_after_the_first_page)

    with pytest.raises(errors.AwsApiError, match="describe_volumes failed: Read timeout on endpoint URL") as caught:
        list(paginate(ec2, "describe_volumes", "Volumes"))
    assert caught.value.details["botocore_error"] == "ReadTimeoutError" and caught.value.aws_code is None
    assert sent["timed_out"] > 1  # botocore retried the next page first, then gave up
