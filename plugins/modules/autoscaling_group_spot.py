#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: autoscaling_group_spot
version_added: 0.2.0
short_description: Auto Scaling group for Spot with what amazon.aws.autoscaling_group lacks
description:
  - Creates or updates an EC2 Auto Scaling group with the settings a Spot fleet needs and
    M(amazon.aws.autoscaling_group) cannot set. Capacity Rebalancing, a mixed instances policy with weighted
    overrides and a Spot allocation strategy, an instance maintenance policy, a default instance warm-up,
    lifecycle hooks that exist before the first instance launches, notifications, and a predictive scaling
    policy.
  - A group that does not exist is created with one C(CreateAutoScalingGroup) call that carries the hooks
    (C(LifecycleHookSpecificationList)), so the very first instance already waits in C(Pending:Wait) for
    whoever handles the launch hook. M(amazon.aws.autoscaling_group) creates the group without hooks (they
    can only be added once its first instances are launching) and, on update, replaces a mixed instances policy
    with its own, which has no weights.
  - An existing group is described and compared with the options given. Only what differs is changed, with one
    C(UpdateAutoScalingGroup) call and the calls for what it does not take (target groups, hooks,
    notifications, tags, the predictive policy). An option that is not given is left as it is.
  - The group never waits for its instances. Launch hooks hold them until they are completed or time out.
  - Supports check mode and diff mode. In check mode only the describe calls are made.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  name:
    description: Name of the Auto Scaling group.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the group; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  force_delete:
    description:
      - With O(state=absent), delete the group with its instances (C(ForceDelete)), without waiting for them
        to terminate and dropping their pending lifecycle actions. Without it AWS refuses to delete a group that
        still has instances.
    type: bool
    default: false
  launch_template:
    description:
      - The launch template of the group's instances, by O(launch_template.id) or O(launch_template.name).
      - Required to create a group.
    type: dict
    suboptions:
      id:
        description: Launch template id.
        type: str
      name:
        description: Launch template name.
        type: str
      version:
        description:
          - Version number, or V($Latest) or V($Default).
          - Pin a number to see a template change as a change of the group (RV(launch_template_changed)).
          - When unset, an existing group keeps its version; a new one uses the template's default version.
        type: str
  overrides:
    description:
      - Instance types the group may launch, in priority order, each with its weight (capacity units).
      - Giving overrides or O(instances_distribution) makes the group use a mixed instances policy.
      - With weights, O(min_size), O(max_size) and O(desired_capacity) count capacity units, not instances.
        AWS requires a weight for every type or for none.
    type: list
    elements: dict
    suboptions:
      instance_type:
        description: An instance type, for example V(m6i.large).
        type: str
        required: true
      weighted_capacity:
        description: Capacity units one instance of this type provides (1-999).
        type: int
  instances_distribution:
    description:
      - How the mixed instances policy splits capacity between On-Demand and Spot. Only the keys given are
        compared and set; AWS keeps its defaults for the others.
    type: dict
    suboptions:
      on_demand_allocation_strategy:
        description: Order in which On-Demand capacity is filled.
        type: str
        choices: [prioritized, lowest-price]
      on_demand_base_capacity:
        description: Capacity that is always On-Demand.
        type: int
      on_demand_percentage_above_base_capacity:
        description: Percentage of the capacity above the base that is On-Demand (0-100); the rest is Spot.
        type: int
      spot_allocation_strategy:
        description:
          - How Spot capacity is chosen. V(price-capacity-optimized) and V(capacity-optimized) pick the pools
            least likely to be interrupted.
        type: str
        choices: [lowest-price, capacity-optimized, capacity-optimized-prioritized, price-capacity-optimized]
      spot_instance_pools:
        description: Number of pools with V(lowest-price).
        type: int
      spot_max_price:
        description: Highest price per unit hour; the empty string removes a price set before (On-Demand price).
        type: str
  min_size:
    description: Minimum capacity. Required to create a group.
    type: int
  max_size:
    description: Maximum capacity. Required to create a group.
    type: int
  desired_capacity:
    description:
      - Desired capacity. When unset, a new group starts at O(min_size) and an existing group keeps its
        capacity.
    type: int
  update_desired_capacity:
    description:
      - When V(false), O(desired_capacity) is only the capacity a new group starts with. An existing group keeps
        its desired capacity, which scaling policies and scheduled actions move (AWS raises it to a new
        O(min_size) or lowers it to a new O(max_size) by itself).
    type: bool
    default: true
  subnet_ids:
    description:
      - Subnets the group launches in (C(VPCZoneIdentifier)). Required to create a group. Compared as a set.
    type: list
    elements: str
  health_check_type:
    description: Health checks that can mark an instance unhealthy besides EC2's.
    type: str
    choices: [EC2, ELB, EBS, VPC_LATTICE]
  health_check_grace_period:
    description: Seconds after an instance is in service before its health is checked.
    type: int
  default_cooldown:
    description: Seconds between simple scaling activities.
    type: int
  target_group_arns:
    description: Target groups the instances are registered with. Compared as a set.
    type: list
    elements: str
  enabled_metrics:
    description:
      - Group metrics collected at 1-minute granularity (free), for example C(GroupDesiredCapacity) and
        C(GroupInServiceInstances), which capacity dashboards need. Compared as a set; V([]) disables them all.
    type: list
    elements: str
    version_added: 0.3.0
  capacity_rebalance:
    description:
      - Capacity Rebalancing. On a rebalance recommendation for a Spot instance, the group launches a replacement
        and then terminates the instance at risk (through its terminate hooks).
    type: bool
  default_instance_warmup:
    description:
      - Seconds a new instance needs before it counts towards metrics and instance refreshes (C(-1) turns it off).
    type: int
  instance_maintenance_policy:
    description:
      - Bounds on healthy capacity while instances are replaced. O(instance_maintenance_policy.min_healthy_percentage=100)
        with O(instance_maintenance_policy.max_healthy_percentage=110) launches a replacement before the old
        instance terminates. C(-1) for both removes the policy.
    type: dict
    suboptions:
      min_healthy_percentage:
        description: Lowest healthy capacity, in percent of the desired capacity.
        type: int
      max_healthy_percentage:
        description: Highest capacity, in percent of the desired capacity.
        type: int
  lifecycle_hooks:
    description:
      - Lifecycle hooks of the group. On a new group they are created with it, before its first launch.
      - Each given hook is created or updated to match; others are left unless O(purge_lifecycle_hooks=true).
      - A hook without a notification target sends its actions to EventBridge only.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the hook.
        type: str
        required: true
      transition:
        description: The transition the hook holds.
        type: str
        required: true
        choices: [launch, terminate, "autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"]
      heartbeat_timeout:
        description: Seconds (30-7200) an instance waits before O(lifecycle_hooks[].default_result) applies.
        type: int
        default: 3600
      default_result:
        description:
          - What happens on timeout. V(ABANDON) on launch terminates the instance (and the group launches another);
            on terminate both results let the instance terminate.
        type: str
        choices: [ABANDON, CONTINUE]
        default: ABANDON
      notification_target_arn:
        description: SQS queue or SNS topic that receives the hook's messages.
        type: str
      role_arn:
        description: Role that lets Auto Scaling publish to O(lifecycle_hooks[].notification_target_arn).
        type: str
      notification_metadata:
        description: Text sent with every action of the hook.
        type: str
  purge_lifecycle_hooks:
    description: Delete the group's hooks that O(lifecycle_hooks) does not list.
    type: bool
    default: false
  notifications:
    description:
      - SNS topics told about the group's launches and terminations (C(PutNotificationConfiguration)).
      - When unset, the notification configurations are left as they are and not described.
    type: list
    elements: dict
    suboptions:
      topic_arn:
        description: The SNS topic.
        type: str
        required: true
      types:
        description: The notification types.
        type: list
        elements: str
        default:
          - autoscaling:EC2_INSTANCE_LAUNCH
          - autoscaling:EC2_INSTANCE_LAUNCH_ERROR
          - autoscaling:EC2_INSTANCE_TERMINATE
          - autoscaling:EC2_INSTANCE_TERMINATE_ERROR
  purge_notifications:
    description: With O(notifications), remove the notifications to topics it does not list.
    type: bool
    default: true
  tags:
    description: Tags of the group. Keys starting with C(aws:) are never touched.
    type: dict
  purge_tags:
    description: With O(tags), remove the group's tags it does not list.
    type: bool
    default: true
  propagate_tags_at_launch:
    description:
      - Copy O(tags) onto the instances the group launches. Leave it off when the launch template tags them.
    type: bool
    default: false
  predictive_scaling:
    description:
      - A predictive scaling policy of the group (C(PutScalingPolicy) with C(PolicyType=PredictiveScaling)), which
        no amazon.aws or community.aws module creates. When unset, predictive policies are left as they are.
    type: dict
    suboptions:
      name:
        description: Name of the policy.
        type: str
        required: true
      state:
        description: V(absent) deletes the policy.
        type: str
        choices: [present, absent]
        default: present
      metric_type:
        description: The predefined metric pair the forecast is based on. Required with V(present).
        type: str
        choices: [ASGCPUUtilization, ASGNetworkIn, ASGNetworkOut, ALBRequestCount]
      resource_label:
        description: With V(ALBRequestCount), the target group's resource label.
        type: str
      target_value:
        description: Target value of the metric per instance (per target for V(ALBRequestCount)). Required with V(present).
        type: float
      mode:
        description: V(ForecastOnly) only forecasts; V(ForecastAndScale) also scales ahead of the forecast.
        type: str
        choices: [ForecastOnly, ForecastAndScale]
        default: ForecastOnly
      scheduling_buffer_time:
        description: Seconds before the forecast time that instances are launched.
        type: int
      max_capacity_breach_behavior:
        description: Whether the forecast may raise the group's maximum capacity.
        type: str
        choices: [HonorMaxCapacity, IncreaseMaxCapacity]
        default: HonorMaxCapacity
      max_capacity_buffer:
        description: With V(IncreaseMaxCapacity), percent above the forecast the maximum may go.
        type: int
