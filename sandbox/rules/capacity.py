"""EC2 capacity: launches refused for lack of capacity, and Auto Scaling's failed launches.

AWS (EC2 API reference "Error codes for the Amazon EC2 API", server error ``InsufficientInstanceCapacity``: "There
is not enough capacity to fulfill your request ... wait for additional capacity to become available ... or launch in
a different Availability Zone"; EC2 user guide "Troubleshoot Amazon EC2 instance launch issues: Insufficient instance
capacity"; EC2 Auto Scaling API reference DescribeScalingActivities ("If an attempt to launch instances failed, the
StatusCode value is Failed ... and the StatusMessage element in the response indicates the cause of the failure"),
AvailabilityZoneDistribution; EC2 Auto Scaling user guide "Troubleshoot Amazon EC2 Auto Scaling: capacity limits",
"Rebalancing activities" ("if an Availability Zone has insufficient capacity ... Amazon EC2 Auto Scaling launches
instances in another Availability Zone"), "Amazon EC2 Auto Scaling event reference" (``EC2 Instance Launch
Unsuccessful``)):

* ``RunInstances`` into a zone (and instance type) without capacity fails with HTTP 500 ``InsufficientInstanceCapacity``
  "We currently do not have sufficient <type> capacity in the Availability Zone you requested (<zone>). Our system
  will be working on provisioning additional capacity. You can currently get <type> capacity by not specifying an
  Availability Zone in your request or choosing <zones with capacity>." (the last sentence only when some zone has
  capacity); for a Spot request "There is no Spot capacity available that matches your request."; a request that
  names no zone (no subnet, no placement) goes to a zone with capacity;
* a group's launch into such a zone fails: a scaling activity with ``StatusCode`` ``Failed``, ``Description``
  "Launching a new EC2 instance.  Status Reason: <message>" and ``StatusMessage`` "<EC2's message> Launching EC2
  instance failed." (a group with a mixed instances policy launches through EC2 Fleet: "Could not launch On-Demand
  Instances. InsufficientInstanceCapacity - <EC2's message> Launching EC2 instance failed.", ``Spot Instances`` for
  its Spot part), visible in ``DescribeScalingActivities`` and put on the bus as ``EC2 Instance Launch Unsuccessful``;
* a group keeps "an equal number of instances across enabled Availability Zones" (EC2 Auto Scaling user guide,
  "Auto Scaling group Availability Zone distribution"): it launches into the zone where it has the fewest instances;
* a group with a mixed instances policy launches through EC2 Fleet, whose allocation strategies choose among the
  Spot pools (instance type x zone) of its overrides that have capacity (EC2 Auto Scaling user guide, "Allocation
  strategies for multiple instance types": ``price-capacity-optimized`` "requests Spot Instances from the pools
  that we believe have the lowest chance of interruption"): in the zone it chose it takes another override's type
  when the first's pool is empty, and fails there only when no override has capacity in that zone;
* with ``CapacityDistributionStrategy`` ``balanced-best-effort`` (AWS's default) the group then tries its other zones,
  in order; with ``balanced-only`` it keeps to the zone it chose;
* when no zone could take the launch the group tries again later, and launches what is missing once capacity is back.

**Choices.** AWS does not publish how soon a group tries again; activity histories show failed launches repeating
tens of seconds to minutes apart. The sandbox retries every ``asg_launch_retry`` modeled seconds (default
``RETRY_SECONDS``, 60; the ``latency`` control sets it), so a test advances to the retry exactly. The zones a group
tries are ordered by how many of its instances each holds, fewest first; AWS does not publish how it breaks a tie,
and the sandbox takes ``VPCZoneIdentifier``'s order (or ``AvailabilityZones``'), so a group's first launch goes to its
first subnet's zone as moto places it. AWS does not say either whether an instance being replaced launch-first (the
launch-before-terminate maintenance policy, or an Unhealthy one) still counts in its zone while its replacement
launches: by default the sandbox does not count it, since it is no longer the group's capacity; the
``asg_balance_counts_replaced`` setting (``latency`` control, 1 to count it) gives the other reading, under which a
group of one in two zones replaces its instance in the *other* zone (benchmarks/zones.py measures both). Within a
zone the overrides are tried in their order (price and interruption rate are not modeled, so the first override with
capacity is the one the allocation strategy would pick). A suspended ``Launch`` process
still launches nothing: the retry asks the group for its capacity, and the Auto Scaling rule suppresses the launch.

Control ``ec2/capacity``: ``{"zone": "us-east-1a", "instance_type": "t3.micro", "available": false}`` takes the
capacity of that type (every type without ``instance_type``) away in the zone, ``"available": true`` gives it back
(without ``instance_type``: everything taken in the zone), ``{"reset": true}`` gives everything back; every call answers
the zones and types without capacity. Every refused launch is recorded (``records`` name ``failed_launches``: group or
null, zone, subnet, instance type, market, code, message, activity id, time).

Not modeled: Auto Scaling's rebalancing back into a zone whose capacity returned (``AZRebalance``), its administrative
suspension of a group that failed to launch for a day, capacity for ``StartInstances`` of a stopped instance.

moto 5.2.5 launches whatever is asked wherever it is asked and answers ``DescribeScalingActivities`` with no activity.
"""

