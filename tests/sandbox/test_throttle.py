"""The ``throttle`` and ``requests`` controls (sandbox/server.py): AWS throttling on demand, requests counted."""

from sandbox.clock import CONTEXT


def test_throttled_requests_are_retried_by_botocore_and_counted(ec2, box):
    box.call("requests", reset=True)
    box.call("throttle", every=2, services=["ec2"])
    try:
        for attempt in range(3):  # noqa: B007 pylint: disable=unused-variable
            ec2.describe_volumes()  # the standard retry mode retries RequestLimitExceeded
    finally:
        state = box.call("throttle")
    assert state["throttled"] == 2 and CONTEXT.records["throttled"][0] == "ec2"
    assert box.call("requests")["requests"]["ec2"] == 5  # three answered, two refused and retried


def test_without_a_rule_nothing_is_throttled(ec2, box):
    box.call("throttle")
    ec2.describe_volumes()
    assert CONTEXT.records.get("throttled", []) == []