notes:
  - Instance refreshes are not started by this module. When RV(group.outdated_instances) lists instances, start one
    with M(amazon.aws.autoscaling_instance_refresh); the C(ec2spot.autorecover.fleet) role does.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Only the describe calls are made; the result says what would change.
  diff_mode:
    support: full
    details: The group's settings before and after.
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
"""

EXAMPLES = r"""
- name: A single Spot instance of a stateful service, held by lifecycle hooks from its first launch
  ec2spot.autorecover.autoscaling_group_spot:
    name: pg-fleet
    launch_template:
      name: pg-fleet
      version: "3"
    overrides:
      - instance_type: m6i.large
      - instance_type: m5.large
      - instance_type: m6a.large
    instances_distribution:
      on_demand_base_capacity: 0
      on_demand_percentage_above_base_capacity: 0
      spot_allocation_strategy: price-capacity-optimized
    min_size: 1
    max_size: 1
    desired_capacity: 1
    subnet_ids: [subnet-0123456789abcdef0, subnet-0fedcba9876543210]
    capacity_rebalance: true
    instance_maintenance_policy:
      min_healthy_percentage: 100
      max_healthy_percentage: 110
    lifecycle_hooks:
      - name: pg-fleet-launch
        transition: launch
        heartbeat_timeout: 600
        default_result: ABANDON
      - name: pg-fleet-terminate
        transition: terminate
        heartbeat_timeout: 120
        default_result: CONTINUE
    purge_lifecycle_hooks: true
    notifications:
      - topic_arn: arn:aws:sns:us-east-1:123456789012:ec2spot-autorecover
    tags:
      ec2spot:service: pg
  register: group

