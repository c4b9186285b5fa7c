"""The IAM evaluator, as tables: every condition operator and modifier, the decision order (explicit Deny over
Allow over implicit deny), Action/NotAction, Resource/NotResource, ARN and action wildcards, missing keys with and
without IfExists, Null; then the catalogue, the authorisation requests built from it and the denials."""

import pytest

from sandbox.iam import catalogue
from sandbox.iam.evaluator import Decision, PolicyError, arn_match, condition_holds, evaluate, parse_operator
from sandbox.iam.requests import (
    AccessDenied,
    AuthorizationRequest,
    Resource,
    attribute_keys,
    authorize,
    decide,
    denial_code,
    ec2_keys,
    tagging_on_create,
)

VOLUME = "arn:aws:ec2:eu-west-1:123456789012:volume/vol-1"
ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


# ---- condition operators: (operator, policy values, context value or MISSING, holds) ----------------------------
MISSING = object()
CONDITIONS = [
    # String: case-sensitive, exact; IgnoreCase; Like with * and ?; several policy values are alternatives.
    ("StringEquals", "pgdata", "pgdata", True),
    ("StringEquals", "pgdata", "PGDATA", False),
    ("StringEquals", "pg*", "pgdata", False),
    ("StringEquals", ["a", "pgdata"], "pgdata", True),
    ("StringEquals", "true", True, True),
    ("StringEquals", "pgdata", MISSING, False),
    ("StringNotEquals", "pgdata", "other", True),
    ("StringNotEquals", "pgdata", "pgdata", False),
    ("StringNotEquals", ["a", "b"], "b", False),
    ("StringNotEquals", "pgdata", MISSING, True),
    ("StringEqualsIgnoreCase", "PgData", "pgdata", True),
    ("StringEqualsIgnoreCase", "pgdata", "other", False),
    ("StringNotEqualsIgnoreCase", "PgData", "pgdata", False),
    ("StringNotEqualsIgnoreCase", "PgData", "other", True),
    ("StringLike", "ec2spot:progress:*", "ec2spot:progress:detach", True),
    ("StringLike", "ec2spot:progress:*", "ec2spot:fresh", False),
    ("StringLike", "vol-?", "vol-1", True),
    ("StringLike", "vol-?", "vol-12", False),
    ("StringLike", "*", "", True),
    ("StringLike", "PG*", "pgdata", False),
    ("StringNotLike", "pg*", "pgdata", False),
    ("StringNotLike", "pg*", "cache", True),
    ("StringNotLike", "pg*", MISSING, True),
    # Numeric.
    ("NumericEquals", "10", 10, True),
    ("NumericEquals", "10", "10.0", True),
    ("NumericEquals", "10", 11, False),
    ("NumericNotEquals", "10", 11, True),
    ("NumericNotEquals", "10", 10, False),
    ("NumericLessThan", "100", 99, True),
    ("NumericLessThan", "100", 100, False),
    ("NumericLessThanEquals", "100", 100, True),
    ("NumericLessThanEquals", "100", 101, False),
    ("NumericGreaterThan", "100", 101, True),
    ("NumericGreaterThan", "100", 100, False),
    ("NumericGreaterThanEquals", "100", 100, True),
    ("NumericGreaterThanEquals", "100", 99, False),
    ("NumericEquals", "10", "ten", False),
    ("NumericEquals", "10", True, False),
    ("NumericLessThan", "100", MISSING, False),
    # Date: ISO 8601 or epoch seconds, compared as instants.
    ("DateEquals", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", True),
    ("DateEquals", "2026-01-01T00:00:00Z", "1767225600", True),
    ("DateNotEquals", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", True),
    ("DateNotEquals", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", False),
    ("DateLessThan", "2026-01-01T00:00:00Z", "2025-12-31T23:59:59Z", True),
    ("DateLessThan", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", False),
    ("DateLessThanEquals", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", True),
    ("DateLessThanEquals", "2026-01-01", "2026-01-01T00:00:01Z", False),
    ("DateGreaterThan", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", True),
    ("DateGreaterThan", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", False),
    ("DateGreaterThanEquals", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", True),
    ("DateGreaterThanEquals", "2026-01-01T00:00:00Z", "2025-01-01T00:00:00Z", False),
    ("DateEquals", "2026-01-01T00:00:00Z", "yesterday", False),
    # Bool, without case; a value that is not a boolean matches nothing.
    ("Bool", "true", True, True),
    ("Bool", "true", "TRUE", True),
    ("Bool", "true", False, False),
    ("Bool", "false", "false", True),
    ("Bool", True, "true", True),
    ("Bool", "true", "yes", False),
    ("Bool", "true", MISSING, False),
    # Binary (base64), IP address.
    ("BinaryEquals", "QmluYXJ5", "QmluYXJ5", True),
    ("BinaryEquals", "QmluYXJ5", "T3RoZXI=", False),
    ("BinaryEquals", "QmluYXJ5", "not base64!", False),
    ("IpAddress", "203.0.113.0/24", "203.0.113.7", True),
    ("IpAddress", "203.0.113.0/24", "198.51.100.7", False),
    ("IpAddress", "2001:db8::/32", "2001:db8::1", True),
    ("IpAddress", "203.0.113.0/24", "not an address", False),
    ("NotIpAddress", "203.0.113.0/24", "198.51.100.7", True),
    ("NotIpAddress", "203.0.113.0/24", "203.0.113.7", False),
    # ARN operators: both take wildcards, part by part.
    ("ArnEquals", "arn:aws:sns:*:123456789012:alerts", "arn:aws:sns:eu-west-1:123456789012:alerts", True),
    ("ArnLike", "arn:aws:sns:*:123456789012:*", "arn:aws:sns:eu-west-1:123456789012:alerts", True),
    ("ArnLike", "arn:aws:sns:*:123456789012:*", "arn:aws:sns:eu-west-1:999999999999:alerts", False),
    ("ArnLike", "arn:aws:sns:*:*:alerts", "arn:aws:sqs:eu-west-1:123456789012:alerts", False),
    ("ArnNotEquals", "arn:aws:sns:*:*:alerts", "arn:aws:sns:eu-west-1:123456789012:other", True),
    ("ArnNotLike", "arn:aws:sns:*:*:alerts", "arn:aws:sns:eu-west-1:123456789012:alerts", False),
    ("ArnLike", "arn:aws:sns:*:*:alerts", MISSING, False),
    ("ArnLike", "arn:aws:sns:*:alerts", "arn:aws:sns:eu-west-1:123456789012:alerts", False),
    ("ArnLike", "arn:aws:sns:*:*:alerts", "alerts", False),
    ("ArnNotLike", "arn:aws:sns:*:*:alerts", MISSING, True),
    # IfExists: a missing key holds; a present one is compared as without IfExists.
    ("StringEqualsIfExists", "pgdata", MISSING, True),
    ("StringEqualsIfExists", "pgdata", "pgdata", True),
    ("StringEqualsIfExists", "pgdata", "other", False),
    ("BoolIfExists", "true", MISSING, True),
    ("BoolIfExists", "true", False, False),
    ("NumericLessThanIfExists", "10", MISSING, True),
    ("NumericLessThanIfExists", "10", 20, False),
    ("DateLessThanIfExists", "2026-01-01", MISSING, True),
    ("ArnLikeIfExists", "arn:aws:sns:*:*:x", MISSING, True),
    ("StringNotEqualsIfExists", "pgdata", "pgdata", False),
    # Null: true holds for a missing key (or an empty list), false for a present one.
    ("Null", "true", MISSING, True),
    ("Null", "true", "pgdata", False),
    ("Null", "false", "pgdata", True),
    ("Null", "false", MISSING, False),
    ("Null", "true", [], True),
    ("Null", False, "", True),
    # Multivalued context keys (aws:TagKeys). Plain operators: any value; negated: none.
    ("StringEquals", "ec2spot:fresh", ["ec2spot:fresh", "Name"], True),
    ("StringNotEquals", "ec2spot:fresh", ["ec2spot:fresh", "Name"], False),
    ("StringNotEquals", "ec2spot:fresh", ["Name", "Owner"], True),
    # ForAllValues: every context value matches some policy value; an empty or missing key holds.
    ("ForAllValues:StringEquals", ["ec2spot:fresh"], ["ec2spot:fresh"], True),
    ("ForAllValues:StringEquals", ["ec2spot:fresh"], ["ec2spot:fresh", "Name"], False),
    ("ForAllValues:StringEquals", ["ec2spot:fresh", "Name"], ["Name"], True),
    ("ForAllValues:StringLike", ["ec2spot:progress:*"], ["ec2spot:progress:a", "ec2spot:progress:b"], True),
    ("ForAllValues:StringLike", ["ec2spot:progress:*"], ["ec2spot:progress:a", "ec2spot:lineage"], False),
    ("ForAllValues:StringEquals", ["ec2spot:fresh"], [], True),
    ("ForAllValues:StringEquals", ["ec2spot:fresh"], MISSING, True),
    ("ForAllValues:StringNotEquals", ["ec2spot:lineage"], ["a", "b"], True),
    ("ForAllValues:StringNotEquals", ["ec2spot:lineage"], ["a", "ec2spot:lineage"], False),
    ("ForAllValues:StringEqualsIfExists", ["a"], MISSING, True),
    # ForAnyValue: one context value matches; an empty or missing key does not hold.
    ("ForAnyValue:StringEquals", ["ec2spot:lineage"], ["Name", "ec2spot:lineage"], True),
    ("ForAnyValue:StringEquals", ["ec2spot:lineage"], ["Name"], False),
    ("ForAnyValue:StringEquals", ["ec2spot:lineage"], [], False),
    ("ForAnyValue:StringEquals", ["ec2spot:lineage"], MISSING, False),
    ("ForAnyValue:StringLike", ["ec2spot:*"], ["Name", "ec2spot:x"], True),
    ("ForAnyValue:StringNotEquals", ["ec2spot:lineage"], ["ec2spot:lineage", "Name"], True),
    ("ForAnyValue:StringNotEquals", ["ec2spot:lineage"], ["ec2spot:lineage"], False),
    ("ForAnyValue:NumericGreaterThan", "5", [1, 7], True),
    ("ForAllValues:NumericGreaterThan", "5", [1, 7], False),
]


@pytest.mark.parametrize(("operator", "expected", "actual", "holds"), CONDITIONS)
def test_condition_operator(operator, expected, actual, holds):
    context = {} if actual is MISSING else {"test:Key": actual}
    assert condition_holds(operator, "test:Key", expected, context) is holds


def test_every_operator_is_in_the_table():
    """No operator without a row: each base operator appears plain, and IfExists and both set operators appear."""
    bases = {parse_operator(row[0])[1] for row in CONDITIONS}
    assert bases == {
        "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike",
        "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
        "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals", "DateNotEquals", "DateLessThan",
        "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals", "Bool", "BinaryEquals", "IpAddress",
        "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Null",
    }  # fmt: skip
    modifiers = {parse_operator(row[0])[0::2] for row in CONDITIONS}
    assert {(None, True), ("ForAllValues", False), ("ForAnyValue", False), ("ForAllValues", True)} <= modifiers


def test_condition_key_names_are_case_insensitive_and_values_are_not():
    context = {"aws:ResourceTag/ec2spot:lineage": "pgdata"}
    assert condition_holds("StringEquals", "AWS:resourcetag/EC2SPOT:LINEAGE", "pgdata", context)
    assert not condition_holds("StringEquals", "aws:ResourceTag/ec2spot:lineage", "PGDATA", context)


@pytest.mark.parametrize(
    ("operator", "message"),
    [
        ("StringEqualz", "unknown condition operator"),
        ("ForEveryValue:StringEquals", "unknown condition set operator"),
        ("NullIfExists", "Null takes neither"),
        ("ForAllValues:Null", "Null takes neither"),
    ],
)
def test_unknown_operators_are_refused(operator, message):
    with pytest.raises(PolicyError, match=message):
        condition_holds(operator, "k", "v", {"k": "v"})


# ---- a whole condition: blocks AND, keys AND, values OR ---------------------------------------------------------
def test_every_block_and_every_key_must_hold():
    statement = {
        "Effect": "Allow",
        "Action": "ec2:CreateVolume",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:RequestTag/ec2spot:lineage": ["pgdata", "cache"], "aws:RequestTag/team": "db"},
            "Bool": {"ec2:Encrypted": "true"},
        },
    }
    good = {"aws:RequestTag/ec2spot:lineage": "cache", "aws:RequestTag/team": "db", "ec2:Encrypted": True}
    assert evaluate([policy(statement)], "ec2:CreateVolume", VOLUME, good).allowed
    for key, value in (
        ("aws:RequestTag/team", "web"),
        ("ec2:Encrypted", False),
        ("aws:RequestTag/ec2spot:lineage", "x"),
    ):
        assert not evaluate([policy(statement)], "ec2:CreateVolume", VOLUME, {**good, key: value}).allowed
    missing = {k: v for k, v in good.items() if k != "ec2:Encrypted"}
    assert not evaluate([policy(statement)], "ec2:CreateVolume", VOLUME, missing).allowed


# ---- decisions --------------------------------------------------------------------------------------------------
TAGGED = {"aws:ResourceTag/ec2spot:lineage": "pgdata"}
DENY_OTHER_LINEAGES = {
    "Effect": "Deny",
    "Action": "ec2:*",
    "Resource": "*",
    "Condition": {"StringNotEquals": {"aws:ResourceTag/ec2spot:lineage": "pgdata"}},
}
DECISIONS = [
    # (policies, action, resource, context, decision)
    ([], "ec2:DetachVolume", VOLUME, {}, Decision.IMPLICIT_DENY),
    ([policy(ALLOW_ALL)], "ec2:DetachVolume", VOLUME, {}, Decision.ALLOW),
    ([policy(ALLOW_ALL, DENY_OTHER_LINEAGES)], "ec2:DetachVolume", VOLUME, TAGGED, Decision.ALLOW),
    ([policy(ALLOW_ALL, DENY_OTHER_LINEAGES)], "ec2:DetachVolume", VOLUME, {}, Decision.EXPLICIT_DENY),
    # An explicit deny in another policy wins whatever the order.
    ([policy(DENY_OTHER_LINEAGES), policy(ALLOW_ALL)], "ec2:DetachVolume", VOLUME, {}, Decision.EXPLICIT_DENY),
    # A Deny that does not match leaves the Allow.
    ([policy(ALLOW_ALL, DENY_OTHER_LINEAGES)], "sns:Publish", "arn:aws:sns:eu-west-1:1:t", {}, Decision.ALLOW),
    # Action names: without case, with wildcards.
    ([policy({"Effect": "Allow", "Action": "EC2:detachvolume", "Resource": "*"})], "ec2:DetachVolume", VOLUME, {},
     Decision.ALLOW),
    ([policy({"Effect": "Allow", "Action": "ec2:Detach*", "Resource": "*"})], "ec2:DetachVolume", VOLUME, {},
     Decision.ALLOW),
    ([policy({"Effect": "Allow", "Action": "ec2:?etachVolume", "Resource": "*"})], "ec2:DetachVolume", VOLUME, {},
     Decision.ALLOW),
    ([policy({"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"})], "ec2:DetachVolume", VOLUME, {},
     Decision.IMPLICIT_DENY),
    ([policy({"Effect": "Allow", "Action": ["sns:Publish", "ec2:DetachVolume"], "Resource": "*"})],
     "ec2:DetachVolume", VOLUME, {}, Decision.ALLOW),
    # NotAction: everything but.
    ([policy({"Effect": "Allow", "NotAction": "ec2:Delete*", "Resource": "*"})], "ec2:DetachVolume", VOLUME, {},
     Decision.ALLOW),
    ([policy({"Effect": "Allow", "NotAction": "ec2:Delete*", "Resource": "*"})], "ec2:DeleteVolume", VOLUME, {},
     Decision.IMPLICIT_DENY),
    ([policy(ALLOW_ALL, {"Effect": "Deny", "NotAction": ["ec2:Describe*"], "Resource": "*"})],
     "ec2:DescribeVolumes", "*", {}, Decision.ALLOW),
    ([policy(ALLOW_ALL, {"Effect": "Deny", "NotAction": ["ec2:Describe*"], "Resource": "*"})],
     "ec2:DetachVolume", VOLUME, {}, Decision.EXPLICIT_DENY),
    # Resource and NotResource.
    ([policy({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ec2:*:*:volume/*"})],
     "ec2:DetachVolume", VOLUME, {}, Decision.ALLOW),
    ([policy({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ec2:*:*:instance/*"})],
     "ec2:DetachVolume", VOLUME, {}, Decision.IMPLICIT_DENY),
    ([policy({"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:ec2:*:*:instance/*"})],
     "ec2:DetachVolume", VOLUME, {}, Decision.ALLOW),
    ([policy({"Effect": "Allow", "Action": "*", "NotResource": ["arn:aws:ec2:*:*:volume/*"]})],
     "ec2:DetachVolume", VOLUME, {}, Decision.IMPLICIT_DENY),
    ([policy(ALLOW_ALL, {"Effect": "Deny", "Action": "*", "NotResource": "arn:aws:ec2:eu-west-1:*:*"})],
     "ec2:DetachVolume", "arn:aws:ec2:us-east-1:123456789012:volume/vol-1", {}, Decision.EXPLICIT_DENY),
    # A statement given as one object rather than a list.
    ({"Version": "2012-10-17", "Statement": ALLOW_ALL}, "ec2:DetachVolume", VOLUME, {}, Decision.ALLOW),
]  # fmt: skip


@pytest.mark.parametrize(("policies", "action", "resource", "context", "decision"), DECISIONS)
def test_decision(policies, action, resource, context, decision):
    policies = [policies] if isinstance(policies, dict) else policies
    result = evaluate(policies, action, resource, context)
    assert result.decision is decision
    assert result.allowed is (decision is Decision.ALLOW)


def test_the_deciding_statement_and_policy_are_named():
    result = evaluate([("base", policy(ALLOW_ALL)), ("fence", policy(DENY_OTHER_LINEAGES))], "ec2:DetachVolume", VOLUME)
    assert (result.policy_name, result.statement["Effect"]) == ("fence", "Deny")
    assert evaluate([("base", policy(ALLOW_ALL))], "ec2:DetachVolume", VOLUME).policy_name == "base"
    assert evaluate([], "ec2:DetachVolume", VOLUME).statement is None


# ---- ARN patterns -----------------------------------------------------------------------------------------------
ARNS = [
    ("*", VOLUME, True),
    (VOLUME, VOLUME, True),
    ("arn:aws:ec2:eu-west-1:123456789012:volume/*", VOLUME, True),
    ("arn:aws:ec2:*:*:volume/*", VOLUME, True),
    ("arn:aws:ec2:*:*:volume/vol-?", VOLUME, True),
    ("arn:aws:ec2:*:*:volume/vol-??", VOLUME, False),
    ("arn:aws:ec2:*:*:instance/*", VOLUME, False),
    ("arn:aws:ec2:us-east-1:123456789012:volume/*", VOLUME, False),
    ("arn:aws:ec2:eu-west-1:999999999999:volume/*", VOLUME, False),
    ("arn:aws:ec2:eu-west-1:123456789012:Volume/*", VOLUME, False),  # case-sensitive
    ("arn:aws:ec2:eu-*:123456789012:volume/*", VOLUME, True),
    # A snapshot's ARN has no account: the pattern's empty account or * matches it.
    ("arn:aws:ec2:eu-west-1::snapshot/*", "arn:aws:ec2:eu-west-1::snapshot/snap-1", True),
    ("arn:aws:ec2:*:*:snapshot/*", "arn:aws:ec2:eu-west-1::snapshot/snap-1", True),
    ("arn:aws:ec2:eu-west-1::snapshot/*", "arn:aws:ec2:eu-west-1:123456789012:snapshot/snap-1", False),
    # In the resource part a * runs over / and :.
    ("arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/f:*",
     "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/f:log-stream:2026/01/01/x", True),
    ("arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/pg",
     "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:0f-1:autoScalingGroupName/pg", True),
    ("arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/pg",
     "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:0f-1:autoScalingGroupName/pg-2", False),
    ("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cp-watchdog-*",
     "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cp-watchdog-web-i-1", True),
    ("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cp-watchdog-*",
     "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:cp-monitoring-web", False),
    ("arn:aws:ssm:eu-west-1::document/AWS-RunShellScript", "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript", True),
]  # fmt: skip


@pytest.mark.parametrize(("pattern", "arn", "matches"), ARNS)
def test_resource_pattern(pattern, arn, matches):
    assert arn_match(pattern, arn) is matches
    statement = {"Effect": "Allow", "Action": "*", "Resource": pattern}
    assert evaluate([policy(statement)], "ec2:DetachVolume", arn).allowed is matches


# ---- documents the evaluator refuses rather than misreads -------------------------------------------------------
@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ({"Effect": "Permit", "Action": "*", "Resource": "*"}, "Effect must be"),
        ({"Effect": "Allow", "Resource": "*"}, "exactly one of Action and NotAction"),
        ({"Effect": "Allow", "Action": "*", "NotAction": "s3:*", "Resource": "*"}, "exactly one of Action"),
        ({"Effect": "Allow", "Action": "*"}, "exactly one of Resource and NotResource"),
        ({"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}, "names no Principal"),
        ({"Effect": "Allow", "Action": "*", "Resource": "*", "Conditions": {}}, "unknown statement element"),
        ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::${aws:username}/*"}, "policy variables"),
        ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ec2:*:volume/*"}, "must be in ARN format"),
        ({"Effect": "Allow", "Action": "*", "NotResource": ["vol-1"]}, "must be in ARN format"),
        ({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"k": "${aws:username}"}}},
         "policy variables"),
        ({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEquals": "k"}}, "must map keys"),
    ],
)  # fmt: skip
def test_malformed_statements_are_refused(statement, message):
    with pytest.raises(PolicyError, match=message):
        evaluate([policy(statement)], "ec2:DetachVolume", VOLUME, {"k": "v"})


def test_a_document_without_statements_is_refused():
    with pytest.raises(PolicyError, match="needs a Statement"):
        evaluate([{"Version": "2012-10-17"}], "ec2:DetachVolume", VOLUME)


# ---- the catalogue ----------------------------------------------------------------------------------------------
def test_the_catalogue_reads_the_service_authorization_reference():
    create_volume = catalogue.action("EC2:createvolume")
    assert create_volume.full_name == "ec2:CreateVolume"
    assert [(part.name, part.required) for part in create_volume.resources] == [("volume", True), ("snapshot", False)]
    assert "ec2:Encrypted" in create_volume.resource("volume").condition_keys
    assert "aws:RequestTag/${TagKey}" in create_volume.resource("volume").condition_keys
    assert "aws:RequestTag/${TagKey}" not in create_volume.resource("snapshot").condition_keys
    assert "ec2:CreateAction" in catalogue.action("ec2:CreateTags").condition_keys
    assert catalogue.action("ec2:DescribeVolumes").resources == ()
    assert (
        catalogue.resource_types("ec2")["snapshot"].arn_format
        == "arn:${Partition}:ec2:${Region}::snapshot/${SnapshotId}"
    )
    assert catalogue.schema_version() == "v2"


def test_an_action_the_reference_does_not_list_is_an_error():
    assert not catalogue.exists("ec2:AttachVolumes")
    with pytest.raises(catalogue.UnknownAction, match="ec2:AttachVolumes"):
        catalogue.action("ec2:AttachVolumes")
    with pytest.raises(catalogue.UnknownAction):
        AuthorizationRequest("ec2:AttachVolumes").checks()


def test_action_patterns_expand_to_reference_names():
    assert catalogue.expand("ec2:DetachVolume") == ["ec2:DetachVolume"]
    assert catalogue.expand("ec2:detachvolume") == ["ec2:DetachVolume"]
    assert "ec2:DescribeVolumes" in catalogue.expand("ec2:Describe*")
    assert all(name.startswith("ec2:Describe") for name in catalogue.expand("ec2:Describe*"))
    assert catalogue.expand("ec2:NoSuch*") == []
    assert catalogue.key_matches("aws:ResourceTag/${TagKey}", "aws:resourcetag/ec2spot:lineage")
    assert not catalogue.key_matches("aws:ResourceTag/${TagKey}", "aws:ResourceTag/")
    assert not catalogue.key_matches("ec2:Encrypted", "ec2:EncryptedX")


def test_arns_are_filled_from_the_reference_formats():
    types = catalogue.resource_types("autoscaling")
    assert catalogue.arn_for(types["autoScalingGroup"], "aws", "eu-west-1", "1", "uuid", "pg") == (
        "arn:aws:autoscaling:eu-west-1:1:autoScalingGroup:uuid:autoScalingGroupName/pg"
    )
    volume = catalogue.resource_types("ec2")["volume"]
    assert catalogue.arn_for(volume, "aws", "eu-west-1", "1") == "arn:aws:ec2:eu-west-1:1:volume/*"


# ---- authorisation requests -------------------------------------------------------------------------------------
def ec2(type_name, *ids, **fields):
    return Resource.of("ec2", type_name, "aws", "eu-west-1", "123456789012", *ids, **fields)


def test_each_resource_is_checked_with_the_keys_its_row_takes():
    snapshot = ec2("snapshot", "snap-1", tags={"ec2spot:lineage": "pgdata"}, keys={"ec2:Encrypted": True})
    volume = ec2("volume", created=True, keys={"ec2:Encrypted": True, "ec2:VolumeType": "gp3"})
    request = AuthorizationRequest("ec2:CreateVolume", (volume, snapshot), request_tags={"ec2spot:lineage": "pgdata"},
                                   keys={"ec2:Region": "eu-west-1", "not:Listed": 1},
                                   global_keys={"aws:PrincipalArn": "arn:aws:iam::123456789012:role/r"})  # fmt: skip
    by_type = {check.resource_type: check for check in request.checks()}
    assert by_type["volume"].resource == "arn:aws:ec2:eu-west-1:123456789012:volume/*"
    assert by_type["volume"].context == {
        "aws:PrincipalArn": "arn:aws:iam::123456789012:role/r",
        "ec2:Region": "eu-west-1",
        "aws:RequestTag/ec2spot:lineage": "pgdata",
        "aws:TagKeys": ["ec2spot:lineage"],
        "ec2:Encrypted": True,
        "ec2:VolumeType": "gp3",
    }
    # The snapshot's row takes its tags (both tag keys), not the request's.
    assert by_type["snapshot"].resource == "arn:aws:ec2:eu-west-1::snapshot/snap-1"
    assert by_type["snapshot"].context == {
        "aws:PrincipalArn": "arn:aws:iam::123456789012:role/r",
        "ec2:Region": "eu-west-1",
        "aws:ResourceTag/ec2spot:lineage": "pgdata",
        "ec2:ResourceTag/ec2spot:lineage": "pgdata",
        "ec2:Encrypted": True,
    }


def test_a_key_the_reference_does_not_list_for_the_row_is_left_out():
    # ec2:CreateAction belongs to CreateTags, not to DetachVolume; aws:RequestTag to no DetachVolume row.
    request = AuthorizationRequest("ec2:DetachVolume", (ec2("volume", "vol-1"),), request_tags={"a": "b"},
                                   keys={"ec2:CreateAction": "CreateVolume"})  # fmt: skip
    assert request.checks()[0].context == {}


def test_an_action_without_resource_types_is_checked_against_star():
    (check,) = AuthorizationRequest("cloudwatch:PutMetricData", keys={"cloudwatch:namespace": "EC2Spot"}).checks()
    assert (check.resource, check.resource_type, check.context) == ("*", None, {"cloudwatch:namespace": "EC2Spot"})


def test_malformed_requests_are_errors():
    with pytest.raises(ValueError, match="does not authorise resource type 'image'"):
        AuthorizationRequest("ec2:DetachVolume", (ec2("image", "ami-1"),)).checks()
    with pytest.raises(ValueError, match="always authorises volume"):
        AuthorizationRequest("ec2:DetachVolume", (ec2("instance", "i-1"),)).checks()
    with pytest.raises(ValueError, match="authorises no resource type"):
        AuthorizationRequest("ec2:DescribeVolumes", (ec2("volume", "vol-1"),)).checks()


def test_tag_keys_of_a_delete_and_service_resource_tag_keys():
    request = AuthorizationRequest("ec2:DeleteTags", (ec2("instance", "i-1", tags={"ec2spot:lineage": "pg"}),),
                                   tag_keys=("ec2spot:progress:detach",))  # fmt: skip
    assert request.checks()[0].context["aws:TagKeys"] == ["ec2spot:progress:detach"]
    instance = Resource.of("ssm", "instance", "aws", "eu-west-1", "1", "i-1", tags={"ec2spot:lineage": "pg"})
    document = Resource("document", "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript")
    checks = AuthorizationRequest("ssm:SendCommand", (document, instance)).checks()
    assert checks[1].resource == "arn:aws:ec2:eu-west-1:1:instance/i-1"
    assert checks[1].context == {"aws:ResourceTag/ec2spot:lineage": "pg", "ssm:resourceTag/ec2spot:lineage": "pg"}


def test_tagging_on_create_is_a_second_authorisation():
    volume = ec2("volume", created=True, keys={"ec2:Encrypted": True})
    request = AuthorizationRequest("ec2:CreateVolume", (volume,), request_tags={"ec2spot:lineage": "pgdata"})
    tagging = tagging_on_create(request)
    (check,) = tagging.checks()
    assert (check.action, check.resource) == ("ec2:CreateTags", "arn:aws:ec2:eu-west-1:123456789012:volume/*")
    assert check.context["ec2:CreateAction"] == "CreateVolume"
    assert check.context["aws:RequestTag/ec2spot:lineage"] == "pgdata"
    assert tagging_on_create(AuthorizationRequest("ec2:CreateVolume", (volume,))) is None
    allow_create_only = policy({"Effect": "Allow", "Action": "ec2:CreateVolume", "Resource": "*"})
    verdict = decide([allow_create_only], request)
    assert not verdict.allowed
    assert verdict.refusal[0].action == "ec2:CreateTags"
    assert decide([allow_create_only], request, with_tagging=False).allowed


def test_service_keys_of_described_resources():
    assert ec2_keys("volume", {"Encrypted": False, "AvailabilityZone": "eu-west-1a", "VolumeType": "gp3", "Size": 8,
                               "SnapshotId": ""}) == {  # fmt: skip
        "ec2:Encrypted": False, "ec2:AvailabilityZone": "eu-west-1a", "ec2:VolumeType": "gp3", "ec2:VolumeSize": 8,
    }  # fmt: skip
    assert ec2_keys("snapshot", {"Encrypted": True, "VolumeSize": 8, "OwnerId": "1"}) == {
        "ec2:Encrypted": True, "ec2:VolumeSize": 8, "ec2:Owner": "1",
    }  # fmt: skip
    assert ec2_keys("instance", {"InstanceType": "m5.large", "Placement": {"AvailabilityZone": "eu-west-1b"}}) == {
        "ec2:InstanceType": "m5.large", "ec2:AvailabilityZone": "eu-west-1b",
    }  # fmt: skip
    keys = attribute_keys("InstanceType", "m5.large")
    assert keys == {"ec2:Attribute": "InstanceType", "ec2:Attribute/InstanceType": "m5.large"}
    (check,) = AuthorizationRequest("ec2:ModifyInstanceAttribute", (ec2("instance", "i-1"),), keys=keys).checks()
    assert check.context == keys


# ---- denials ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("service", "code"),
    [
        ("ec2", "UnauthorizedOperation"),
        ("autoscaling", "AccessDenied"),
        ("sns", "AccessDenied"),
        ("sqs", "AccessDenied"),
        ("cloudwatch", "AccessDenied"),
        ("monitoring", "AccessDenied"),
        ("iam", "AccessDenied"),
        ("ssm", "AccessDeniedException"),
        ("events", "AccessDeniedException"),
        ("logs", "AccessDeniedException"),
        ("lambda", "AccessDeniedException"),
    ],
)
def test_denial_codes(service, code):
    assert denial_code(service) == code


def test_a_service_without_a_known_code_is_an_error():
    with pytest.raises(LookupError, match="no denial code known for service 'dynamodb'"):
        denial_code("dynamodb")


def test_access_denied_speaks_as_aws():
    principal = "arn:aws:sts::123456789012:assumed-role/cp-function/cp"
    detach = AuthorizationRequest("ec2:DetachVolume", (ec2("volume", "vol-1"),))
    with pytest.raises(AccessDenied) as denied:
        authorize([], detach, principal)
    assert denied.value.code == "UnauthorizedOperation"
    assert denied.value.message == (
        f"You are not authorized to perform this operation. User: {principal} is not authorized to perform: "
        f"ec2:DetachVolume on resource: {VOLUME} because no identity-based policy allows the ec2:DetachVolume action"
    )
    publish = AuthorizationRequest("sns:Publish", (Resource("topic", "arn:aws:sns:eu-west-1:1:t"),))
    deny = policy(ALLOW_ALL, {"Effect": "Deny", "Action": "sns:*", "Resource": "*"})
    with pytest.raises(AccessDenied) as denied:
        authorize([deny], publish, principal)
    assert denied.value.code == "AccessDenied"
    assert denied.value.message == (
        f"User: {principal} is not authorized to perform: sns:Publish on resource: arn:aws:sns:eu-west-1:1:t "
        "with an explicit deny in an identity-based policy"
    )
    assert authorize([policy(ALLOW_ALL)], publish, principal).allowed
