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
ARN; an existing Lambda function, log group, SNS topic or CloudWatch alarm with the tags it carries (as AWS puts them
in the context: ``aws:ResourceTag/*``), other types without tags: policies scope them by name.

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

    def resource(self, type_name, resource_id=None, created=False, keys=None, extra_keys=None, request_tags=None):
        """The resource as IAM sees it: one the call creates (``keys``: what the request says of it,
        ``request_tags``: the tags it sets on it), or an existing one with its tags and keys (``extra_keys``: what
        the call adds, such as ``ec2:IsLaunchTemplateResource``)."""
        if created or resource_id is None:
            return Resource.of("ec2", type_name, self.partition, self.region, self.account, created=created,
                               keys=keys or {}, request_tags=request_tags)  # fmt: skip
        return Resource.of("ec2", type_name, self.partition, self.region, self.account, resource_id,
                           tags=self.tags(resource_id),
                           keys={**self.keys(type_name, resource_id), **(extra_keys or {})})  # fmt: skip

    def by_id(self, resource_id):
        type_name = EC2_TYPES.get(resource_id.split("-", 1)[0])
        return None if type_name is None else self.resource(type_name, resource_id)

    def find(self, getter, *args):
        try:
            return getter(*args)
        except Exception:  # moto's InvalidVolume.NotFound and the like: IAM sees a resource without tags
            return None

    def volume(self, volume_id):
        return self.find(self.backend.get_volume, volume_id)

    def instance(self, instance_id):
        return self.find(self.backend.get_instance, instance_id)

    def keys(self, type_name, resource_id):
        if type_name == "volume":
            volume = self.volume(resource_id)
            if volume is None:
                return {}
            description = {"Encrypted": volume.encrypted, "AvailabilityZone": volume.zone.name if volume.zone else None,
                           "VolumeType": volume.volume_type, "Size": volume.size, "SnapshotId": volume.snapshot_id}  # fmt: skip
            return ec2_keys("volume", description)
        if type_name == "snapshot":
            snapshot = self.find(self.backend.get_snapshot, resource_id)
            if snapshot is None:
                return {}
            return ec2_keys("snapshot", {"Encrypted": snapshot.encrypted, "OwnerId": snapshot.owner_id,
                                         "VolumeSize": getattr(snapshot.volume, "size", None)})  # fmt: skip
        if type_name == "image":
            image = self.backend.amis.get(resource_id)
            if image is None:
                return {}
            return {"ec2:Owner": image.owner_id, "ec2:Public": image.is_public, "ec2:ImageType": image.image_type,
                    "ec2:RootDeviceType": image.root_device_type, "ec2:ImageID": image.id}  # fmt: skip
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

    def address(self, allocation_id=None, public_ip=None, association_id=None):
        """The Elastic IP a call names by allocation id, public IP or association id; None when none matches."""
        for address in self.backend.addresses:
            named = (address.allocation_id, address.public_ip, address.association_id)
            if any(given and given == value for given, value in zip((allocation_id, public_ip, association_id), named)):
                return address
        return None

    def launch_template_id(self, name):
        template = self.find(self.backend.get_launch_template_by_name, name) if name else None
        return template.id if template is not None else None

    def primary_interface(self, instance_id):
        instance = self.instance(instance_id)
        interface = (getattr(instance, "nics", None) or {}).get(0) if instance is not None else None
        return interface.id if interface is not None else None


class LaunchSource:
    """What a ``RunInstances`` call launches, as EC2 reads it: the request's own parameters over its launch
    template's version (``ec2:IsLaunchTemplateResource`` is true for a resource the template supplied)."""

    def __init__(self, params, state):
        self.params, self.state = params, state
        self.template, self.data = None, Params()
        template_id = params.one("LaunchTemplate.LaunchTemplateId")
        template_name = params.one("LaunchTemplate.LaunchTemplateName")
        if isinstance(params.one("LaunchTemplate"), dict):  # a JSON document
            template_id = params.one("LaunchTemplate").get("LaunchTemplateId")
            template_name = params.one("LaunchTemplate").get("LaunchTemplateName")
        version = params.one("LaunchTemplate.Version") or "$Default"
        if template_id or template_name:
            backend = state.backend
            self.template = state.find(backend.get_launch_template, template_id) if template_id else state.find(
                backend.get_launch_template_by_name, template_name)  # fmt: skip
            found = state.find(self.template.get_version, version) if self.template is not None else None
            self.data = Params(tree=found.data if found is not None else {})
            self.template_arn = state.resource("launch-template", self.template.id if self.template else "*").arn

    def value(self, name):
        """``(value, from the template)`` of a top-level parameter."""
        if self.params.one(name) is not None:
            return self.params.one(name), False
        return self.data.one(name), self.data.one(name) is not None

    def interfaces(self):
        """``([Params of each interface], from the template)``."""
        given = self.params.structures("NetworkInterfaces", "NetworkInterface")
        if given:
            return [item if isinstance(item, Params) else Params(tree=item) for item in given], False
        return [Params(tree=item) for item in self.data.structures("NetworkInterfaces")], True

    def security_groups(self):
        given = self.params.many("SecurityGroupIds", "SecurityGroupId")
        if given:
            return given, False
        return list(self.data.many("SecurityGroupIds") or []), True

    def block_devices(self):
        given = self.params.structures("BlockDeviceMappings", "BlockDeviceMapping")
        if given:
            return [item if isinstance(item, Params) else Params(tree=item) for item in given], False
        return [Params(tree=item) for item in self.data.structures("BlockDeviceMappings")], True

    def request_tags(self, resource_type):
        """The tags the request sets on ``resource_type`` (the template's, for a type the request does not tag)."""
        tags = _request_tags(self.params, (resource_type,))
        return tags or _request_tags(self.data, (resource_type,)) or None


def _flag(value):
    return None if value is None else str(value).lower() == "true"


def _run_instances(params, state):
    """ec2:RunInstances as the Service Authorization Reference and the EC2 user guide ("Example policies for working
    with RunInstances") authorise it: the instance it creates (its type, market, profile, metadata options, request
    tags), the image, the subnet, each security group, the network interface it creates (or the one it attaches),
    each volume it creates (the image's root volume and each block device mapping), the key pair and the launch
    template when named; every resource with ``ec2:LaunchTemplate`` and ``ec2:IsLaunchTemplateResource`` when a
    template is used. The tagging on create of each tagged type follows (``requests.tagging_on_create``)."""
    source = LaunchSource(params, state)
    common = {}
    if source.template is not None or source.params.one("LaunchTemplate.LaunchTemplateName") is not None:
        common["ec2:LaunchTemplate"] = source.template_arn

    def keys(from_template, **more):
        found = dict(common, **{k: v for k, v in more.items() if v is not None})
        if common:
            found["ec2:IsLaunchTemplateResource"] = bool(from_template)
        return found

    interfaces, interfaces_from_template = source.interfaces()
    primary = next((i for i in interfaces if str(i.one("DeviceIndex") or 0) == "0"), None)
    subnet_id, subnet_from_template = source.value("SubnetId")
    if primary is not None and primary.one("SubnetId"):
        subnet_id, subnet_from_template = primary.one("SubnetId"), interfaces_from_template
    subnet = state.find(state.backend.get_subnet, subnet_id) if subnet_id else None
    if subnet is None and not subnet_id:  # no subnet named: the default VPC's default subnet of the zone
        zone = source.value("Placement.AvailabilityZone")[0]
        defaults = state.find(state.backend.get_default_subnets) or {}
        subnet = defaults.get(zone) or next(iter(defaults.values()), None)
        subnet_id = subnet.id if subnet is not None else None
    zone = subnet.availability_zone if subnet is not None else source.value("Placement.AvailabilityZone")[0]
    vpc_arn = state.resource("vpc", subnet.vpc_id).arn if subnet is not None else None
    groups, groups_from_template = source.security_groups()
    if primary is not None and (primary.many("Groups", "SecurityGroupId") or primary.many("SecurityGroupIds")):
        groups = primary.many("Groups", "SecurityGroupId") or primary.many("SecurityGroupIds")
        groups_from_template = interfaces_from_template
    if not groups:  # none named: the VPC's default group
        default = state.find(state.backend.get_default_security_group, subnet.vpc_id if subnet else None)
        groups = [default.id] if default is not None else []

    instance_type, type_from_template = source.value("InstanceType")
    market = source.value("InstanceMarketOptions.MarketType")[0]
    if market is None and isinstance(source.value("InstanceMarketOptions")[0], dict):
        market = source.value("InstanceMarketOptions")[0].get("MarketType")
    profile = source.value("IamInstanceProfile.Arn")[0] or source.value("IamInstanceProfile.Name")[0]
    if isinstance(source.value("IamInstanceProfile")[0], dict):
        chosen = source.value("IamInstanceProfile")[0]
        profile = chosen.get("Arn") or chosen.get("Name")
    if profile and not profile.startswith("arn:"):
        profile = f"arn:{state.partition}:iam::{state.account}:instance-profile/{profile}"
    tokens = source.value("MetadataOptions.HttpTokens")[0]
    if tokens is None and isinstance(source.value("MetadataOptions")[0], dict):
        tokens = source.value("MetadataOptions")[0].get("HttpTokens")
    image_id, image_from_template = source.value("ImageId")
    image = state.find(state.backend.amis.get, image_id) if image_id else None
    instance_keys = keys(type_from_template, **{
        "ec2:InstanceType": instance_type or "m1.small", "ec2:AvailabilityZone": zone,
        "ec2:InstanceMarketType": market or "on-demand", "ec2:InstanceProfile": profile,
        "ec2:MetadataHttpTokens": tokens or "optional", "ec2:Tenancy": source.value("Placement.Tenancy")[0] or "default",
        "ec2:RootDeviceType": image.root_device_type if image is not None else None})  # fmt: skip
    resources = [state.resource("instance", created=True, keys=instance_keys,
                                request_tags=source.request_tags("instance")),
                 state.resource("image", image_id, extra_keys=keys(image_from_template)),
                 state.resource("subnet", subnet_id, extra_keys=keys(subnet_from_template, **{
                     "ec2:AvailabilityZone": zone, "ec2:Vpc": vpc_arn, "ec2:SubnetID": subnet_id}))]  # fmt: skip
    resources += [state.resource("security-group", group_id, extra_keys=keys(groups_from_template, **{
        "ec2:Vpc": vpc_arn, "ec2:SecurityGroupID": group_id})) for group_id in groups]  # fmt: skip
    if primary is not None and primary.one("NetworkInterfaceId"):
        resources.append(state.resource("network-interface", primary.one("NetworkInterfaceId"),
                                        extra_keys=keys(interfaces_from_template)))  # fmt: skip
    else:
        subnet_arn = state.resource("subnet", subnet_id).arn if subnet_id else None
        public = _flag(primary.one("AssociatePublicIpAddress")) if primary is not None else None
        resources.append(state.resource("network-interface", created=True, keys=keys(interfaces_from_template, **{
            "ec2:Subnet": subnet_arn, "ec2:Vpc": vpc_arn, "ec2:AvailabilityZone": zone,
            "ec2:AssociatePublicIpAddress": public}), request_tags=source.request_tags("network-interface")))  # fmt: skip
    devices, devices_from_template = source.block_devices()
    root = (image.block_device_mappings[0] if image is not None and image.block_device_mappings else None) or {}
    named = {device.one("DeviceName") for device in devices}
    volumes = [] if not root or root.get("DeviceName") in named else [(Params(tree=root), image_from_template)]
    volumes += [(device, devices_from_template) for device in devices]
    for device, from_template in volumes:
        ebs = device.one("Ebs") if isinstance(device.one("Ebs"), dict) else None

        def ebs_value(name, ebs=ebs, device=device):
            return ebs.get(name) if ebs is not None else device.one(f"Ebs.{name}")

        if ebs is None and not any(key.startswith("Ebs.") for key in device.flat):
            continue  # an instance store or a NoDevice mapping creates no volume
        snapshot = ebs_value("SnapshotId")
        resources.append(state.resource("volume", created=True, keys=keys(from_template, **{
            "ec2:Encrypted": bool(_flag(ebs_value("Encrypted"))), "ec2:VolumeSize": ebs_value("VolumeSize"),
            "ec2:VolumeType": ebs_value("VolumeType"), "ec2:AvailabilityZone": zone,
            "ec2:ParentSnapshot": state.resource("snapshot", snapshot).arn if snapshot else None}),
            request_tags=source.request_tags("volume")))  # fmt: skip
    key_name, key_from_template = source.value("KeyName")
    if key_name:
        resources.append(state.resource("key-pair", key_name, extra_keys=keys(key_from_template, **{
            "ec2:KeyPairName": key_name})))  # fmt: skip
    if source.template is not None:
        resources.append(state.resource("launch-template", source.template.id, extra_keys=keys(False)))
    requests = [AuthorizationRequest("ec2:RunInstances", tuple(resources))]
    role_arn = _profile_role(profile, state)
    if role_arn is not None:
        # The instance gets the profile's role: IAM authorises iam:PassRole on it, passed to EC2, whether the profile
        # is in the request or in its launch template (IAM user guide, "Use an IAM role to grant permissions to
        # applications running on Amazon EC2 instances": "the user must have permission to pass the role").
        requests.append(AuthorizationRequest("iam:PassRole", (Resource("role", role_arn),),
                                             keys={"iam:PassedToService": "ec2.amazonaws.com"}))  # fmt: skip
    return requests


def _profile_role(profile_arn, state):
    """The ARN of the role in the instance profile ``profile_arn``, or None (no profile, an unknown one: EC2 refuses
    the launch itself, or one without a role: nothing is passed)."""
    if not profile_arn:
        return None
    from moto.iam.models import iam_backends

    name = profile_arn.rsplit("/", 1)[-1]
    backend = iam_backends[state.account][state.partition]
    found = next((p for p in backend.instance_profiles.values() if p.name == name), None)
    roles = list(getattr(found, "roles", []) or [])
    return roles[0].arn if roles else None


def _ec2(action, params, state):
    """The EC2 calls the handler makes on resources; None for another."""
    ec2 = state
    if action == "RunInstances":
        return _run_instances(params, state)
    if action == "SendSpotInstanceInterruptions":
        # What AWS FIS calls as the experiment's role (sandbox/rules/fis.py): every target instance.
        instances = tuple(ec2.resource("instance", i) for i in params.many("InstanceIds", "InstanceId"))
        return [AuthorizationRequest("ec2:SendSpotInstanceInterruptions", instances)]
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
    if action == "DeleteVolume":
        return [AuthorizationRequest("ec2:DeleteVolume", (ec2.resource("volume", params.one("VolumeId")),))]
    if action in ("ReleaseAddress", "DisassociateAddress"):
        address = ec2.address(params.one("AllocationId"), params.one("PublicIp"), params.one("AssociationId"))
        if address is None:
            return None
        resources = [ec2.resource("elastic-ip", address.allocation_id, extra_keys={
            "ec2:AllocationId": address.allocation_id, "ec2:Domain": address.domain,
            "ec2:PublicIpAddress": address.public_ip})]  # fmt: skip
        interface = getattr(address, "eni", None)
        if action == "DisassociateAddress" and interface is not None:
            resources.append(ec2.resource("network-interface", interface.id))
        return [AuthorizationRequest(f"ec2:{action}", tuple(resources))]
    if action == "DescribeSnapshotAttribute":
        return [
            AuthorizationRequest("ec2:DescribeSnapshotAttribute", (ec2.resource("snapshot", params.one("SnapshotId")),))
        ]
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


# The Auto Scaling calls that set tags (``aws:RequestTag/*``, ``aws:TagKeys``): the group's on create, the named ones.
AUTOSCALING_TAGGING = ("CreateAutoScalingGroup", "CreateOrUpdateTags")


def _autoscaling(action, params, account, region, partition="aws"):
    """The Auto Scaling calls on a group: the group named by ``AutoScalingGroupName`` (by its instance for
    ``SetInstanceHealth``; by each tag's ``ResourceId`` for ``CreateOrUpdateTags`` and ``DeleteTags``), with its tags
    (``aws:ResourceTag/*``, ``autoscaling:ResourceTag/*``); the tags a create or tagging call sets as
    ``aws:RequestTag/*``, the keys ``DeleteTags`` removes as ``aws:TagKeys``. None for a call naming no group."""
    backend = get_backend("autoscaling")[account][region]
    names = [params.one("AutoScalingGroupName")] if params.one("AutoScalingGroupName") else []
    if not names and action == "SetInstanceHealth":
        instance_id = params.one("InstanceId")
        names = [group.name for group in backend.autoscaling_groups.values()
                 if any(state.instance.id == instance_id for state in group.instance_states)][:1]  # fmt: skip
    tag_items = params.structures("Tags") if action in ("CreateOrUpdateTags", "DeleteTags") else []
    if not names and tag_items:
        named = [item.get("ResourceId") if isinstance(item, dict) else item.one("ResourceId") for item in tag_items]
        names = list(dict.fromkeys(name for name in named if name))
    found = catalogue.find_action(f"autoscaling:{action}")
    if not names or found is None or found.resource("autoScalingGroup") is None:
        return None
    resources = []
    for name in names:
        group = backend.autoscaling_groups.get(name)
        if group is None:
            arn = f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{name}"
            tags = {}
        else:
            arn = group.arn
            tags = {
                tag["Key"] if "Key" in tag else tag["key"]: tag.get("Value", tag.get("value", "")) for tag in group.tags
            }
        resources.append(Resource("autoScalingGroup", arn, tags=tags))
    request_tags = _tags_of(params, "Tags") if action in AUTOSCALING_TAGGING else None
    tag_keys = tuple(_tags_of(params, "Tags")) if action == "DeleteTags" else None
    group = [AuthorizationRequest(f"autoscaling:{action}", tuple(resources), request_tags=request_tags or None,
                                  tag_keys=tag_keys)]  # fmt: skip
    if action in GROUP_LAUNCHES:
        existing = backend.autoscaling_groups.get(names[0])
        return group + _group_launch(params, Ec2State(account, region, partition), existing)
    return group


# The Auto Scaling calls that make the caller launch from a launch template (EC2 Auto Scaling user guide, "Amazon EC2
# Auto Scaling API permissions": creating a group needs ec2:RunInstances "to launch instances when a launch template
# is provided", iam:PassRole "when ... a launch template that specifies an instance profile ... is provided" and
# ec2:CreateTags "when a launch template with a tag specification is provided"; "Control Amazon EC2 launch template
# usage in Auto Scaling groups": "permissions for ec2:RunInstances are only checked when an Auto Scaling group is
# created or updated using a launch template"). An update that names no template (the handler's zone steering, which
# sets only VPCZoneIdentifier) asks none of them.
GROUP_LAUNCHES = ("CreateAutoScalingGroup", "UpdateAutoScalingGroup")
# Where a group request names its launch template (the query protocol's flattened members).
GROUP_TEMPLATE_SPECS = ("LaunchTemplate.", "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.")


def _group_template(params):
    """``(template id, template name, version)`` of the launch template a group request names, or None."""
    for prefix in GROUP_TEMPLATE_SPECS:
        template_id, name, version = (_member(params, f"{prefix}{field}") for field in
                                      ("LaunchTemplateId", "LaunchTemplateName", "Version"))  # fmt: skip
        if template_id or name:
            return template_id, name, version
    return None


def _member(params, dotted):
    """A nested member by its dotted path: flattened (the query protocol as sent) or in a document (moto's parsed
    parameters)."""
    if params.one(dotted) is not None:
        return params.one(dotted)
    head, *rest = dotted.split(".")
    value = params.one(head)
    for name in rest:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _template_versions(template, version):
    """The version numbers of ``template`` a group's ``Version`` names, as Auto Scaling reads it: none given is
    ``$Default`` (the API reference of ``LaunchTemplateSpecification``: "If you do not specify a value, it defaults
    to $Default"), ``$Default`` and ``$Latest`` the template's, a number that version. A version Auto Scaling would
    not accept (``0``, ``-1``, ``1.0``, a number past the latest) is judged on every version of the template: moto
    would read some of those spellings as another version, and none may launch unjudged."""
    numbers = [found.number for found in template.versions]
    text = "$Default" if version is None or str(version) == "" else str(version)
    if text.lower() == "$default":
        return [template.default_version_number]
    if text.lower() == "$latest":
        return [numbers[-1]]
    if text.isdigit() and str(int(text)) == text and int(text) in numbers:
        return [int(text)]
    return numbers


def _group_launch(params, state, group):
    """The launches a group request with a launch template asks of its caller: ``ec2:RunInstances`` from that template
    version into the group's first subnet (the request's ``VPCZoneIdentifier``, else the group's), as ``_run_instances``
    authorises a launch from a template (with the tagging on create of what the template tags), and ``iam:PassRole``
    of the template's instance profile's role with ``iam:PassedToService`` ``ec2.amazonaws.com``: the role goes to the
    group's instances, through EC2 (EC2 Auto Scaling user guide, "Amazon EC2 Auto Scaling API permissions":
    iam:PassRole "to pass an IAM role to the service or to EC2 instances on launch"; "IAM role for applications that
    run on Amazon EC2 instances": "An instance profile is a container for an IAM role that allows Amazon EC2 to pass
    the IAM role to an instance"), as for ``ec2:RunInstances`` itself, not to ``autoscaling.amazonaws.com`` (which
    is the service of a group's own service-linked role). None for a request that names no template."""
    spec = _group_template(params)
    if spec is None:
        return []
    template_id, name, version = spec
    backend = state.backend
    template = state.find(backend.get_launch_template, template_id) if template_id else state.find(
        backend.get_launch_template_by_name, name)  # fmt: skip
    subnets = _member(params, "VPCZoneIdentifier") or (getattr(group, "vpc_zone_identifier", None) if group else None)
    subnet = next((item.strip() for item in str(subnets or "").split(",") if item.strip()), None)
    launch = {"MinCount": "1", "MaxCount": "1", **({"SubnetId": subnet} if subnet else {})}
    if template_id or template is not None:
        launch["LaunchTemplate.LaunchTemplateId"] = template.id if template is not None else template_id
    else:
        launch["LaunchTemplate.LaunchTemplateName"] = name
    versions = _template_versions(template, version) if template is not None else [None]
    requests = []
    for number in versions:
        one = dict(launch, **({"LaunchTemplate.Version": str(number)} if number is not None else {}))
        for request in _run_instances(Params(flat=one), state):
            request = replace(request, keys={**request.keys, "ec2:Region": state.region}) if request.action.startswith(
                "ec2:") else request  # fmt: skip
            if request not in requests:
                requests.append(request)
    return requests


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
    # RegisterTargets, DeregisterTargets (the instance agent), ModifyTargetGroup...: the target group by its ARN
    ("elasticloadbalancing", "targetgroup"): ("TargetGroupArn",),
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


def _kms_key_keys(arn, account, region):
    """``kms:ResourceAliases`` of an existing key: the aliases it has (``alias/<name>``), as KMS puts them in the
    context of an operation on the key (AWS KMS developer guide, "kms:ResourceAliases"); none for a key that does not
    exist."""
    key_id = arn.rsplit("/", 1)[-1]
    backend = get_backend("kms")[account][region]
    if key_id not in backend.keys:
        return {}
    return {"kms:ResourceAliases": sorted(alias.alias_name for alias in backend.list_aliases(key_id))}


def _current_tags(service, type_name, arn, account, region):
    """The tags an existing function, log group, topic or alarm carries in moto's state, as IAM puts them in the
    context (``aws:ResourceTag/*``, which the Service Authorization Reference lists for the resource types
    ``function`` of AWS Lambda, ``log-group`` of Amazon CloudWatch Logs, ``topic`` of Amazon SNS and ``alarm`` of
    Amazon CloudWatch; ``requests`` keeps them only where the action's row lists the key); none for a resource that
    does not exist, or of another type."""
    try:
        if (service, type_name) == ("lambda", "function"):
            name = arn.split(":function:", 1)[1].split(":", 1)[0]
            return dict(get_backend("lambda")[account][region].get_function(name).tags or {})
        if (service, type_name) == ("logs", "log-group"):
            backend = get_backend("logs")[account][region]
            group = backend.groups.get(arn.split(":log-group:", 1)[1])
            return backend.tagger.get_tag_dict_for_resource(group.arn) if group is not None else {}
        if (service, type_name) == ("sns", "topic"):
            topic = get_backend("sns")[account][region].topics.get(arn)
            return dict(topic._tags) if topic is not None else {}
        if (service, type_name) == ("cloudwatch", "alarm"):
            backend = get_backend("cloudwatch")[account][region]
            alarm = backend.alarms.get(arn.split(":alarm:", 1)[1])
            return backend.tagger.get_tag_dict_for_resource(alarm.alarm_arn) if alarm is not None else {}
    except Exception:  # moto's ResourceNotFound and the like: IAM sees a resource without tags
        return {}
    return {}


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
            keys = _kms_key_keys(arn, account, region) if (service, part.name) == ("kms", "key") else {}
            tags = _current_tags(service, part.name, arn, account, region)
            resources.append(Resource(part.name, arn, tags=tags, keys=keys))
    named = {resource.type for resource in resources}
    if not resources or any(part.name not in named for part in found.required_resources):
        return None
    return [AuthorizationRequest(found.full_name, tuple(resources))]


FIS_SERVICE = "fis.amazonaws.com"


def _fis(found, params, path, account, region, partition):
    """AWS FIS as the reference and the FIS user guide ("AWS Fault Injection Service policy examples") authorise it:

    - ``fis:CreateExperimentTemplate`` on the template it creates (with the request's tags) and on each FIS action the
      template uses (``action/<action id>``); and ``iam:PassRole`` on the template's ``roleArn`` with
      ``iam:PassedToService`` ``fis.amazonaws.com``: the guide's "Example: Create an experiment template for a specific
      action" grants ``iam:PassRole`` on the experiment role beside it, since FIS acts as that role in every
      experiment of the template ("IAM roles for AWS FIS experiments");
    - ``fis:StartExperiment`` on the template (its tags as ``aws:ResourceTag/*``) and on the experiment it creates
      (the request's tags as ``aws:RequestTag/*``); starting passes no role (the guide's "Example: Start an
      experiment" grants none);
    - the other calls name their template or experiment in the path (``_named``), a template with its tags (the
      reference's ``experiment-template`` type takes ``aws:ResourceTag/*``); ``fis:UpdateExperimentTemplate`` also on
      each FIS action the update names."""

    def fis(type_name, *ids, **fields):
        return Resource.of("fis", type_name, partition, region, account, *ids, **fields)

    tags = params.one("tags") or None
    actions = sorted(
        {spec.get("actionId") for spec in (params.one("actions") or {}).values() if spec and spec.get("actionId")}
    )
    if found.name == "CreateExperimentTemplate":
        resources = (*(fis("action", action) for action in actions), fis("experiment-template", created=True))
        requests = [AuthorizationRequest(found.full_name, resources, request_tags=tags)]
        if params.one("roleArn"):
            requests.append(
                AuthorizationRequest(
                    "iam:PassRole",
                    (Resource("role", params.one("roleArn")),),
                    keys={"iam:PassedToService": FIS_SERVICE},
                )
            )
        return requests
    if found.name == "StartExperiment":
        template_id = params.one("experimentTemplateId")
        backend = get_backend("fis")[account][region]
        template = backend.experiment_templates.get(template_id) if template_id else None
        template_tags = backend.tagger.get_tag_dict_for_resource(template.arn) if template is not None else {}
        resources = (
            fis("experiment-template", template_id or "*", tags=template_tags),
            fis("experiment", created=True),
        )
        return [AuthorizationRequest(found.full_name, resources, request_tags=tags)]
    named = _named(found, params, path, account, region, partition)
    if not named:
        return named
    backend = get_backend("fis")[account][region]

    def with_tags(resource):
        template = backend.experiment_templates.get(resource.arn.rsplit("/", 1)[-1])
        if resource.type != "experiment-template" or template is None:
            return resource
        return replace(resource, tags=backend.tagger.get_tag_dict_for_resource(template.arn))

    if found.name == "UpdateExperimentTemplate":  # and on each FIS action the updated template uses
        named = [replace(named[0], resources=(*named[0].resources, *(fis("action", action) for action in actions)))]
    return [replace(request, resources=tuple(with_tags(r) for r in request.resources)) for request in named]


EVENT_SOURCE_MAPPING_ACTIONS = ("CreateEventSourceMapping", "GetEventSourceMapping", "UpdateEventSourceMapping",
                                "DeleteEventSourceMapping")  # fmt: skip


def _function_arn(name, account, region, partition):
    """A function as ``FunctionName`` gives it (a name, ``name:qualifier``, a partial ``account:function:name`` or an
    ARN) as its ARN; ``$LATEST`` is the unqualified function."""
    name = str(name).removesuffix(":$LATEST")
    if name.startswith("arn:"):
        return name
    if ":function:" in name:
        return f"arn:{partition}:lambda:{region}:{name}"
    return f"arn:{partition}:lambda:{region}:{account}:function:{name}"


def _event_source_mapping(found, params, path, account, region, partition):
    """The event source mapping calls as the reference authorises them, with ``lambda:FunctionArn`` (the Lambda
    developer guide, "Resources and conditions for Lambda actions": the function a mapping invokes):

    - ``lambda:CreateEventSourceMapping`` has no resource type: on ``*``, with the function the request names and the
      request's tags (``aws:RequestTag/*``);
    - ``Get``, ``Update`` and ``DeleteEventSourceMapping`` on the mapping the path names
      (``/2015-03-31/event-source-mappings/<UUID>``), with the function it invokes (an update that names another
      function: that one, the function the mapping would invoke)."""
    backend = get_backend("lambda")[account][region]
    if found.name == "CreateEventSourceMapping":
        function = params.one("FunctionName")
        keys = {"lambda:FunctionArn": _function_arn(function, account, region, partition)} if function else {}
        return [AuthorizationRequest(found.full_name, keys=keys, request_tags=params.one("Tags") or None)]
    (uuid,) = _name_in_path(path, ("event-source-mappings",)) or (None,)
    if uuid is None:
        return None
    mapping = backend.get_event_source_mapping(uuid)
    function = params.one("FunctionName") if found.name == "UpdateEventSourceMapping" else None
    if function is None and mapping is not None:
        function = mapping.function_arn
    keys = {"lambda:FunctionArn": _function_arn(function, account, region, partition)} if function else {}
    resource = Resource.of("lambda", "eventSourceMapping", partition, region, account, uuid)
    return [AuthorizationRequest(found.full_name, (resource,), keys=keys)]


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
    if service == "lambda" and found.name in EVENT_SOURCE_MAPPING_ACTIONS:
        return _event_source_mapping(found, params, path, account, region, partition)
    if not found.resources:
        keys = {}
        if found.full_name == "cloudwatch:PutMetricData" and params.one("Namespace"):
            keys["cloudwatch:namespace"] = params.one("Namespace")
        return [AuthorizationRequest(found.full_name, keys=keys)]
    if service == "autoscaling":
        return _autoscaling(action, params, account, region, partition)
    if service == "ssm":
        return _ssm(action, params, Ec2State(account, region, partition))
    if service == "sns" and params.one("TopicArn"):
        topic_arn = params.one("TopicArn")
        tags = _current_tags("sns", "topic", topic_arn, account, region)
        return [AuthorizationRequest(found.full_name, (Resource("topic", topic_arn, tags=tags),))]
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
        alarms = []
        for name in names:  # each with its tags: DeleteAlarms on an alarm is authorised with aws:ResourceTag/*
            tags = _current_tags("cloudwatch", "alarm", base + name, account, region)
            alarms.append(Resource("alarm", base + name, tags=tags))
        return [AuthorizationRequest(found.full_name, tuple(alarms), request_tags=request_tags or None)]
    if service == "fis":
        return _fis(found, params, path, account, region, partition)
    if any((service, part.name) in NAMED or (service, part.name) in NAMED_IN_PATH for part in found.resources):
        named = _named(found, params, path, account, region, partition)
        passed = _passed_role(service, action, params)
        return named if named is None or passed is None else [*named, passed]
    return None


# The calls that hand a role to a service, the parameter naming it, and the service (iam:PassedToService): IAM
# authorises iam:PassRole on that role as part of the call (IAM user guide, "Grant a user permissions to pass a role
# to an AWS service": "the user must have permissions to pass the role to the service"; Lambda developer guide,
# "Lambda execution role": creating or updating a function with a role needs iam:PassRole on it).
PASSES_ROLE = {
    ("lambda", "CreateFunction"): ("Role", "lambda.amazonaws.com"),
    ("lambda", "UpdateFunctionConfiguration"): ("Role", "lambda.amazonaws.com"),
}


def _passed_role(service, action, params):
    """The iam:PassRole request a call makes (``PASSES_ROLE``), or None when it passes no role."""
    entry = PASSES_ROLE.get((service, action))
    role_arn = params.one(entry[0]) if entry else None
    if not role_arn:
        return None
    return AuthorizationRequest("iam:PassRole", (Resource("role", str(role_arn)),),
                                keys={"iam:PassedToService": entry[1]})  # fmt: skip