- name: Replace the instances launched from an older template version
  amazon.aws.autoscaling_instance_refresh:
    name: pg-fleet
    state: started
    preferences:
      min_healthy_percentage: 0
      max_healthy_percentage: 100
      skip_matching: true
  when: group.group.outdated_instances | length > 0

- name: Weighted types, Spot above two On-Demand units, and a predictive policy that only forecasts
  ec2spot.autorecover.autoscaling_group_spot:
    name: web-fleet
    launch_template:
      name: web-fleet
    overrides:
      - instance_type: c6i.large
        weighted_capacity: 1
      - instance_type: c6i.xlarge
        weighted_capacity: 2
    instances_distribution:
      on_demand_base_capacity: 2
      on_demand_percentage_above_base_capacity: 0
      spot_allocation_strategy: capacity-optimized
    min_size: 2
    max_size: 12
    subnet_ids: [subnet-0123456789abcdef0, subnet-0fedcba9876543210]
    default_instance_warmup: 120
    predictive_scaling:
      name: web-fleet-predictive
      metric_type: ASGCPUUtilization
      target_value: 50

- name: Delete a group and its instances
  ec2spot.autorecover.autoscaling_group_spot:
    name: web-fleet
    state: absent
    force_delete: true
"""

RETURN = r"""
created:
  description: Whether this run created the group (in check mode, would create it).
  returned: always
  type: bool
  sample: false
