"""The shipped IAM policies (docs/iam/) are valid JSON that fits a managed policy, write on every resource only where
AWS offers nothing narrower, and never delete beyond the collection's own resources.

The delete rule, precisely: no delete on every resource (``*``); an EC2 delete only of what carries the collection's
tag (``aws:ResourceTag/ec2spot:managed-by``); any other delete only of resources named by the collection's naming (a
fixed part of the names the roles and playbooks give, in the resource pattern or in a key naming the resource such as
``kms:ResourceAliases``), or carrying a tag the collection sets on what it creates (Auto Scaling groups, the
control plane's function, log group and topic, drill templates: their names and ids are not ours). KNOWN_GAPS lists
the statements that do not hold it yet, each with what would close it: they are expected failures, and each is
checked to be one still (none today).
"""

import json
import pathlib
import re

import pytest

from sandbox.iam import catalogue

POLICIES = sorted((pathlib.Path(__file__).parents[2] / "docs" / "iam").glob("*.json"))
READ_ONLY_PREFIXES = ("Describe", "Get", "List")
# A customer managed policy holds at most 6,144 characters; IAM does not count white space (IAM User Guide, "IAM and
# AWS STS quotas").
MANAGED_POLICY_CHARACTERS = 6144

# What removes a resource: the Delete/Deregister/Terminate/Release actions, and kms:ScheduleKeyDeletion (KMS deletes
# a key only after a waiting period, but nothing stops it but a call during that period).
DESTRUCTIVE_PREFIXES = ("Delete", "Deregister", "Terminate", "Release")
DESTRUCTIVE_ACTIONS = frozenset({"kms:ScheduleKeyDeletion"})
MANAGED_BY = {"aws:ResourceTag/ec2spot:managed-by": "ec2spot.autorecover"}
# The tags the collection sets on what it creates: ec2spot:managed-by on the fleet's groups, launch templates, volumes
# and addresses, on the control plane's resources (roles/control_plane/vars/main.yml) and on the recovery's volumes,
# snapshots and images (roles/fleet/vars/main.yml, plugins/module_utils/recovery/tags.py);
# ec2spot:drill on the drill templates (plugins/module_utils/recovery/drill.py).
OUR_TAGS = {**MANAGED_BY, "aws:ResourceTag/ec2spot:drill": "spot-interruption"}
# The fixed parts of the names the collection gives (roles/*/vars/main.yml, playbooks/): the IAM roles and profile
# <control plane>-function, <service>-instance and <service>-fis; the queues <control plane>-events(-dlq), the key's
# alias alias/<control plane>-queue; the rules <control plane>-<purpose> (control_plane_rule_names, backup.yml's
# -backup-<service>, destroy.yml's -scheduled-backup, the standby's and the watchdog's); the alarms
# <...>-monitoring-*, <service>-drill-stop, <group>-step-scaling-*, <control plane>-standby-* and -watchdog-*; the
# dashboards ec2spot-*.
OUR_NAMES = ("-function", "-instance", "-fis", "-events", "-queue", "-spot-interruption", "-rebalance-recommendation",
             "-lifecycle-action", "-state-change", "-boot-report", "-planned-interruption", "-sweep", "-backup-",
             "-scheduled-backup", "-standby-", "-watchdog-", "-monitoring-", "-drill-stop", "-step-scaling-",
             "ec2spot-")  # fmt: skip
# Condition keys that name the resource an action acts on (its aliases): a pattern on them names it as its ARN would.
NAMING_KEYS = frozenset({"kms:ResourceAliases"})

# (policy file, Sid) -> why its delete is not limited to our resources yet, and what would close it. Empty: every
# delete holds the rule (issue 19 closed the last ones: the control plane and the launch template tagged, the step
# scaling alarms named -step-scaling-, the queue's mapping never deleted).
KNOWN_GAPS = {}


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements():
    """``(file name, statement)`` of every shipped policy."""
    return [(path.name, statement) for path in POLICIES for statement in json.loads(path.read_text())["Statement"]]


