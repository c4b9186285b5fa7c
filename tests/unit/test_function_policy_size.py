"""The handler's role policy fits IAM's quota however many services the control plane serves (issue 19).

IAM counts all the inline policies of a role together, whitespace not counted, against 10,240 characters (a customer
managed policy: 6,144; IAM User Guide, "IAM and AWS STS quotas"). The control_plane role puts one inline policy,
roles/control_plane/templates/function-policy.json.j2, and attaches no managed policy (the molecule scenario checks
``managed_policies == []``), so the role's inline total is that one document. Naming each lineage and group grows it by
about 290 characters a service: over the quota from about 16 services named as deploy.yml names them, which the role
refuses before it changes anything. Named by pattern (``control_plane_lineage_patterns``,
``control_plane_group_patterns``) it keeps one size, and still refuses every resource outside the patterns.

Rendered as the benchmarks render it (benchmarks/iam.py: the role's template through sandbox.iam.project_policies'
layering of the role's defaults, vars and facts, with the role variables on top), all variants in one child process.
"""

import pytest

from benchmarks.iam import ROLE_POLICY_QUOTA, policy_size, prefix_patterns, render_function_policies
from sandbox.iam.requests import AuthorizationRequest, Resource, decide

MANAGED_POLICY_QUOTA = 6144
NAME, REGION, ACCOUNT = "ec2spot-autorecover", "eu-west-1", "123456789012"
PATTERNS = {"control_plane_lineage_patterns": ["service-*"], "control_plane_group_patterns": ["service-*"]}
COUNTS = (1, 40, 100, 200)


def services(count, options=0):
    """``count`` services as deploy.yml describes them to the handler (the group named after the service); the first
    ``options`` with a standby, as many more with a handler watchdog, as many more with an alarm-reboot watchdog."""
    described = []
    for index in range(count):
        name = f"service-{index:03d}"
        service = {"name": name, "lineage": f"{name}-data", "group": name}
        if index < options:
            service["standby"] = {"ready_timeout": 300}
        elif index < 2 * options:
            service["watchdog"] = {"mode": "handler", "threshold": 95}
        elif index < 3 * options:
            service["watchdog"] = {"mode": "alarm-reboot", "threshold": 95}
        described.append(service)
    return described


def bench_fleet():
    """benchmarks/fleet.py's 100 services: 10 groups of 10 lineages each."""
    return [{"name": f"bench-{g}-{i}", "lineage": f"bench-{g}-{i}", "group": f"bench-fleet-{g}"}
            for g in range(10) for i in range(10)]  # fmt: skip


VARIANTS = {
    **{("named", count): (services(count), {}) for count in COUNTS},
    **{("patterns", count): (services(count), PATTERNS) for count in COUNTS},
    ("patterns", "200 with 10 standbys and 20 watchdogs"): (services(200, options=10), PATTERNS),
    ("patterns", "the bench's fleet"): (bench_fleet(), prefix_patterns(bench_fleet())),
}


@pytest.fixture(scope="module")
def rendered():
    keys = list(VARIANTS)
    documents = render_function_policies([(NAME, REGION, *VARIANTS[key]) for key in keys])
    return {key: entry["document"] for key, entry in zip(keys, documents, strict=True)}


def test_named_lineages_outgrow_the_quota(rendered):
    """Why the patterns exist: one service fits, 100 do not (the role refuses them in its preflight)."""
    assert policy_size(rendered[("named", 1)]) <= ROLE_POLICY_QUOTA
    sizes = [policy_size(rendered[("named", count)]) for count in COUNTS]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert policy_size(rendered[("named", 100)]) > ROLE_POLICY_QUOTA
    assert policy_size(rendered[("named", 200)]) > ROLE_POLICY_QUOTA


@pytest.mark.parametrize("count", COUNTS)
def test_patterns_fit_the_role_quota_at_any_count(rendered, count):
    """The role's inline total (its one policy) within 10,240 characters, and the same size for 1 or 200 services;
    it would fit a managed policy's 6,144 too."""
    size = policy_size(rendered[("patterns", count)])
    assert size <= ROLE_POLICY_QUOTA
    assert size <= MANAGED_POLICY_QUOTA
    assert size == policy_size(rendered[("patterns", 1)])


@pytest.mark.parametrize("variant", ["200 with 10 standbys and 20 watchdogs", "the bench's fleet"])
def test_other_shapes_fit(rendered, variant):
    assert policy_size(rendered[("patterns", variant)]) <= ROLE_POLICY_QUOTA


