"""The resolver: from one request to the sandbox, the ``AuthorizationRequest`` AWS would build for it.

For an action of the reference without resource types (``ec2:Describe*``, ``ssm:GetCommandInvocation``...) that is
the action on ``*`` with the call's own keys. For the actions the recovery handler calls on resources
(plugins/module_utils/recovery/), the resources the request names are looked up in moto's current state, with
their ARNs, their tags and their service keys (``ec2:Encrypted`` of a volume...), and the request's tags
(``TagSpecifications``, ``Tags``) and keys (``ec2:CreateAction``, ``cloudwatch:namespace``) added, as
``requests`` documents. A resource the request names that does not exist is authorised with its ARN and no tags (as
IAM sees it: IAM is asked before the service looks the resource up).

For the deploy's calls (IAM roles and instance profiles, Lambda functions, rules on the default bus, log groups,
topics, dashboards, KMS keys and aliases, launch templates, Auto Scaling groups, FIS templates and experiments), the
resources are named by the
request itself (``NAMED``: a name or an ARN, in the parameters or, for REST services, in the path) and authorised by
ARN, without tags: policies scope them by name.

``resolve`` returns None for an action with resource types it does not model yet: the caller then authorises it on
``*`` and records it (never on a real ARN it did not resolve).

Parameters come as moto parsed them: ``Params`` reads the query protocol's flattened keys (``InstanceId.1``,
``TagSpecification.1.Tag.1.Key``, ``AlarmNames.member.1``) and the JSON and CBOR protocols' documents alike.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import replace

from moto.backends import get_backend

from . import catalogue
from .requests import AuthorizationRequest, Resource, ec2_keys

# EC2 resource ids by prefix, to the reference's resource type.
EC2_TYPES = {
    "i": "instance",
    "vol": "volume",
    "snap": "snapshot",
    "ami": "image",
    "eipalloc": "elastic-ip",
    "eni": "network-interface",
    "sg": "security-group",
    "subnet": "subnet",
    "vpc": "vpc",
    "lt": "launch-template",
    "rtb": "route-table",
    "igw": "internet-gateway",
}


class Params:
    """A request's parameters: ``flat`` (the query protocol, ``{key: [value]}``) or ``tree`` (a JSON document)."""

    def __init__(self, flat=None, tree=None):
        self.flat = {key: (value[0] if isinstance(value, list) else value) for key, value in (flat or {}).items()}
        self.tree = tree or {}

    def one(self, name):
        if name in self.tree:
            return self.tree[name]
        return self.flat.get(name)

    def many(self, name, singular=None):
        """A list parameter: ``Name`` in a document, ``Name.N`` / ``Name.member.N`` / ``Singular.N`` flattened."""
        if isinstance(self.tree.get(name), list):
            return list(self.tree[name])
        found = []
        for prefix in (f"{name}.", f"{name}.member.", *((f"{singular}.",) if singular else ())):
            index = 1
            while f"{prefix}{index}" in self.flat:
                found.append(self.flat[f"{prefix}{index}"])
                index += 1
            if found:
                return found
        return found

    def structures(self, name, singular=None):
        """A list of structures: documents as they are; flattened ``Singular.N.Field`` rebuilt (one level deep,
        with nested lists such as ``Tag.M.Key`` kept flat under the item)."""
        if isinstance(self.tree.get(name), list):
            return list(self.tree[name])
        items = []
        for prefix in (f"{name}.", f"{name}.member.", *((f"{singular}.",) if singular else ())):
            index = 1
            while any(key.startswith(f"{prefix}{index}.") for key in self.flat):
                start = f"{prefix}{index}."
                items.append(
                    Params({key[len(start) :]: value for key, value in self.flat.items() if key.startswith(start)})
                )
                index += 1
            if items:
                return items
        return items


# CloudWatch actions whose resource is the alarms they name.
# The calls on an existing launch template (by LaunchTemplateId or LaunchTemplateName).
LAUNCH_TEMPLATE_ACTIONS = ("CreateLaunchTemplateVersion", "ModifyLaunchTemplate", "DeleteLaunchTemplate",
                           "DeleteLaunchTemplateVersions")  # fmt: skip
ALARM_ACTIONS = ("DescribeAlarms", "PutMetricAlarm", "DeleteAlarms", "DisableAlarmActions", "EnableAlarmActions")


