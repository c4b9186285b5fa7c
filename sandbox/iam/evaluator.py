"""Identity-based IAM policies evaluated as the IAM User Guide documents them; pure, no AWS state.

``evaluate(policies, action, resource, context)`` answers one authorisation: an action (``ec2:CreateVolume``), one
resource ARN (``*`` for an action without resource types) and the request context (condition key -> a value or a
list of values; ``requests`` builds it). The rules, from the User Guide ("Policy evaluation logic", "IAM JSON policy
elements reference", "Condition operators", "Multivalued context keys"):

- an explicit ``Deny`` in any matching statement wins; otherwise a matching ``Allow`` allows; otherwise the request
  is implicitly denied;
- a statement matches when its ``Action`` names the action (``NotAction``: does not name it), its ``Resource`` names
  the resource (``NotResource``: does not), and its ``Condition`` holds;
- action names are case-insensitive and take ``*`` and ``?``; ``*`` alone names every action;
- a resource ARN pattern is compared part by part (partition, service, region, account, resource: the text around
  the first five colons), case-sensitively, ``*`` and ``?`` matching within a part (in the resource part ``*`` also
  matches ``/`` and ``:``); ``Resource: "*"`` names everything, and a value that is neither ``*`` nor an ARN of six
  parts is refused (IAM refuses to store it);
- a condition holds when every operator block holds and, in each block, every key holds (AND); the values a policy
  gives for one key are alternatives (OR), and for a negated operator (``StringNotEquals``, ``ArnNotLike``...) the
  context value must match none of them;
- condition key names are case-insensitive; the values of string operators are not (``...IgnoreCase``: they are);
- a key missing from the context makes its condition false, except: ``...IfExists`` (true), a negated operator
  (true), ``ForAllValues:`` (true), ``Null`` (which tests exactly that); ``ForAnyValue:`` is false;
- ``ForAllValues:`` holds when every context value matches (an empty list too), ``ForAnyValue:`` when at least one
  does; a plain operator given a multivalued key holds when any value matches (a negated one: when none does);
- ``Null: true`` holds when the key is absent, ``Null: false`` when it is present.

Operators: ``String{Equals,NotEquals,EqualsIgnoreCase,NotEqualsIgnoreCase,Like,NotLike}``, ``Numeric{Equals,
NotEquals,LessThan,LessThanEquals,GreaterThan,GreaterThanEquals}``, the same six ``Date...``, ``Bool``,
``BinaryEquals``, ``IpAddress``, ``NotIpAddress``, ``Arn{Equals,Like,NotEquals,NotLike}`` and ``Null``; each (but
``Null``) with ``IfExists`` and the ``ForAllValues:``/``ForAnyValue:`` qualifiers. ``StringLike`` takes ``*`` and
``?``, ``StringEquals`` does not; ``ArnEquals`` and ``ArnLike`` both take wildcards (AWS treats them alike).
``Numeric*`` compare numbers, ``Date*`` instants (ISO 8601 or epoch seconds); a value that does not parse matches
nothing. ``Bool`` compares ``true``/``false`` without case.

Not modelled: policy variables (``${aws:username}``; no project policy uses them: a policy that does is refused with
``PolicyError`` rather than evaluated wrongly), ``Principal`` (identity policies have none: refused too).
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone


class Decision(enum.Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit-deny"
    IMPLICIT_DENY = "implicit-deny"


@dataclass(frozen=True)
class Result:
    """One authorisation's answer and the statement that decided it (``None`` for an implicit deny)."""

    decision: Decision
    statement: Mapping | None = None
    policy_name: str | None = None

    @property
    def allowed(self):
        return self.decision is Decision.ALLOW