def destructive(actions):
    return [a for a in actions if a in DESTRUCTIVE_ACTIONS or a.split(":")[1].startswith(DESTRUCTIVE_PREFIXES)]


def names_ours(resource):
    """Whether a resource pattern names only resources of the collection's naming (its name, after the resource type,
    holds a fixed part of OUR_NAMES)."""
    if resource == "*":
        return False
    name = re.sub(r"^[A-Za-z-]+[/:]", "", resource.split(":", 5)[5])
    return any(part in name for part in OUR_NAMES)


def tagged_ours(condition, tags=None):
    """Whether ``condition`` requires one of ``tags`` (default: OUR_TAGS) with its value."""
    wanted = OUR_TAGS if tags is None else tags
    return any(condition.get("StringEquals", {}).get(key) == value for key, value in wanted.items())


def named_by_a_key(condition):
    """A condition naming the resource by a key such as kms:ResourceAliases: each of its values ours, at least one."""
    found = []
    for operator in ("ForAnyValue:StringLike", "ForAllValues:StringLike"):
        values = [v for key, value in condition.get(operator, {}).items() if key in NAMING_KEYS for v in as_list(value)]
        found.append(bool(values) and all(any(part in v for part in OUR_NAMES) for v in values))
    return all(found)


def delete_rule_violations(name, statement):
    """Why ``statement``'s deletes break the delete rule (the module's docstring); empty when they hold it."""
    actions = as_list(statement["Action"])
    deletes = destructive(actions)
    if not deletes:
        return []
    resources = as_list(statement["Resource"])
    condition = statement.get("Condition") or {}
    where = f"{name} {statement['Sid']} {deletes}"
    if "*" in resources:
        return [f"{where}: on every resource"]
    if deletes == ["ec2:DeleteTags"]:
        # Removing tags deletes no resource: only named keys, only on the lineage's resources.
        if condition.get("Null") != {"aws:ResourceTag/ec2spot:lineage": "false"} or condition.get(
            "ForAllValues:StringEquals", {}
        ).get("aws:TagKeys") != ["ec2spot:previous-holder"]:
            return [f"{where}: removes other tags than ec2spot:previous-holder, or off the lineages' resources"]
        return []
    problems = []
    if any(a.startswith("ec2:") for a in deletes) and not tagged_ours(condition, MANAGED_BY):
        problems.append(f"{where}: an EC2 delete without aws:ResourceTag/ec2spot:managed-by = ec2spot.autorecover")
    others = [a for a in deletes if not a.startswith("ec2:")]
    if others and not (tagged_ours(condition) or named_by_a_key(condition)):
        problems += [f"{where}: {r} is not named by our naming" for r in resources if not names_ours(r)]
    return problems


def test_there_are_policies():
    assert POLICIES


def test_each_policy_fits_a_managed_policy():
    for path in POLICIES:
        document = json.loads(path.read_text())
        assert document["Version"] == "2012-10-17"
        size = len(json.dumps(document, separators=(",", ":")))
        assert size <= MANAGED_POLICY_CHARACTERS, f"{path.name}: {size} characters"


def test_no_write_on_every_resource_but_where_aws_offers_nothing_narrower():
    """A write on ``*`` only for an action the reference gives no resource type (AWS accepts nothing else there), and
    then only under a condition on each key the reference offers that names what it acts on (an ARN key such as
    lambda:FunctionArn, the function an event source mapping invokes)."""
    for name, statement in statements():
        actions = as_list(statement["Action"])
        assert all("*" not in action for action in actions), (name, statement["Sid"])
        if "*" not in as_list(statement["Resource"]):
            continue
        conditioned = {key for block in (statement.get("Condition") or {}).values() for key in block}
        for action in actions:
            if action.split(":")[1].startswith(READ_ONLY_PREFIXES):
                continue
            found = catalogue.action(action)
            assert not found.resources, f"{name} {statement['Sid']} grants {action} on every resource: name them"
            naming = [key for key in found.condition_keys if catalogue.key_type(key) == "ARN"]
            assert set(naming) <= conditioned, f"{name} {statement['Sid']}: {action} on * without {naming}"