def _tags_of(params, name="Tags", singular="Tag"):
    """``{key: value}`` of a tag list (``Tags``/``Tag.N.Key``, each with ``Key`` and ``Value``)."""
    tags = {}
    for item in params.structures(name, singular):
        key = item.get("Key") if isinstance(item, dict) else item.one("Key")
        value = item.get("Value") if isinstance(item, dict) else item.one("Value")
        if key is not None:
            tags[key] = value if value is not None else ""
    return tags


def _request_tags(params, resource_types):
    """The tags a create call sets on what it creates (``TagSpecification.N`` for the given resource types)."""
    tags = {}
    for spec in params.structures("TagSpecifications", "TagSpecification"):
        kind = spec.get("ResourceType") if isinstance(spec, dict) else spec.one("ResourceType")
        if kind in resource_types:
            tags.update(_tags_of(spec if isinstance(spec, Params) else Params(tree=spec)))
    return tags


class Ec2State:
    """moto's EC2 state of one account and region, as IAM sees resources: ARN, tags, keys."""

    def __init__(self, account, region, partition):
        self.account, self.region, self.partition = account, region, partition
        self.backend = get_backend("ec2")[account][region]

    def tags(self, resource_id):
        return dict(self.backend.tags.get(resource_id, {}))

    def resource(self, type_name, resource_id=None, created=False, keys=None):
        if created or resource_id is None:
            return Resource.of("ec2", type_name, self.partition, self.region, self.account, created=created,
                               keys=keys or {})  # fmt: skip
        return Resource.of("ec2", type_name, self.partition, self.region, self.account, resource_id,
                           tags=self.tags(resource_id), keys=self.keys(type_name, resource_id))  # fmt: skip

    def by_id(self, resource_id):
        type_name = EC2_TYPES.get(resource_id.split("-", 1)[0])
        return None if type_name is None else self.resource(type_name, resource_id)

    def _find(self, getter, resource_id):
        try:
            return getter(resource_id)
        except Exception:  # moto's InvalidVolume.NotFound and the like: IAM sees a resource without tags
            return None

    def volume(self, volume_id):
        return self._find(self.backend.get_volume, volume_id)

    def instance(self, instance_id):
        return self._find(self.backend.get_instance, instance_id)

    def keys(self, type_name, resource_id):
        if type_name == "volume":
            volume = self.volume(resource_id)
            if volume is None:
                return {}
            description = {"Encrypted": volume.encrypted, "AvailabilityZone": volume.zone.name if volume.zone else None,
                           "VolumeType": volume.volume_type, "Size": volume.size, "SnapshotId": volume.snapshot_id}  # fmt: skip
            return ec2_keys("volume", description)
        if type_name == "snapshot":
            snapshot = self._find(self.backend.get_snapshot, resource_id)
            if snapshot is None:
                return {}
            return ec2_keys("snapshot", {"Encrypted": snapshot.encrypted, "OwnerId": snapshot.owner_id,
                                         "VolumeSize": getattr(snapshot.volume, "size", None)})  # fmt: skip
        if type_name == "instance":
            instance = self.instance(resource_id)
            if instance is None:
                return {}
            return ec2_keys("instance", {"InstanceType": instance.instance_type,
                                         "Placement": {"AvailabilityZone": instance.placement}})  # fmt: skip
        return {}

    def attached_volumes(self, instance_id, exclude_boot=False):
        instance = self.instance(instance_id)
        if instance is None:
            return []
        found = []
        for device, mapping in instance.block_device_mapping.items():
            if exclude_boot and device == instance.root_device_name:
                continue
            found.append(mapping.volume_id)
        return found

    def launch_template_id(self, name):
        template = self._find(self.backend.get_launch_template_by_name, name) if name else None
        return template.id if template is not None else None

    def primary_interface(self, instance_id):
        instance = self.instance(instance_id)
        interface = (getattr(instance, "nics", None) or {}).get(0) if instance is not None else None
        return interface.id if interface is not None else None