launch_template_changed:
  description:
    - Whether an existing group was moved to another launch template or template version. Its running
      instances still come from the old one until they are replaced (an instance refresh).
  returned: always
  type: bool
  sample: true
changes:
  description: What this run changed, or in check mode would change, one line per setting.
  returned: always
  type: list
  elements: str
  sample:
    - "capacity_rebalance: False -> True"
    - "launch_template: {'id': 'lt-0abc', 'name': 'pg-fleet', 'version': '2'} -> {'name': 'pg-fleet', 'version': '3'}"
group:
  description:
    - The group as described after this run; in check mode, as it would be. Empty after O(state=absent).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the group.
      type: str
      sample: pg-fleet
    arn:
      description: ARN of the group (V(null) for a group check mode would create).
      type: str
      sample: arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:6f4c6b1e-0000-4000-8000-000000000000:autoScalingGroupName/pg-fleet
    min_size:
      description: Minimum capacity.
      type: int
      sample: 1
    max_size:
      description: Maximum capacity.
      type: int
      sample: 1
    desired_capacity:
      description: Desired capacity.
      type: int
      sample: 1
    subnet_ids:
      description: Subnets, sorted.
      type: list
      elements: str
      sample: [subnet-0123456789abcdef0, subnet-0fedcba9876543210]
    availability_zones:
      description: Availability zones of the subnets, sorted (V(null) in check mode for a new group).
      type: list
      elements: str
      sample: [us-east-1a, us-east-1b]
    health_check_type:
      description: Health check type.
      type: str
      sample: EC2
    health_check_grace_period:
      description: Health check grace period in seconds.
      type: int
      sample: 300
    default_cooldown:
      description: Default cooldown in seconds.
      type: int
      sample: 300
    target_group_arns:
      description: Target groups, sorted.
      type: list
      elements: str
      sample: []
    enabled_metrics:
      description: Group metrics collected, sorted.
      type: list
      elements: str
      sample: ["GroupDesiredCapacity", "GroupInServiceInstances"]
    capacity_rebalance:
      description: Whether Capacity Rebalancing is on.
      type: bool
      sample: true
    default_instance_warmup:
      description: Default instance warm-up in seconds, V(null) when unset.
      type: int
      sample: 120
    instance_maintenance_policy:
      description: The instance maintenance policy, V(null) when there is none.
      type: dict
      sample: {"min_healthy_percentage": 100, "max_healthy_percentage": 110}
    mixed_instances_policy:
      description: Whether the group has a mixed instances policy.
      type: bool
      sample: true
    launch_template:
      description: The launch template's C(id), C(name) and C(version) the group launches from.
      type: dict
      sample: {"id": "lt-0123456789abcdef0", "name": "pg-fleet", "version": "3"}
    outdated_instances:
      description:
        - Instances of the group (not terminating) launched from another launch template or template version than
          the group's, sorted. An instance refresh replaces them. Empty when the group's version is V($Latest) or
          V($Default).
        - In check mode, the instances as described before the run.
      type: list
      elements: str
      sample: [i-0123456789abcdef0]
    overrides:
      description: Instance types and weights of the mixed instances policy (V(null) without one).
      type: list
      elements: dict
      sample: [{"instance_type": "m6i.large", "weighted_capacity": 1}, {"instance_type": "m6i.xlarge", "weighted_capacity": 2}]
    instances_distribution:
      description: The mixed instances policy's On-Demand and Spot split, as AWS describes it.
      type: dict
      sample: {"on_demand_base_capacity": 0, "on_demand_percentage_above_base_capacity": 0, "spot_allocation_strategy": "price-capacity-optimized"}
    lifecycle_hooks:
      description: The group's lifecycle hooks, sorted by name.
      type: list
      elements: dict
      sample: [{"name": "pg-fleet-launch", "transition": "autoscaling:EC2_INSTANCE_LAUNCHING", "heartbeat_timeout": 600,
                "default_result": "ABANDON", "notification_target_arn": null, "role_arn": null, "notification_metadata": null}]
    notifications:
      description: Notification configurations, one per topic. Only when O(notifications) was given.
      type: list
      elements: dict
      sample: [{"topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts", "types": ["autoscaling:EC2_INSTANCE_LAUNCH"]}]
    tags:
      description: The group's tags (without C(aws:) keys).
      type: dict
      sample: {"ec2spot:service": "pg"}
    propagated_tags:
      description: Keys of the tags copied onto launched instances.
      type: list
      elements: str
      sample: []
    scaling_policies:
      description: Names of the group's scaling policies (any type), sorted.
      type: list
      elements: str
      sample: [web-fleet-cpu, web-fleet-predictive]
    predictive_scaling:
      description: The predictive policy named in O(predictive_scaling), V(null) when absent. Only when O(predictive_scaling) was given.
      type: dict
      sample: {"name": "web-fleet-predictive", "metric_type": "ASGCPUUtilization", "target_value": 50.0, "mode": "ForecastOnly"}
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.fleet import group as asg_group
from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client, run


