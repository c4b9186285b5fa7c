"""Every policy the project ships passes a policy linter, and names only what the Service Authorization Reference has.

The policies are the ones the roles render (sandbox.iam.project_policies: the handler's role, the instance profile
and the FIS role, for the example variables and the molecule scenarios) and every file in docs/iam/. Each passes
parliament with no finding, or with each remaining finding in ALLOWED below, which says why it stays; a
RESOURCE_MISMATCH (a statement granting an action on only some of its required resource types) is accepted only when
the policy as a whole grants the action on every required type. Every action named exists in the catalogue
(sandbox.iam.catalogue), and every condition key is one the reference lists for the statement's actions and
resources, in the action's rows or in the resource type's own table (a key an action does not take is never in the
request, so such a condition never holds on AWS).
"""

import json
import warnings

import pytest

from benchmarks.iam import render_function_policies
from sandbox.iam import catalogue
from sandbox.iam.evaluator import glob_match, parse_operator
from sandbox.iam.project_policies import documented_policies, rendered_policies

with warnings.catch_warnings():
    # parliament 1.6.4 imports pkg_resources, which setuptools 81 marks deprecated.
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", UserWarning)
    import parliament

# (parliament issue, action) -> why the finding stays.
ALLOWED = {
    ("RESOURCE_MISMATCH", "ec2:CreateVolume"): (
        "split on purpose: the new volume (RequestTag lineage, Encrypted) and the source snapshot (ResourceTag) are "
        "conditioned on different keys, so each resource type has its own statement"
    ),
    ("RESOURCE_MISMATCH", "ec2:CreateSnapshots"): (
        "split on purpose: the instance is conditioned on its lineage tag, the volumes and the new snapshots are not "
        "(a new snapshot has no tags yet), so they are two statements"
    ),
    ("RESOURCE_MISMATCH", "ec2:CreateImage"): (
        "split on purpose, as CreateSnapshots: the lineage instance in one statement, the new image and snapshots in "
        "another"
    ),
    ("RESOURCE_MISMATCH", "ec2:RunInstances"): (
        "split on purpose: docs/iam/deploy-fleet-policy.json launches only from a launch template, the new instance "
        "only with its lineage tag (aws:RequestTag) in one statement, what the instance uses (volume, interface, "
        "subnet, security groups, image, template, key pair) in another, which has no request tag to require"
    ),
    ("RESOURCE_MISMATCH", "ssm:SendCommand"): (
        "split on purpose: the document and the lineage instances are two statements; and the document is AWS-owned "
        "(AWS-RunShellScript), whose ARN has no account (arn:aws:ssm:<region>::document/...), which parliament's "
        "format check does not accept"
    ),
    ("RESOURCE_MISMATCH", "fis:CreateExperimentTemplate"): (
        "docs/iam/deploy-fleet-policy.json grants it on the one FIS action a drill uses, "
        "arn:aws:fis:*:*:action/aws:ec2:send-spot-instance-interruptions, whose id holds colons that parliament's "
        "ARN check splits on; the statement does name both required types (the check below holds)"
    ),
    ("RESOURCE_MISMATCH", "fis:UpdateExperimentTemplate"): (
        "split on purpose: docs/iam/deploy-fleet-policy.json updates only templates tagged ec2spot:drill "
        "(KeepTheDrillTemplates), and the FIS action an update names is AWS's, untagged, so it has its own statement "
        "(UpdateWithTheDrillsAction)"
    ),
    ("UNKNOWN_CONDITION_FOR_ACTION", "Unknown condition kms:ResourceAliases for action kms:ScheduleKeyDeletion"): (
        "docs/iam/deploy-policy.json schedules the deletion of the queues' key only (kms:ResourceAliases: its aliases "
        "all alias/*-queue, at least one). The reference lists kms:ResourceAliases in the key resource type's table, "
        "which holds for every operation on a key (AWS KMS developer guide, \"kms:ResourceAliases\": a KMS key "
        "resource operation); parliament reads the action's row only (the check below reads both)"
    ),
    ("RESOURCE_STAR", "cloudwatch:DescribeAlarms"): (
        "docs/iam/modules-policy.json and deploy-fleet-policy.json: a read granted on every alarm like the other "
        "reads beside it (amazon.aws.cloudwatch_metric_alarm describes an alarm before changing it, and looks alarms "
        "up by prefix); the writes are scoped to alarm ARNs"
    ),
}
# Global condition keys (present in every request, not listed per action by the reference).
GLOBAL_KEYS = ("aws:PrincipalArn", "aws:PrincipalAccount", "aws:PrincipalTag/", "aws:RequestedRegion",
               "aws:SourceIp", "aws:SourceVpc", "aws:SourceVpce", "aws:CurrentTime", "aws:EpochTime",
               "aws:SecureTransport", "aws:ViaAWSService", "aws:CalledVia", "aws:MultiFactorAuthPresent")  # fmt: skip