def _ec2(action, params, state):
    """The EC2 calls the handler makes on resources; None for another."""
    ec2 = state
    if action in ("DetachVolume", "AttachVolume"):
        resources = [ec2.resource("volume", params.one("VolumeId"))]
        instance_id = params.one("InstanceId")
        if instance_id is None and action == "DetachVolume":
            volume = ec2.volume(params.one("VolumeId"))
            instance_id = volume.attachment.instance.id if volume is not None and volume.attachment else None
        if instance_id:
            resources.append(ec2.resource("instance", instance_id))
        return [AuthorizationRequest(f"ec2:{action}", tuple(resources))]
    if action == "CreateVolume":
        encrypted = params.one("Encrypted")
        keys = {"ec2:Encrypted": str(encrypted).lower() == "true"} if encrypted is not None else {}
        keys.update({key: value for key, value in {
            "ec2:AvailabilityZone": params.one("AvailabilityZone"), "ec2:VolumeType": params.one("VolumeType"),
            "ec2:VolumeSize": params.one("Size")}.items() if value is not None})  # fmt: skip
        resources = [ec2.resource("volume", created=True, keys=keys)]
        if params.one("SnapshotId"):
            resources.append(ec2.resource("snapshot", params.one("SnapshotId")))
        return [AuthorizationRequest("ec2:CreateVolume", tuple(resources),
                                     request_tags=_request_tags(params, ("volume",)) or None)]  # fmt: skip
    if action == "CreateSnapshots":
        instance_id = params.one("InstanceSpecification.InstanceId")
        if instance_id is None and isinstance(params.one("InstanceSpecification"), dict):
            instance_id = params.one("InstanceSpecification").get("InstanceId")
        exclude_boot = str(params.one("InstanceSpecification.ExcludeBootVolume")).lower() == "true"
        resources = [ec2.resource("instance", instance_id)]
        resources += [ec2.resource("volume", v) for v in ec2.attached_volumes(instance_id, exclude_boot)]
        resources.append(ec2.resource("snapshot", created=True))
        return [AuthorizationRequest("ec2:CreateSnapshots", tuple(resources),
                                     request_tags=_request_tags(params, ("snapshot",)) or None)]  # fmt: skip
    if action == "CreateImage":
        resources = (ec2.resource("instance", params.one("InstanceId")), ec2.resource("image", created=True),
                     ec2.resource("snapshot", created=True))  # fmt: skip
        return [AuthorizationRequest("ec2:CreateImage", resources,
                                     request_tags=_request_tags(params, ("image", "snapshot")) or None)]  # fmt: skip
    if action in ("CreateTags", "DeleteTags"):
        resources = [ec2.by_id(resource_id) for resource_id in params.many("Resources", "ResourceId")]
        if any(resource is None for resource in resources):
            return None
        tags = _tags_of(params, "Tags", "Tag")
        if action == "CreateTags":
            return [AuthorizationRequest("ec2:CreateTags", tuple(resources), request_tags=tags)]
        return [AuthorizationRequest("ec2:DeleteTags", tuple(resources), tag_keys=tuple(tags))]
    if action == "DeleteSnapshot":
        return [AuthorizationRequest("ec2:DeleteSnapshot", (ec2.resource("snapshot", params.one("SnapshotId")),))]
    if action == "DeregisterImage":
        return [AuthorizationRequest("ec2:DeregisterImage", (ec2.resource("image", params.one("ImageId")),))]
    if action in ("StartInstances", "StopInstances", "RebootInstances", "TerminateInstances"):
        instances = tuple(ec2.resource("instance", i) for i in params.many("InstanceIds", "InstanceId"))
        return [AuthorizationRequest(f"ec2:{action}", instances)]
    if action == "DescribeSnapshotAttribute":
        return [
            AuthorizationRequest("ec2:DescribeSnapshotAttribute", (ec2.resource("snapshot", params.one("SnapshotId")),))
        ]
    if action == "RunInstances":
        return _run_instances(params, ec2)
    if action == "AllocateAddress":
        return [AuthorizationRequest("ec2:AllocateAddress", (ec2.resource("elastic-ip", created=True),),
                                     request_tags=_request_tags(params, ("elastic-ip",)) or None)]  # fmt: skip
    if action == "CreateLaunchTemplate":
        return [AuthorizationRequest("ec2:CreateLaunchTemplate", (ec2.resource("launch-template", created=True),),
                                     request_tags=_request_tags(params, ("launch-template",)) or None)]  # fmt: skip
    if action in LAUNCH_TEMPLATE_ACTIONS:
        template_id = params.one("LaunchTemplateId") or ec2.launch_template_id(params.one("LaunchTemplateName"))
        return None if template_id is None else [
            AuthorizationRequest(f"ec2:{action}", (ec2.resource("launch-template", template_id),))]  # fmt: skip
    if action == "AssociateAddress":
        resources = []
        if params.one("AllocationId"):
            resources.append(ec2.resource("elastic-ip", params.one("AllocationId")))
        instance_id, interface_id = params.one("InstanceId"), params.one("NetworkInterfaceId")
        if instance_id:
            resources.append(ec2.resource("instance", instance_id))
            interface_id = interface_id or ec2.primary_interface(instance_id)
        if interface_id:
            resources.append(ec2.resource("network-interface", interface_id))
        return [AuthorizationRequest("ec2:AssociateAddress", tuple(resources))]
    return None