from __future__ import annotations

from .. import instance_lifecycle as lifecycle
from . import scaling_activities
from .autoscaling import CAPACITY_STATES, RULES, zone_strategy

CODE = "InsufficientInstanceCapacity"
EVERY_TYPE = "*"
RETRY_SECONDS = 60.0
GROUP_NAME_TAG = "aws:autoscaling:groupName"
LAUNCH_FAILED = "Launching EC2 instance failed."
SPOT_MESSAGE = "There is no Spot capacity available that matches your request."
UNSUCCESSFUL = "EC2 Instance Launch Unsuccessful"


def _refused(context):
    """{(zone, instance type or EVERY_TYPE)} without capacity (cleared with the context's other control state)."""
    return context.controls_state.setdefault("capacity", set())


def has_capacity(context, zone, instance_type):
    refused = _refused(context)
    return (zone, EVERY_TYPE) not in refused and (zone, instance_type) not in refused


def _region_zones(ec2_backend):
    return [zone.name for zone in ec2_backend.describe_availability_zones()]


def ec2_message(context, ec2_backend, zone, instance_type, spot=False):
    """EC2's InsufficientInstanceCapacity message for a launch into ``zone``."""
    if spot:
        return SPOT_MESSAGE
    message = (
        f"We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested "
        f"({zone}). Our system will be working on provisioning additional capacity."
    )
    others = [
        name for name in _region_zones(ec2_backend) if name != zone and has_capacity(context, name, instance_type)
    ]
    if others:
        message += (
            f" You can currently get {instance_type} capacity by not specifying an Availability Zone in your "
            f"request or choosing {', '.join(others)}."
        )
    return message


class InsufficientCapacity(Exception):  # answered by the RunInstances response below, with HTTP 500
    def __init__(self, message):
        super().__init__(message)
        self.message = message


# ---- RunInstances -------------------------------------------------------------------------------------------
def _template_data(ec2_backend, kwargs):
    spec = kwargs.get("launch_template")
    return ec2_backend._get_template_from_args(spec).data if spec else {}  # pylint: disable=protected-access


def requested_zone(ec2_backend, kwargs):
    """The zone the request names: its subnet's, else its placement's; None when it names none."""
    subnet_id = kwargs.get("subnet_id") or next(
        (nic["SubnetId"] for nic in kwargs.get("nics") or [] if "SubnetId" in nic), None
    )
    if subnet_id:
        return ec2_backend.get_subnet(subnet_id).availability_zone
    return kwargs.get("placement")


def launch_zone(context, ec2_backend, kwargs, instance_type):
    """Where EC2 launches: the zone the request names; without one, moto's choice (the region's first zone) unless it
    lacks capacity and another zone has some."""
    zone = requested_zone(ec2_backend, kwargs)
    if zone is not None:
        return zone
    default = ec2_backend.region_name + "a"
    if has_capacity(context, default, instance_type):
        return default
    zone = next((name for name in _region_zones(ec2_backend) if has_capacity(context, name, instance_type)), default)
    kwargs["placement"] = zone
    return zone


def launch_type(ec2_backend, kwargs):
    template_type = _template_data(ec2_backend, kwargs).get("InstanceType")
    if kwargs.get("is_instance_type_default") and template_type:
        return template_type
    return kwargs.get("instance_type") or "m1.small"


def _spot_request(ec2_backend, kwargs):
    market = kwargs.get("instance_market_options")  # moto passes the request's MarketType
    if not market:
        market = (_template_data(ec2_backend, kwargs).get("InstanceMarketOptions") or {}).get("MarketType")
    return market == "spot"


def _group_name(kwargs):
    return ((kwargs.get("tags") or {}).get("instance") or {}).get(GROUP_NAME_TAG)


def _record(context, launch, message, activity_id=None):
    """``launch``: group (None for RunInstances), zone, subnet_id, instance_type, market."""
    context.record(
        "failed_launches",
        {**launch, "code": CODE, "message": message, "activity_id": activity_id, "at": context.now().isoformat()},
    )