def wanted_state(params):
    """The module's options as a wanted state (``group.FIELDS`` keys; ``None``: not managed)."""
    want = {"name": params["name"]}
    for key in (
        "min_size",
        "max_size",
        "desired_capacity",
        "health_check_type",
        "health_check_grace_period",
        "default_cooldown",
        "capacity_rebalance",
        "default_instance_warmup",
        "subnet_ids",
        "target_group_arns",
        "enabled_metrics",
        "instance_maintenance_policy",
        "launch_template",
        "instances_distribution",
        "tags",
    ):
        want[key] = params[key]
    if params["overrides"] is not None:
        want["overrides"] = [
            {"instance_type": item["instance_type"], "weighted_capacity": item["weighted_capacity"]}
            for item in params["overrides"]
        ]
    if params["lifecycle_hooks"] is not None:
        want["lifecycle_hooks"] = [
            {
                "name": hook["name"],
                "transition": asg_group.TRANSITIONS.get(hook["transition"], hook["transition"]),
                "heartbeat_timeout": hook["heartbeat_timeout"],
                "default_result": hook["default_result"],
                "notification_target_arn": hook["notification_target_arn"],
                "role_arn": hook["role_arn"],
                "notification_metadata": hook["notification_metadata"],
            }
            for hook in params["lifecycle_hooks"]
        ]
    if params["notifications"] is not None:
        want["notifications"] = [
            {"topic_arn": item["topic_arn"], "types": sorted(set(item["types"]))} for item in params["notifications"]
        ]
    if params["predictive_scaling"] is not None:
        want["predictive_scaling"] = dict(params["predictive_scaling"])
    return want


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        force_delete=dict(type="bool", default=False),
        launch_template=dict(
            type="dict",
            options=dict(id=dict(type="str"), name=dict(type="str"), version=dict(type="str")),
            mutually_exclusive=[["id", "name"]],
            required_one_of=[["id", "name"]],
        ),
        overrides=dict(
            type="list",
            elements="dict",
            options=dict(instance_type=dict(type="str", required=True), weighted_capacity=dict(type="int")),
        ),
        instances_distribution=dict(
            type="dict",
            options=dict(
                on_demand_allocation_strategy=dict(type="str", choices=["prioritized", "lowest-price"]),
                on_demand_base_capacity=dict(type="int"),
                on_demand_percentage_above_base_capacity=dict(type="int"),
                spot_allocation_strategy=dict(
                    type="str",
                    choices=[
                        "lowest-price",
                        "capacity-optimized",
                        "capacity-optimized-prioritized",
                        "price-capacity-optimized",
                    ],
                ),
                spot_instance_pools=dict(type="int"),
                spot_max_price=dict(type="str"),
            ),
        ),
        min_size=dict(type="int"),
        max_size=dict(type="int"),
        desired_capacity=dict(type="int"),
        update_desired_capacity=dict(type="bool", default=True),
        subnet_ids=dict(type="list", elements="str"),
        health_check_type=dict(type="str", choices=["EC2", "ELB", "EBS", "VPC_LATTICE"]),
        health_check_grace_period=dict(type="int"),
        default_cooldown=dict(type="int"),
        target_group_arns=dict(type="list", elements="str"),
        enabled_metrics=dict(type="list", elements="str"),
        capacity_rebalance=dict(type="bool"),
        default_instance_warmup=dict(type="int"),
        instance_maintenance_policy=dict(
            type="dict", options=dict(min_healthy_percentage=dict(type="int"), max_healthy_percentage=dict(type="int"))
        ),
        lifecycle_hooks=dict(
            type="list",
            elements="dict",
            options=dict(
                name=dict(type="str", required=True),
                transition=dict(
                    type="str",
                    required=True,
                    choices=["launch", "terminate", asg_group.LAUNCHING, asg_group.TERMINATING],
                ),
                heartbeat_timeout=dict(type="int", default=asg_group.DEFAULT_HEARTBEAT),
                default_result=dict(type="str", choices=["ABANDON", "CONTINUE"], default=asg_group.DEFAULT_RESULT),
                notification_target_arn=dict(type="str"),
                role_arn=dict(type="str"),
                notification_metadata=dict(type="str"),
            ),
        ),
        purge_lifecycle_hooks=dict(type="bool", default=False),
        notifications=dict(
            type="list",
            elements="dict",
            options=dict(
                topic_arn=dict(type="str", required=True),
                types=dict(type="list", elements="str", default=list(asg_group.NOTIFICATION_TYPES)),
            ),
        ),
        purge_notifications=dict(type="bool", default=True),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
        propagate_tags_at_launch=dict(type="bool", default=False),
        predictive_scaling=dict(
            type="dict",
            options=dict(
                name=dict(type="str", required=True),
                state=dict(type="str", choices=["present", "absent"], default="present"),
                metric_type=dict(
                    type="str", choices=["ASGCPUUtilization", "ASGNetworkIn", "ASGNetworkOut", "ALBRequestCount"]
                ),
                resource_label=dict(type="str"),
                target_value=dict(type="float"),
                mode=dict(type="str", choices=["ForecastOnly", "ForecastAndScale"], default="ForecastOnly"),
                scheduling_buffer_time=dict(type="int"),
                max_capacity_breach_behavior=dict(
                    type="str", choices=["HonorMaxCapacity", "IncreaseMaxCapacity"], default="HonorMaxCapacity"
                ),
                max_capacity_buffer=dict(type="int"),
            ),
            required_if=[["state", "present", ["metric_type", "target_value"]]],
        ),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    asg = client(module, "autoscaling")

    def converge():
        if params["state"] == "absent":
            return asg_group.ensure_absent(
                asg, params["name"], force=params["force_delete"], check_mode=module.check_mode
            )
        want = wanted_state(params)
        if not params["update_desired_capacity"]:
            want["desired_capacity_at_create"], want["desired_capacity"] = want["desired_capacity"], None
        return asg_group.ensure(
            asg,
            want,
            check_mode=module.check_mode,
            purge_hooks=params["purge_lifecycle_hooks"],
            purge_notifications=params["purge_notifications"],
            purge_tags=params["purge_tags"],
            propagate_tags=params["propagate_tags_at_launch"],
        )

    result = run(module, converge)
    module.exit_json(
        changed=result["changed"],
        created=result["created"],
        launch_template_changed=result["launch_template_changed"],
        changes=[asg_group.describe_change(change) for change in result["changes"]],
        group=result["after"] or {},
        diff={"before": result["before"] or {}, "after": result["after"] or {}},
    )


if __name__ == "__main__":
    main()