def _run_instances(params, ec2):
    """RunInstances: the new instance, its root volume and its interface (with the tags they are created with), and
    the subnet, security groups, image and launch template it uses, from the request or else from the template's
    version it names; ``ec2:LaunchTemplate`` on each when it launches from one. Not modelled: key pairs, placement
    groups, capacity reservations, snapshots of the template's block devices, ``ec2:IsLaunchTemplateResource``."""
    name = params.one("LaunchTemplate.LaunchTemplateName") or (params.one("LaunchTemplate") or {}).get(
        "LaunchTemplateName"
    )
    template_id = params.one("LaunchTemplate.LaunchTemplateId") or (params.one("LaunchTemplate") or {}).get(
        "LaunchTemplateId"
    )
    template_id = template_id or ec2.launch_template_id(name)
    data, keys = None, {}
    if template_id:
        template = ec2._find(ec2.backend.get_launch_template, template_id)
        version = params.one("LaunchTemplate.Version") or (params.one("LaunchTemplate") or {}).get("Version")
        if template is not None:
            found = template.latest_version() if version == "$Latest" else template.default_version()
            found = template.get_version(version) if version and version not in ("$Latest", "$Default") else found
            data = found
        keys["ec2:LaunchTemplate"] = ec2.resource("launch-template", template_id).arn
    image = params.one("ImageId") or getattr(data, "image_id", None)
    template_data = getattr(data, "data", None) or {}
    groups = params.many("SecurityGroupIds", "SecurityGroupId") or list(template_data.get("SecurityGroupIds") or [])
    created = _request_tags(params, ("instance", "volume", "network-interface"))
    resources = [ec2.resource(kind, created=True) for kind in ("instance", "volume", "network-interface")]
    resources.append(ec2.resource("subnet", params.one("SubnetId")) if params.one("SubnetId") else
                     ec2.resource("subnet"))  # fmt: skip
    resources += [ec2.resource("security-group", group) for group in groups] or [ec2.resource("security-group")]
    resources.append(ec2.resource("image", image) if image else ec2.resource("image"))
    if template_id:
        resources.append(ec2.resource("launch-template", template_id))
    return [AuthorizationRequest("ec2:RunInstances", tuple(resources), request_tags=created or None, keys=keys)]


def _autoscaling(action, params, account, region):
    backend = get_backend("autoscaling")[account][region]
    name = params.one("AutoScalingGroupName")
    if name is None and action == "SetInstanceHealth":
        instance_id = params.one("InstanceId")
        name = next((group.name for group in backend.autoscaling_groups.values()
                     if any(state.instance.id == instance_id for state in group.instance_states)), None)  # fmt: skip
    found = catalogue.find_action(f"autoscaling:{action}")
    if name is None or found is None or found.resource("autoScalingGroup") is None:
        return None
    group = backend.autoscaling_groups.get(name)
    partition = "aws"
    if group is None:
        arn = f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{name}"
        tags = {}
    else:
        arn = group.arn
        tags = {
            tag["Key"] if "Key" in tag else tag["key"]: tag.get("Value", tag.get("value", "")) for tag in group.tags
        }
    return [AuthorizationRequest(f"autoscaling:{action}", (Resource("autoScalingGroup", arn, tags=tags),))]