def _patch_run_instances(context, targets):
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses.instances import InstanceResponse

    respond = InstanceResponse.run_instances

    def launch_requested(ec2_backend, kwargs):
        group = _group_name(kwargs)
        if group in targets:
            # A group's launch: the group chose the zone and already knows it has capacity (its own rule).
            zone, subnet_id, instance_type = targets.pop(group)
            kwargs.update(placement=zone, subnet_id=subnet_id, instance_type=instance_type)
        elif group is None:
            instance_type = launch_type(ec2_backend, kwargs)
            zone = launch_zone(context, ec2_backend, kwargs, instance_type)
            if not has_capacity(context, zone, instance_type):
                spot = _spot_request(ec2_backend, kwargs)
                message = ec2_message(context, ec2_backend, zone, instance_type, spot)
                _record(
                    context,
                    {
                        "group": None,
                        "zone": zone,
                        "subnet_id": kwargs.get("subnet_id"),
                        "instance_type": instance_type,
                        "market": "spot" if spot else "on-demand",
                    },
                    message,
                )
                raise InsufficientCapacity(message)

    def run_instances_response(self):
        try:
            return respond(self)
        except InsufficientCapacity as refusal:
            # EC2 lists InsufficientInstanceCapacity among its server errors: HTTP 500 (botocore retries it).
            unused_status, headers, body = self.serialized(ActionResult(EC2ClientError(CODE, refusal.message)))
            headers["status"] = 500
            return body, headers

    lifecycle.register("capacity", {lifecycle.LAUNCH_REQUESTED: launch_requested})
    InstanceResponse.run_instances = run_instances_response


# ---- Auto Scaling groups ------------------------------------------------------------------------------------
def group_zones(group):
    """[(zone, subnet id or None)] in the order the group tries them: one subnet per zone, ``VPCZoneIdentifier`` order."""
    if not group.vpc_zone_identifier:
        return [(zone, None) for zone in group.availability_zones]
    subnet_ids = group.vpc_zone_identifier.split(",")
    zone_of = {
        subnet.id: subnet.availability_zone
        for subnet in group.autoscaling_backend.ec2_backend.describe_subnets(subnet_ids=subnet_ids)
    }
    ordered = []
    for subnet_id in subnet_ids:
        if zone_of[subnet_id] not in [zone for zone, _subnet in ordered]:
            ordered.append((zone_of[subnet_id], subnet_id))
    return ordered


def group_types(group):
    """The instance types the group may launch, in the order it tries them: its mixed instances policy's overrides,
    else its template's type."""
    overrides = ((group.mixed_instances_policy or {}).get("LaunchTemplate") or {}).get("Overrides") or []
    types = [override["InstanceType"] for override in overrides if override.get("InstanceType")]
    return list(dict.fromkeys(types)) or [group.instance_type]


def group_type(group):
    """The instance type the group launches first: its mixed instances policy's first override, else its template's."""
    return group_types(group)[0]


def balanced_zones(context, rules, group):
    """``group_zones`` ordered as the group launches into them: the zone holding fewest of its instances first, ties
    in ``VPCZoneIdentifier`` order. An instance being replaced launch-first counts only under the
    ``asg_balance_counts_replaced`` setting (see the module's docstring)."""
    zones = group_zones(group)
    if float(context.latency.get("asg_balance_counts_replaced", 0)):
        members = [state for state in group.instance_states if state.lifecycle_state in CAPACITY_STATES]
    else:
        members = rules.capacity(group)
    held = {}
    for state in members:
        held[state.instance.placement.zone] = held.get(state.instance.placement.zone, 0) + 1
    return sorted(zones, key=lambda entry: held.get(entry[0], 0))  # stable: ties keep their order


def group_market(rules, group):
    """``On-Demand`` or ``Spot``: what the group's next launch asks EC2 for."""
    split = rules.market_split(group)
    if split is not None:
        on_demand = sum(1 for state in rules.capacity(group) if state.instance.lifecycle != "spot")
        return "On-Demand" if on_demand < split[0] else "Spot"
    data = (
        group.ec2_launch_template.get_version(group.launch_template_version).data if group.ec2_launch_template else {}
    )
    return "Spot" if ((data or {}).get("InstanceMarketOptions") or {}).get("MarketType") == "spot" else "On-Demand"


def status_message(group, market, message):
    """The failed activity's StatusMessage: EC2's message, through EC2 Fleet for a mixed instances group."""
    if group.mixed_instances_policy:
        return f"Could not launch {market} Instances. {CODE} - {message} {LAUNCH_FAILED}"
    return f"{message} {LAUNCH_FAILED}"