def test_every_delete_is_limited_to_our_resources():
    found = [
        problem
        for name, statement in statements()
        if (name, statement["Sid"]) not in KNOWN_GAPS
        for problem in delete_rule_violations(name, statement)
    ]
    assert found == []


def test_the_known_gaps_are_statements_that_exist_and_never_delete_on_every_resource():
    sids = {(name, statement["Sid"]): statement for name, statement in statements()}
    for gap in KNOWN_GAPS:
        assert gap in sids, f"{gap} names no statement: remove it from KNOWN_GAPS"
        statement = sids[gap]
        assert destructive(as_list(statement["Action"])), gap
        assert "*" not in as_list(statement["Resource"]), gap


@pytest.mark.parametrize(
    "gap", [pytest.param(gap, marks=pytest.mark.xfail(strict=True, reason=why)) for gap, why in KNOWN_GAPS.items()]
)
def test_a_known_gap_still_breaks_the_delete_rule(gap):
    """Expected to fail while the gap is open; once a statement holds the rule this passes, which (strict) fails the
    run: then remove the statement from KNOWN_GAPS."""
    statement = next(s for name, s in statements() if (name, s["Sid"]) == gap)
    assert delete_rule_violations(gap[0], statement) == []


@pytest.mark.parametrize(
    ("statement", "broken"),
    [
        ({"Action": "sns:DeleteTopic", "Resource": "*"}, True),
        ({"Action": "ec2:DeleteVolume", "Resource": "arn:aws:ec2:*:*:volume/*"}, True),
        ({"Action": "ec2:DeleteVolume", "Resource": "arn:aws:ec2:*:*:volume/*",
          "Condition": {"StringEquals": MANAGED_BY}}, False),
        ({"Action": "ec2:ReleaseAddress", "Resource": "arn:aws:ec2:*:*:elastic-ip/*",
          "Condition": {"StringEquals": {"aws:ResourceTag/ec2spot:drill": "spot-interruption"}}}, True),
        ({"Action": "lambda:DeleteFunction", "Resource": "arn:aws:lambda:*:*:function:*"}, True),
        ({"Action": "events:DeleteRule", "Resource": "arn:aws:events:*:*:rule/*-sweep"}, False),
        ({"Action": "events:DeleteRule", "Resource": ["arn:aws:events:*:*:rule/*-sweep", "arn:aws:events:*:*:rule/*"]},
         True),
        ({"Action": "iam:DeleteRole", "Resource": "arn:aws:iam::*:role/*-function"}, False),
        ({"Action": "logs:DeleteLogGroup", "Resource": "arn:aws:logs:*:*:log-group:/aws/lambda/*"}, True),
        ({"Action": "autoscaling:DeleteAutoScalingGroup",
          "Resource": "arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/*",
          "Condition": {"StringEquals": MANAGED_BY}}, False),
        ({"Action": "kms:ScheduleKeyDeletion", "Resource": "arn:aws:kms:*:*:key/*"}, True),
        ({"Action": "kms:ScheduleKeyDeletion", "Resource": "arn:aws:kms:*:*:key/*",
          "Condition": {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/*-queue"}}}, True),
        ({"Action": "kms:ScheduleKeyDeletion", "Resource": "arn:aws:kms:*:*:key/*",
          "Condition": {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/*-queue"},
                        "ForAllValues:StringLike": {"kms:ResourceAliases": "alias/*-queue"}}}, False),
        ({"Action": "ec2:DeleteTags", "Resource": "arn:aws:ec2:*:*:volume/*",
          "Condition": {"Null": {"aws:ResourceTag/ec2spot:lineage": "false"}}}, True),
    ],
)  # fmt: skip
def test_the_delete_rule_itself(statement, broken):
    assert bool(delete_rule_violations("example.json", {"Sid": "Example", **statement})) is broken