def _ssm(action, params, state):
    if action != "SendCommand":
        return None
    document = params.one("DocumentName") or ""
    if document.startswith("arn:"):
        document_arn = document
    elif document.startswith("AWS-"):
        document_arn = f"arn:{state.partition}:ssm:{state.region}::document/{document}"  # AWS-owned: no account
    else:
        document_arn = f"arn:{state.partition}:ssm:{state.region}:{state.account}:document/{document}"
    resources = [Resource("document", document_arn)]
    for instance_id in params.many("InstanceIds", "InstanceId"):
        arn = f"arn:{state.partition}:ec2:{state.region}:{state.account}:instance/{instance_id}"
        resources.append(Resource("instance", arn, tags=state.tags(instance_id)))
    return [AuthorizationRequest("ssm:SendCommand", tuple(resources))]


def _queue_name(params):
    url = params.one("QueueUrl")
    return url.rstrip("/").rsplit("/", 1)[-1] if url else params.one("QueueName")


def _put_events(action, params, account, region, partition):
    """EventBridge PutEvents: one authorisation per entry, on the bus it names (a name or an ARN; ``default`` when
    none), with the entry's ``events:source`` and ``events:detail-type`` (EventBridge user guide, "Using IAM policy
    conditions": a PutEvents entry is allowed or refused on its own source and detail type)."""
    requests = []
    for entry in params.many("Entries") or [{}]:
        bus = entry.get("EventBusName") or "default"
        arn = bus if bus.startswith("arn:") else f"arn:{partition}:events:{region}:{account}:event-bus/{bus}"
        keys = {
            key: entry[field]
            for key, field in (("events:source", "Source"), ("events:detail-type", "DetailType"))
            if entry.get(field)
        }
        requests.append(AuthorizationRequest(action, (Resource("event-bus", arn),), keys=keys))
    return requests


# Resources named by the request itself (the deploy's calls: IAM roles and instance profiles, Lambda functions, rules,
# log groups, topics, dashboards, schedules): (service, resource type) -> the parameters that hold the name (or an
# ARN), in the order of the ARN format's variables after the account. IAM sees these by ARN only: no tags.
NAMED = {
    ("iam", "role"): ("RoleName",),
    ("iam", "instance-profile"): ("InstanceProfileName",),
    ("iam", "policy"): ("PolicyArn",),
    ("lambda", "function"): ("FunctionName",),
    ("events", "rule-on-default-event-bus"): ("Name", "Rule"),
    ("logs", "log-group"): ("logGroupName", "logGroupIdentifier", "resourceArn"),
    ("sns", "topic"): ("TopicArn", "Name", "ResourceArn"),
    ("cloudwatch", "dashboard"): ("DashboardName", "DashboardNames"),
    ("scheduler", "schedule-group"): ("Name",),
    ("kms", "key"): ("KeyId", "TargetKeyId"),
    ("kms", "alias"): ("AliasName",),
}
# REST services name the resource in the path: (service, resource type) -> the path segment before the name.
NAMED_IN_PATH = {
    ("lambda", "function"): ("functions", "tags"),
    ("scheduler", "schedule-group"): ("schedule-groups",),
    ("fis", "experiment-template"): ("experimentTemplates",),
    ("fis", "experiment"): ("experiments",),
}


def _names(params, parameters):
    """Every value of the first of ``parameters`` the request sets (one name, or a list of names)."""
    for name in parameters:
        value = params.many(name) or params.one(name)
        if value:
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return []


def _name_in_path(path, segments):
    """The path's part after the first of ``segments`` it has (``/2015-03-31/functions/<name>/configuration``)."""
    parts = [urllib.parse.unquote(part) for part in (path or "").split("?", 1)[0].split("/") if part]
    for segment in segments:
        if segment in parts[:-1]:
            return [parts[parts.index(segment) + 1]]
    return []


def _kms_name(name, type_name, account, region):
    """A KMS key as IAM authorises it: a key named by its alias is the key the alias points to (None when no key
    has it: KMS answers ``NotFoundException`` before any authorisation); an alias is ``alias/<name>``'s ``<name>``
    in its ARN."""
    if type_name == "alias":
        return name.removeprefix("alias/") if not name.startswith("arn:") else name
    if name.startswith("alias/"):
        return get_backend("kms")[account][region].get_key_id_from_alias(name)
    return name


