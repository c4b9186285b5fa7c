"""Target groups during a cut-over (issue 20): the instance's right to join its fleet's target groups, and the
sandbox's model of target health (sandbox/rules/target_health.py), table-driven from the ALB user guide's rules."""

import pytest

from sandbox.iam.project_policies import rendered_policies
from sandbox.iam.requests import AuthorizationRequest, Resource, decide


# ---- IAM: the instance joins (and leaves) only its fleet's target groups ------------------------------------------
@pytest.fixture(scope="module")
def web_policy():
    """The fleet scenario's ``web`` fleet, the one with a target group, as roles/fleet renders its instance policy."""
    return rendered_policies()["instance/molecule-web"]


def target_group_call(entry, action, name, group_id):
    facts = entry["facts"]
    resource = Resource.of(
        "elasticloadbalancing", "targetgroup", facts["partition"], facts["region"], facts["account"], name, group_id
    )
    return AuthorizationRequest(action, (resource,))


def test_the_instance_may_register_in_its_fleets_target_group_and_no_other(web_policy):
    (join,) = [s for s in web_policy["document"]["Statement"] if s["Sid"] == "JoinTheFleetsTargetGroups"]
    assert join["Action"] == "elasticloadbalancing:RegisterTargets"
    (arn,) = join["Resource"]
    name, group_id = arn.rsplit(":", 1)[1].split("/")[1:]
    mine = target_group_call(web_policy, "elasticloadbalancing:RegisterTargets", name, group_id)
    assert decide([web_policy["document"]], mine).allowed
    other = target_group_call(web_policy, "elasticloadbalancing:RegisterTargets", "other", group_id)
    assert not decide([web_policy["document"]], other).allowed
    leave = target_group_call(web_policy, "elasticloadbalancing:DeregisterTargets", name, group_id)
    assert decide([web_policy["document"]], leave).allowed


def test_a_fleet_without_target_groups_may_register_nowhere():
    entry = rendered_policies()["instance/molecule-pg"]
    sids = {s["Sid"] for s in entry["document"]["Statement"]}
    assert not {"JoinTheFleetsTargetGroups", "LeaveTheFleetsTargetGroups"} & sids
    call = target_group_call(entry, "elasticloadbalancing:RegisterTargets", "molecule-web", "0123456789abcdef")
    assert not decide([entry["document"]], call).allowed
