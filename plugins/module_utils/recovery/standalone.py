# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One instance launched from a service's launch template outside its group (restore.yml's standalone target).

The template carries everything a replacement needs (image, instance profile, the instance agent in its user
data, IMDSv2, encrypted root), so a restored instance boots like one the group launched: the agent mounts the
lineage's volume once the data is attached. What a restore chooses on top: the subnet, the instance type and
the market (On-Demand, or one-time Spot that terminates on interruption, as a group's Spot instance does).

amazon.aws.ec2_instance cannot do this: it drops the subnet when given a launch template and has no market
options; amazon.aws.ec2_spot_instance takes no launch template.
"""

from __future__ import annotations

import re
import uuid

from .aws import SYSTEM_CLOCK, call
from .errors import AwsApiError, InvalidInput, NotFound
from .instances import ensure_running, find_instances
from . import tags as t

MARKETS = ("on-demand", "spot")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]+$")
# Keys of the template's primary interface a request must carry over: a request's interfaces replace the template's.
INTERFACE_KEYS = ("Groups", "DeleteOnTermination", "AssociatePublicIpAddress", "Description", "InterfaceType")


class LaunchResult:
    def __init__(self, name, template):
        self.changed = False
        self.name, self.launch_template = name, template
        self.instance_id = self.availability_zone = self.subnet_id = self.instance_type = None
        self.market = self.private_ip = self.state = None
        self.started = False

    def to_dict(self):
        return {
            "changed": self.changed,
            "name": self.name,
            "launch_template": self.launch_template,
            "instance_id": self.instance_id,
            "availability_zone": self.availability_zone,
            "subnet_id": self.subnet_id,
            "instance_type": self.instance_type,
            "market": self.market,
            "private_ip": self.private_ip,
            "state": self.state,
            "started": self.started,
        }


def template_data(ec2, template_name, version="$Default"):
    """The launch template version's data; ``NotFound`` names the template."""
    try:
        versions = call(ec2, "describe_launch_template_versions", LaunchTemplateName=template_name, Versions=[version])[
            "LaunchTemplateVersions"
        ]
    except AwsApiError as exc:
        if exc.aws_code in (
            "InvalidLaunchTemplateName.NotFoundException",
            "InvalidLaunchTemplateId.NotFound",
            "InvalidLaunchTemplateName.MalformedException",
        ):
            raise NotFound(
                f"launch template {template_name} does not exist; deploy the service first",
                launch_template=template_name,
            ) from exc
        raise
    if not versions:
        raise NotFound(f"launch template {template_name} has no version {version}", launch_template=template_name)
    return versions[0]["LaunchTemplateData"]


def run_request(data, template_name, version, subnet_id, instance_type, market, name, tags, client_token):
    """The RunInstances request: the template, plus the subnet, type, market and tags a restore chose."""
    request = {
        "LaunchTemplate": {"LaunchTemplateName": template_name, "Version": version},
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token,
    }
    interfaces = data.get("NetworkInterfaces") or []
    primary = next((i for i in interfaces if i.get("DeviceIndex", 0) == 0), None)
    if primary is not None:
        # The template's security groups live on its interface: a subnet given beside it would conflict.
        request["NetworkInterfaces"] = [
            {**{k: primary[k] for k in INTERFACE_KEYS if k in primary}, "DeviceIndex": 0, "SubnetId": subnet_id}
        ]
    else:
        request["SubnetId"] = subnet_id
    if instance_type:
        request["InstanceType"] = instance_type
    # IMDSv2 is required whatever the template says (the fleet's templates say so too).
    request["MetadataOptions"] = {
        **{
            k: v
            for k, v in (data.get("MetadataOptions") or {}).items()
            if k in ("HttpEndpoint", "HttpPutResponseHopLimit", "InstanceMetadataTags")
        },
        "HttpTokens": "required",
    }
    if market == "spot":
        request["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    # Tags given in the request replace the template's for that resource type: carry the template's over.
    template_tags = {spec["ResourceType"]: t.as_dict(spec.get("Tags")) for spec in data.get("TagSpecifications", [])}
    instance_tags = {**template_tags.get("instance", {}), **tags, "Name": name}
    request["TagSpecifications"] = [{"ResourceType": "instance", "Tags": t.as_list(instance_tags)}]
    for resource_type in ("volume", "network-interface"):
        if template_tags.get(resource_type):
            request["TagSpecifications"].append(
                {"ResourceType": resource_type, "Tags": t.as_list(template_tags[resource_type])}
            )
    return request


def _describe(result, instance):
    result.instance_id, result.state = instance["InstanceId"], instance["State"]["Name"]
    result.availability_zone = instance["Placement"]["AvailabilityZone"]
    result.subnet_id, result.instance_type = instance.get("SubnetId"), instance["InstanceType"]
    result.market = "spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand"
    result.private_ip = instance.get("PrivateIpAddress")


def launch_from_template(
    ec2,
    template_name,
    subnet_id,
    name,
    lineage,
    instance_type=None,
    market="on-demand",
    extra_tags=None,
    dry_run=False,
    timeout=600,
    clock=SYSTEM_CLOCK,
):
    """Launch (or find) the instance called ``name`` of ``lineage`` from the template; wait until it runs.

    Idempotent by its Name and lineage tags: an instance of that name in any live state is the one (a stopped
    one is started), whatever its subnet or type.
    """
    if market not in MARKETS:
        raise InvalidInput(f"market must be one of {', '.join(MARKETS)}, got {market!r}")
    if not SUBNET_ID.match(subnet_id or ""):
        raise InvalidInput(f"{subnet_id!r} is not a subnet id (expected subnet-...)")
    if instance_type and not INSTANCE_TYPE.match(instance_type):
        raise InvalidInput(f"{instance_type!r} is not an instance type (expected e.g. m6i.large)")
    result = LaunchResult(name, template_name)
    existing = find_instances(ec2, {"Name": name, t.LINEAGE: lineage})
    if len(existing) > 1:
        raise InvalidInput(
            f"{len(existing)} instances are called {name} in lineage {lineage} "
            f"({', '.join(i['InstanceId'] for i in existing)}); terminate the extra ones",
            instance_ids=[i["InstanceId"] for i in existing],
        )
    if existing:
        instance, started = ensure_running(ec2, existing[0]["InstanceId"], dry_run, timeout, clock)
        _describe(result, instance)
        result.changed = result.started = started
        return result
    data = template_data(ec2, template_name)
    result.changed, result.subnet_id, result.market = True, subnet_id, market
    result.instance_type = instance_type or data.get("InstanceType")
    if dry_run:
        return result
    # A fresh token per launch: botocore's retries of this request stay idempotent, while a later restore under
    # the same name (after the first was terminated) is not answered with the terminated instance.
    token = uuid.uuid4().hex
    request = run_request(
        data,
        template_name,
        "$Default",
        subnet_id,
        instance_type,
        market,
        name,
        {**(extra_tags or {}), t.LINEAGE: lineage},
        token,
    )
    launched = call(ec2, "run_instances", **request)["Instances"][0]
    instance, _started = ensure_running(ec2, launched["InstanceId"], False, timeout, clock)
    _describe(result, instance)
    return result