class PolicyError(ValueError):
    """A policy document the evaluator cannot read (IAM would refuse to store it, or it uses what is not modelled)."""


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _text(value):
    """A policy or context value as IAM compares it: JSON booleans as ``true``/``false``, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---- wildcard matching ------------------------------------------------------------------------------------------
def _glob_regex(pattern):
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def glob_match(pattern, value, ignore_case=False):
    """``StringLike``: ``*`` any run of characters (none too), ``?`` exactly one, over the whole value."""
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch(_glob_regex(pattern), value, flags) is not None


def arn_match(pattern, arn):
    """The ``Resource`` element's and the ARN operators' matching (see the module's docstring)."""
    if pattern == "*":
        return True
    pattern_parts, arn_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        # Not an ARN on one side (IAM refuses such a Resource; an ARN operator given a plain value): no match.
        return False
    return all(glob_match(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def action_match(pattern, action):
    """``Action`` entries: ``service:Name`` without case, ``*`` and ``?``."""
    return pattern == "*" or glob_match(pattern, action, ignore_case=True)


# ---- condition operators ----------------------------------------------------------------------------------------
def _to_number(value):
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_date(value):
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = _text(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _to_bool(value):
    text = _text(value).lower()
    return True if text == "true" else False if text == "false" else None


def _compare(convert, comparison):
    def match(policy_value, context_value):
        actual, expected = convert(context_value), convert(policy_value)
        return actual is not None and expected is not None and comparison(actual, expected)

    return match


def _ip_match(policy_value, context_value):
    try:
        return ipaddress.ip_address(_text(context_value)) in ipaddress.ip_network(_text(policy_value), strict=False)
    except ValueError:
        return False


def _binary_match(policy_value, context_value):
    try:
        return base64.b64decode(_text(policy_value), validate=True) == base64.b64decode(
            _text(context_value), validate=True
        )
    except (binascii.Error, ValueError):
        return False


def _bool_match(policy_value, context_value):
    expected = _to_bool(policy_value)
    return expected is not None and expected == _to_bool(context_value)


def _equal(a, b):
    return a == b


def _less(a, b):
    return a < b


def _less_or_equal(a, b):
    return a <= b


def _greater(a, b):
    return a > b


def _greater_or_equal(a, b):
    return a >= b


_COMPARISONS = {
    "Equals": (_equal, False),
    "NotEquals": (_equal, True),
    "LessThan": (_less, False),
    "LessThanEquals": (_less_or_equal, False),
    "GreaterThan": (_greater, False),
    "GreaterThanEquals": (_greater_or_equal, False),
}

# name -> (match(policy value, context value), negated)
_OPERATORS = {
    "StringEquals": (lambda p, c: _text(p) == _text(c), False),
    "StringNotEquals": (lambda p, c: _text(p) == _text(c), True),
    "StringEqualsIgnoreCase": (lambda p, c: _text(p).lower() == _text(c).lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, c: _text(p).lower() == _text(c).lower(), True),
    "StringLike": (lambda p, c: glob_match(_text(p), _text(c)), False),
    "StringNotLike": (lambda p, c: glob_match(_text(p), _text(c)), True),
    **{f"Numeric{name}": (_compare(_to_number, how), negated) for name, (how, negated) in _COMPARISONS.items()},
    **{f"Date{name}": (_compare(_to_date, how), negated) for name, (how, negated) in _COMPARISONS.items()},
    "Bool": (_bool_match, False),
    "BinaryEquals": (_binary_match, False),
    "IpAddress": (_ip_match, False),
    "NotIpAddress": (_ip_match, True),
    "ArnEquals": (lambda p, c: arn_match(_text(p), _text(c)), False),
    "ArnLike": (lambda p, c: arn_match(_text(p), _text(c)), False),
    "ArnNotEquals": (lambda p, c: arn_match(_text(p), _text(c)), True),
    "ArnNotLike": (lambda p, c: arn_match(_text(p), _text(c)), True),
}

OPERATORS = frozenset(_OPERATORS) | {"Null"}
QUALIFIERS = ("ForAllValues", "ForAnyValue")


def parse_operator(name):
    """``ForAllValues:StringLikeIfExists`` -> ``("ForAllValues", "StringLike", True)``; ``PolicyError`` for a name
    IAM does not know."""
    qualifier, _colon, base = name.rpartition(":")
    if qualifier and qualifier not in QUALIFIERS:
        raise PolicyError(f"unknown condition set operator {qualifier!r} in {name!r}")
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    if base not in OPERATORS:
        raise PolicyError(f"unknown condition operator {name!r}")
    if base == "Null" and (if_exists or qualifier):
        raise PolicyError(f"{name!r}: Null takes neither IfExists nor a set operator")
    return qualifier or None, base, if_exists


def _lookup(context, key):
    """The context's values for a key (names are case-insensitive) as a list, or None when the key is absent."""
    wanted = key.lower()
    for name, value in context.items():
        if name.lower() == wanted:
            return None if value is None else _as_list(value)
    return None


def _refuse_variables(values, where):
    for value in values:
        if isinstance(value, str) and "${" in value:
            raise PolicyError(f"{where}: policy variables are not modelled ({value!r})")


def condition_holds(operator_name, key, policy_values, context):
    """One key of one operator block."""
    qualifier, base, if_exists = parse_operator(operator_name)
    expected = _as_list(policy_values)
    _refuse_variables(expected, f"condition {operator_name} {key}")
    actual = _lookup(context, key)
    missing = actual is None or actual == []
    if base == "Null":
        # "true": the key must be absent; "false": present. Several values are alternatives like everywhere else.
        return any(_to_bool(value) is missing for value in expected)
    match, negated = _OPERATORS[base]
    if missing:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or negated

    def value_holds(value):
        hit = any(match(policy_value, value) for policy_value in expected)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(value_holds(value) for value in actual)
    if qualifier == "ForAnyValue":
        return any(value_holds(value) for value in actual)
    return all(value_holds(value) for value in actual) if negated else any(value_holds(value) for value in actual)


def conditions_hold(condition, context):
    """A statement's whole ``Condition`` element (absent: it holds)."""
    if condition is None:
        return True
    if not isinstance(condition, Mapping):
        raise PolicyError("Condition must map operators to blocks")
    for operator_name, block in condition.items():
        if not isinstance(block, Mapping):
            raise PolicyError(f"condition {operator_name!r} must map keys to values")
        for key, policy_values in block.items():
            if not condition_holds(operator_name, key, policy_values, context):
                return False
    return True


# ---- statements and policies ------------------------------------------------------------------------------------
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}


def check_statement(statement):
    """``PolicyError`` unless ``statement`` is a well-formed identity-policy statement."""
    if not isinstance(statement, Mapping):
        raise PolicyError("a statement must be an object")
    if "Principal" in statement or "NotPrincipal" in statement:
        raise PolicyError("an identity-based policy names no Principal")
    unknown = set(statement) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"unknown statement element(s) {sorted(unknown)}")
    if statement.get("Effect") not in ("Allow", "Deny"):
        raise PolicyError(f"Effect must be Allow or Deny, not {statement.get('Effect')!r}")
    for element, negation in (("Action", "NotAction"), ("Resource", "NotResource")):
        if (element in statement) == (negation in statement):
            raise PolicyError(f"a statement needs exactly one of {element} and {negation}")
    resources = _as_list(statement.get("Resource", statement.get("NotResource")))
    _refuse_variables(resources, "Resource")
    for resource in resources:
        if resource != "*" and (not isinstance(resource, str) or len(resource.split(":", 5)) != 6):
            raise PolicyError(f"Resource {resource!r} must be in ARN format or \"*\"")


def statement_matches(statement, action, resource, context):
    """Whether one (well-formed) statement applies to the request."""
    if "Action" in statement:
        if not any(action_match(p, action) for p in _as_list(statement["Action"])):
            return False
    elif any(action_match(p, action) for p in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(arn_match(p, resource) for p in _as_list(statement["Resource"])):
            return False
    elif any(arn_match(p, resource) for p in _as_list(statement["NotResource"])):
        return False
    return conditions_hold(statement.get("Condition"), context)


def statements(document):
    """A policy document's statements, as a list (``Statement`` may be one object)."""
    if not isinstance(document, Mapping) or "Statement" not in document:
        raise PolicyError("a policy document needs a Statement")
    found = document["Statement"]
    found = [found] if isinstance(found, Mapping) else list(found)
    for statement in found:
        check_statement(statement)
    return found


def evaluate(policies: Iterable, action: str, resource: str, context: Mapping | None = None) -> Result:
    """Evaluate identity-based ``policies`` (documents, or ``(name, document)`` pairs) for one request."""
    context = context or {}
    allowed = None
    for entry in policies:
        name, document = entry if isinstance(entry, tuple) else (None, entry)
        for statement in statements(document):
            if not statement_matches(statement, action, resource, context):
                continue
            if statement["Effect"] == "Deny":
                return Result(Decision.EXPLICIT_DENY, statement, name)
            allowed = allowed or Result(Decision.ALLOW, statement, name)
    return allowed or Result(Decision.IMPLICIT_DENY)