class GroupLaunches:
    """Where a group's launch goes, what a refused one leaves behind, and when the group tries again."""

    def __init__(self, context, rules, targets):
        self.context = context
        self.rules = rules
        self.targets = targets  # group name -> (zone, subnet id) of the launch moto is about to make

    def launch(self, group, count, tags, launch_into):
        types = group_types(group)
        zones = balanced_zones(self.context, self.rules, group)
        if zone_strategy(group) == "balanced-only":
            zones = zones[:1]  # AWS keeps trying the zone it chose, to stay balanced
        for zone, subnet_id in zones:
            instance_type = next((kind for kind in types if has_capacity(self.context, zone, kind)), None)
            if instance_type is not None:
                self.targets[group.name] = (zone, subnet_id, instance_type)
                try:
                    launch_into(group, count, tags)
                finally:
                    self.targets.pop(group.name, None)
                return
            self.refused(group, zone, subnet_id, types[0], count)
        self.retry_later(group)

    def refused(self, group, zone, subnet_id, instance_type, count):
        market = group_market(self.rules, group)
        ec2_backend = group.autoscaling_backend.ec2_backend
        message = status_message(
            group, market, ec2_message(self.context, ec2_backend, zone, instance_type, market == "Spot")
        )
        have = len(self.rules.capacity(group))
        cause = (
            f"At {_event_time(self.context.now())} an instance was started in response to a difference between desired "
            f"and actual capacity, increasing the capacity from {have} to {have + count}."
        )
        details = {"Subnet ID": subnet_id or "", "Availability Zone": zone}
        activity = scaling_activities.record(
            self.context,
            group,
            f"Launching a new EC2 instance.  Status Reason: {message}",
            cause,
            details,
            status_code="Failed",
            status_message=message,
        )
        _record(
            self.context,
            {
                "group": group.name,
                "zone": zone,
                "subnet_id": subnet_id,
                "instance_type": instance_type,
                "market": market.lower(),
            },
            message,
            activity["ActivityId"],
        )
        self.announce(group, activity, details)

    def announce(self, group, activity, details):
        from sandbox.clock import new_token

        moment = _event_time(activity["StartTime"])
        detail = {
            "StatusCode": "Failed",
            "AutoScalingGroupName": group.name,
            "ActivityId": activity["ActivityId"],
            "Details": details,
            "RequestId": new_token(),
            "StatusMessage": activity["StatusMessage"],
            "EndTime": moment,
            "EC2InstanceId": "",
            "StartTime": moment,
            "Cause": activity["Cause"],
            "Description": activity["Description"],
            "Origin": "EC2",
            "Destination": "AutoScalingGroup",
        }
        self.context.emit("aws.autoscaling", UNSUCCESSFUL, detail, [group.arn])

    def retry_later(self, group):
        """One pending retry per group: it asks the group for its capacity again (which may launch, or fail again)."""
        entry = getattr(group, "sandbox_launch_retry", None)
        if entry is not None and entry[4]:
            return

        def retry():
            group.sandbox_launch_retry = None
            if self.rules.live(group):
                group.set_desired_capacity(group.desired_capacity)

        seconds = float(self.context.latency.get("asg_launch_retry", RETRY_SECONDS))
        group.sandbox_launch_retry = self.context.after(
            seconds, retry, f"auto scaling group {group.name} retries its launch"
        )


def _event_time(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _patch_group_launches(context, targets):
    from moto.autoscaling.models import FakeAutoScalingGroup

    launches = GroupLaunches(context, RULES["asg"], targets)
    launch_into = (
        FakeAutoScalingGroup.replace_autoscaling_group_instances
    )  # the Auto Scaling rule's launch (hooks, shape)

    def replace_autoscaling_group_instances(self, count_needed, propagated_tags):
        launches.launch(self, count_needed, propagated_tags, launch_into)

    FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances


def set_capacity(context, zone=None, instance_type=None, available=True, reset=False):
    """The ``ec2/capacity`` control: take capacity away, give it back; answers what is without capacity."""
    refused = _refused(context)
    if reset:
        refused.clear()
    elif zone and not available:
        refused.add((zone, instance_type or EVERY_TYPE))
    elif zone:
        for entry in [
            entry for entry in refused if entry[0] == zone and (not instance_type or entry[1] == instance_type)
        ]:
            refused.discard(entry)
    elif not available:
        raise ValueError("a zone is needed to take capacity away")
    return {
        "without_capacity": [
            {"zone": name, "instance_type": None if kind == EVERY_TYPE else kind} for name, kind in sorted(refused)
        ]
    }


def install(context):
    """After the Auto Scaling rule (wraps its group launches); refuses EC2 launches at the instance lifecycle's
    ``launch-requested``."""
    context.latency.setdefault("asg_launch_retry", RETRY_SECONDS)
    targets = {}
    _patch_run_instances(context, targets)
    _patch_group_launches(context, targets)

    @context.control("ec2/capacity")
    def _capacity(payload):
        available = str(payload.get("available", True)).lower() not in ("false", "0")  # false, or "false" from a shell
        return set_capacity(
            context, payload.get("zone"), payload.get("instance_type"), available, bool(payload.get("reset"))
        )