def pattern_policies():
    """The handler's role with its lineages and groups named by pattern (control_plane_lineage_patterns,
    control_plane_group_patterns) for 200 services, a few with a standby or a watchdog."""
    services = [
        {"name": f"shop-{i:03d}", "lineage": f"shop-{i:03d}-data", "group": f"shop-{i:03d}"} for i in range(200)
    ]
    services[0]["standby"] = {"ready_timeout": 300}
    services[1]["watchdog"] = {"mode": "handler", "threshold": 95}
    services[2]["watchdog"] = {"mode": "alarm-reboot", "threshold": 95}
    variables = {"control_plane_lineage_patterns": ["shop-*"], "control_plane_group_patterns": ["shop-*"]}
    (entry,) = render_function_policies([("ec2spot-autorecover", "eu-west-1", services, variables)])
    return {"function/patterns-200": entry["document"]}


def all_policies():
    policies = {name: entry["document"] for name, entry in rendered_policies().items()}
    policies.update(pattern_policies())
    policies.update(documented_policies())
    return policies


POLICIES = all_policies()


def as_list(value):
    return value if isinstance(value, list) else [value]


def findings(document):
    """parliament's findings, one ``(issue, action, detail)`` per action a finding names."""
    policy = parliament.analyze_policy_string(json.dumps(document))
    found = []
    for finding in policy.findings:
        details = finding.detail if isinstance(finding.detail, list) else [finding.detail]
        for detail in details:
            action = detail.get("action") if isinstance(detail, dict) else detail
            found.append((finding.issue, action, detail))
    return found


def overlap(pattern, other):
    """Whether two ARN patterns can name one resource (part by part, either side's wildcards covering the other)."""
    if "*" in (pattern, other):
        return True
    parts, other_parts = pattern.split(":", 5), other.split(":", 5)
    return len(parts) == len(other_parts) == 6 and all(
        glob_match(a, b) or glob_match(b, a) for a, b in zip(parts, other_parts, strict=True)
    )


def granted_on(document, action, required_format):
    """Whether some Allow statement of ``document`` grants ``action`` on a resource of ``required_format``."""
    for statement in document["Statement"]:
        if statement["Effect"] != "Allow" or action not in as_list(statement.get("Action", [])):
            continue
        if any(overlap(required_format, resource) for resource in as_list(statement.get("Resource", []))):
            return True
    return False


def test_there_are_rendered_and_documented_policies():
    assert {name.split("/")[0] for name in POLICIES} == {"function", "instance", "fis", "docs"}
    assert len(POLICIES) >= 8


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_parliament_finds_nothing_unexplained(name):
    document = POLICIES[name]
    unexplained = [(issue, action, detail) for issue, action, detail in findings(document)
                   if (issue, action) not in ALLOWED]  # fmt: skip
    assert unexplained == [], f"{name}: {unexplained}"
    for issue, action, detail in findings(document):
        if issue == "RESOURCE_MISMATCH":
            assert granted_on(document, action, detail["required_format"]), (name, action, detail)


def test_every_allowed_finding_still_occurs():
    occurring = {(issue, action) for document in POLICIES.values() for issue, action, _detail in findings(document)}
    assert set(ALLOWED) - occurring == set(), "remove the allow-list entries that no policy needs any more"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_action_is_in_the_catalogue(name):
    for statement in POLICIES[name]["Statement"]:
        for action in as_list(statement.get("Action", statement.get("NotAction"))):
            assert catalogue.expand(action), f"{name} {statement.get('Sid')}: {action} names no action"
            if "*" not in action and "?" not in action:
                assert catalogue.exists(action), f"{name} {statement.get('Sid')}: {action}"


def resource_rows(found, resources):
    """The resource types of ``found`` a statement's ``Resource`` entries can name (all of them for ``*``)."""
    if "*" in resources:
        return list(found.resources)
    rows = []
    for part in found.resources:
        pattern = catalogue.arn_for(part.resource_type, "*", "*", "*")
        if any(overlap(pattern, resource) for resource in resources):
            rows.append(part)
    return rows


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_condition_key_is_one_the_actions_take(name):
    for statement in POLICIES[name]["Statement"]:
        keys = [key for block in (statement.get("Condition") or {}).values() for key in block]
        if not keys:
            continue
        resources = as_list(statement.get("Resource", "*"))
        for action_name in as_list(statement["Action"]):
            found = catalogue.action(action_name)
            rows = resource_rows(found, resources)
            assert rows or not found.resources, f"{name} {statement['Sid']}: {action_name} on {resources}"
            # The action's keys, each resource row's, and the keys of those resource types' own table (their tags,
            # their service keys such as kms:ResourceAliases: they hold for every action on the type); the table's
            # request keys only where the action's row lists them.
            supported = list(found.condition_keys) + [key for row in rows for key in row.condition_keys]
            supported += [key for row in rows for key in row.resource_type.condition_keys
                          if not key.lower().startswith(("aws:requesttag/", "aws:tagkeys"))]  # fmt: skip
            for key in keys:
                if key.startswith(GLOBAL_KEYS):
                    continue
                assert any(catalogue.key_matches(template, key) for template in supported), (
                    f"{name} {statement['Sid']}: {action_name} does not take condition key {key} on {resources}"
                )


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_condition_operator_is_known(name):
    for statement in POLICIES[name]["Statement"]:
        for operator in statement.get("Condition") or {}:
            parse_operator(operator)