def _named(found, params, path, account, region, partition):
    """The request naming its resources by name or ARN (NAMED), or None when one of the action's resource types
    (the required ones, or all when none is required) cannot be named from the request."""
    if found.service == "events" and (params.one("EventBusName") or "default") != "default":
        return None  # a rule on a custom bus: not modelled
    resources = []
    for part in found.resources:
        service = found.service
        names = _names(params, NAMED.get((service, part.name), ()))
        if not names and (service, part.name) in NAMED_IN_PATH:
            names = _name_in_path(path, NAMED_IN_PATH[(service, part.name)])
        for name in names:
            if service == "kms":
                name = _kms_name(name, part.name, account, region)
                if name is None:
                    return []  # nothing to authorise: the service answers that the alias names no key
            if name.startswith("arn:"):
                arn = name.split(":log-stream:", 1)[0].removesuffix(":*")  # a log group's ARN as the API gives it
            else:
                arn = catalogue.arn_for(part.resource_type, partition, region, account, name)
            resources.append(Resource(part.name, arn))
    named = {resource.type for resource in resources}
    if not resources or any(part.name not in named for part in found.required_resources):
        return None
    return [AuthorizationRequest(found.full_name, tuple(resources))]


def _fis(found, params, path, account, region, partition):
    """AWS FIS: a new template with the FIS actions it names, a new experiment from its template; the others name
    their template or experiment in the path."""

    def fis(type_name, *ids, **fields):
        return Resource.of("fis", type_name, partition, region, account, *ids, **fields)

    tags = params.one("tags") or None
    if found.name == "CreateExperimentTemplate":
        actions = [action.get("actionId") for action in (params.one("actions") or {}).values()]
        resources = (fis("experiment-template", created=True), *(fis("action", action) for action in actions))
        return [AuthorizationRequest(found.full_name, resources, request_tags=tags)]
    if found.name == "StartExperiment":
        resources = (fis("experiment", created=True), fis("experiment-template", params.one("experimentTemplateId")))
        return [AuthorizationRequest(found.full_name, resources, request_tags=tags)]
    return _named(found, params, path, account, region, partition)


def resolve(service, action, params, account, region, partition="aws", path=None):
    """The authorisation requests of one call (``service``: the IAM prefix, ``action``: the operation name; ``path``:
    the request's path, where REST services name the resource), or None when the call has resource types this
    resolver does not model yet."""
    found = catalogue.find_action(f"{service}:{action}")
    if found is None:
        return None
    if service == "ec2":
        resolved = _ec2(action, params, Ec2State(account, region, partition))
        if resolved is None and not found.resources:
            resolved = [AuthorizationRequest(found.full_name)]
        # ec2:Region is a key of every EC2 action's row.
        return None if resolved is None else [replace(r, keys={**r.keys, "ec2:Region": region}) for r in resolved]
    if not found.resources:
        keys = {}
        if found.full_name == "cloudwatch:PutMetricData" and params.one("Namespace"):
            keys["cloudwatch:namespace"] = params.one("Namespace")
        return [AuthorizationRequest(found.full_name, keys=keys)]
    if service == "autoscaling":
        return _autoscaling(action, params, account, region)
    if service == "ssm":
        return _ssm(action, params, Ec2State(account, region, partition))
    if service == "sns" and params.one("TopicArn"):
        return [AuthorizationRequest(found.full_name, (Resource("topic", params.one("TopicArn")),))]
    if service == "sqs" and _queue_name(params):
        arn = f"arn:{partition}:sqs:{region}:{account}:{_queue_name(params)}"
        return [AuthorizationRequest(found.full_name, (Resource("queue", arn),))]
    if service == "events" and action == "PutEvents":
        return _put_events(found.full_name, params, account, region, partition)
    if service == "cloudwatch" and action in ALARM_ACTIONS:
        base = f"arn:{partition}:cloudwatch:{region}:{account}:alarm:"
        names = params.many("AlarmNames") or ([params.one("AlarmName")] if params.one("AlarmName") else [])
        if not names:
            names = [f"{params.one('AlarmNamePrefix') or ''}*"]
        request_tags = _tags_of(params, "Tags", "Tags.member") if action == "PutMetricAlarm" else {}
        return [AuthorizationRequest(found.full_name, tuple(Resource("alarm", base + name) for name in names),
                                     request_tags=request_tags or None)]  # fmt: skip
    if service == "fis":
        return _fis(found, params, path, account, region, partition)
    if any((service, part.name) in NAMED or (service, part.name) in NAMED_IN_PATH for part in found.resources):
        return _named(found, params, path, account, region, partition)
    return None