def test_the_bench_fleet_is_named_by_its_prefixes():
    assert prefix_patterns(bench_fleet()) == {
        "control_plane_lineage_patterns": ["bench-*"],
        "control_plane_group_patterns": ["bench-fleet-*"],
    }


def test_patterns_replace_every_list_of_lineages_but_the_standby_and_watchdog_ones(rendered):
    for key in (("patterns", 200), ("patterns", "200 with 10 standbys and 20 watchdogs")):
        for statement in rendered[key]["Statement"]:
            for operator, block in statement.get("Condition", {}).items():
                for condition_key, values in block.items():
                    if condition_key.endswith("ec2spot:lineage") and "ec2:StartInstances" not in statement["Action"] \
                            and "ec2:RebootInstances" not in statement["Action"]:  # fmt: skip
                        assert (operator, values) == ("StringLike", ["service-*"]), statement["Sid"]
    starts = [s for s in rendered[("patterns", "200 with 10 standbys and 20 watchdogs")]["Statement"]
              if s["Action"] == ["ec2:StartInstances"]]  # fmt: skip
    assert [s["Condition"] for s in starts] == [
        {"StringEquals": {"aws:ResourceTag/ec2spot:lineage": [f"service-{i:03d}-data" for i in range(10)]}}
    ]


# ---- the 200 services' policy still refuses what is not theirs (tests/sandbox/test_iam_policies.py has every call)
def ec2(type_name, *ids, tags=None, keys=None, created=False):
    return Resource.of("ec2", type_name, "aws", REGION, ACCOUNT, *ids, tags=tags or {}, keys=keys or {},
                       created=created)  # fmt: skip


def detach(lineage):
    tags = {"ec2spot:lineage": lineage} if lineage else {}
    return AuthorizationRequest(
        "ec2:DetachVolume", (ec2("volume", "vol-1", tags=tags), ec2("instance", "i-1", tags=tags))
    )


def restore(lineage):
    return AuthorizationRequest("ec2:CreateVolume", (
        ec2("volume", created=True, keys={"ec2:Encrypted": True}),
        ec2("snapshot", "snap-1", tags={"ec2spot:lineage": "service-150-data", "ec2spot:managed-by": "ec2spot.autorecover"},
            keys={"ec2:Encrypted": True})),
        request_tags={"ec2spot:lineage": lineage, "ec2spot:managed-by": "ec2spot.autorecover"})  # fmt: skip


def prune(tags):
    return AuthorizationRequest("ec2:DeleteSnapshot", (ec2("snapshot", "snap-1", tags=tags),))


def lifecycle(group):
    return AuthorizationRequest("autoscaling:CompleteLifecycleAction", (
        Resource.of("autoscaling", "autoScalingGroup", "aws", REGION, ACCOUNT, "0f1e-uuid", group),))  # fmt: skip


def stop_command(lineage):
    return AuthorizationRequest("ssm:SendCommand", (
        Resource("document", f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript"),
        Resource.of("ssm", "instance", "aws", REGION, ACCOUNT, "i-1", tags={"ec2spot:lineage": lineage})))  # fmt: skip


@pytest.mark.parametrize(
    ("call", "request_", "allowed"),
    [
        ("detach a configured lineage's volume", detach("service-150-data"), True),
        ("detach another lineage's volume", detach("other"), False),
        ("detach an untagged volume", detach(None), False),
        ("restore for a configured lineage", restore("service-199-data"), True),
        ("restore for another lineage", restore("other-data"), False),
        ("delete a managed backup", prune({"ec2spot:lineage": "service-150-data",
                                           "ec2spot:managed-by": "ec2spot.autorecover"}), True),
        ("delete an unmanaged backup", prune({"ec2spot:lineage": "service-150-data"}), False),
        ("delete another lineage's managed backup", prune({"ec2spot:lineage": "other",
                                                           "ec2spot:managed-by": "ec2spot.autorecover"}), False),
        ("drive a configured group", lifecycle("service-150"), True),
        ("drive another group", lifecycle("other-fleet"), False),
        ("stop a configured lineage", stop_command("service-150-data"), True),
        ("stop another lineage", stop_command("other"), False),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)  # fmt: skip
def test_the_200_services_policy_keeps_its_scope(rendered, call, request_, allowed):
    assert decide([rendered[("patterns", 200)]], request_).allowed is allowed, call
