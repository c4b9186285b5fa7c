# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An Auto Scaling group for Spot, as one desired state compared with what AWS describes.

What ``amazon.aws.autoscaling_group`` cannot do, and why the group is created here:

* hooks given at create (``LifecycleHookSpecificationList``): only they exist before the first
  instance launches, so the control plane sees that instance's launch too;
* ``CapacityRebalance``, ``InstanceMaintenancePolicy``, ``DefaultInstanceWarmup``;
* a mixed instances policy with weighted overrides: on update, amazon.aws.autoscaling_group
  sends its own policy (instance types only), which drops the weights and, without
  ``instances_distribution``, the Spot allocation strategy; without ``launch_template`` it cannot
  update a group that has a mixed instances policy at all (KeyError ``LaunchTemplate``);
* predictive scaling policies (``PutScalingPolicy`` with ``PolicyType=PredictiveScaling``).

The state is a flat dict with snake_case keys (``observe``); a wanted state has the same keys,
``None`` meaning "not managed". ``plan`` lists the differences, ``apply`` makes them with one
``UpdateAutoScalingGroup`` and the few calls for what it does not take (target groups, hooks,
notifications, tags, the predictive policy). No Ansible: every AWS call goes through the core's
``call``/``paginate`` (an AWS error is ``AwsApiError``), wrong input raises ``FleetError`` (an
``InvalidInput``): one error dialect with the recovery core.
"""

from __future__ import annotations

import copy

from ..recovery.aws import call, paginate
from ..recovery.errors import InvalidInput

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TRANSITIONS = {"launch": LAUNCHING, "terminate": TERMINATING}
DEFAULT_HEARTBEAT = 3600  # AWS's default heartbeat timeout
DEFAULT_RESULT = "ABANDON"  # AWS's default result
NOTIFICATION_TYPES = (
    "autoscaling:EC2_INSTANCE_LAUNCH",
    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
    "autoscaling:EC2_INSTANCE_TERMINATE",
    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
)

# (state key, UpdateAutoScalingGroup / describe key): plain values.
SCALARS = (
    ("min_size", "MinSize"),
    ("max_size", "MaxSize"),
    ("desired_capacity", "DesiredCapacity"),
    ("health_check_type", "HealthCheckType"),
    ("health_check_grace_period", "HealthCheckGracePeriod"),
    ("default_cooldown", "DefaultCooldown"),
    ("capacity_rebalance", "CapacityRebalance"),
    ("default_instance_warmup", "DefaultInstanceWarmup"),
)
DISTRIBUTION = (
    ("on_demand_allocation_strategy", "OnDemandAllocationStrategy"),
    ("on_demand_base_capacity", "OnDemandBaseCapacity"),
    ("on_demand_percentage_above_base_capacity", "OnDemandPercentageAboveBaseCapacity"),
    ("spot_allocation_strategy", "SpotAllocationStrategy"),
    ("spot_instance_pools", "SpotInstancePools"),
    ("spot_max_price", "SpotMaxPrice"),
)
HOOK_FIELDS = (
    ("transition", "LifecycleTransition"),
    ("heartbeat_timeout", "HeartbeatTimeout"),
    ("default_result", "DefaultResult"),
    ("notification_target_arn", "NotificationTargetARN"),
    ("role_arn", "RoleARN"),
    ("notification_metadata", "NotificationMetadata"),
)
PREDICTIVE = (
    ("mode", "Mode"),
    ("scheduling_buffer_time", "SchedulingBufferTime"),
    ("max_capacity_breach_behavior", "MaxCapacityBreachBehavior"),
    ("max_capacity_buffer", "MaxCapacityBuffer"),
)
# The order in which a plan lists (and apply makes) the changes.
FIELDS = tuple(key for key, _api in SCALARS) + (
    "subnet_ids",
    "instance_maintenance_policy",
    "launch_template",
    "overrides",
    "instances_distribution",
    "target_group_arns",
    "lifecycle_hooks",
    "notifications",
    "tags",
    "predictive_scaling",
    "enabled_metrics",
)
# What CreateAutoScalingGroup needs.
REQUIRED_AT_CREATE = ("min_size", "max_size", "launch_template", "subnet_ids")


class FleetError(InvalidInput):
    """Input that AWS would refuse, or that cannot describe one group. Nothing was changed."""


def _int_or_none(value):
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _cleared(value):
    """-1 is how the API clears a warm-up or a maintenance policy: the same as none."""
    if value in (-1, None):
        return None
    if isinstance(value, dict) and all(v in (-1, None) for v in value.values()):
        return None
    return value


# ---- what AWS describes ------------------------------------------------------------------------


def observe(asg, name, notifications=False, predictive_name=None):
    """The group's state, or ``None`` when it does not exist.

    The names of its scaling policies are always read (``scaling_policies``), the predictive policy
    ``predictive_name`` in detail when given. Notifications take calls of their own: they are read
    only when managed (``notifications``), else left out of the state.
    """
    groups = call(asg, "describe_auto_scaling_groups", AutoScalingGroupNames=[name])["AutoScalingGroups"]
    groups = [group for group in groups if group["AutoScalingGroupName"] == name]
    if not groups:
        return None
    hooks = call(asg, "describe_lifecycle_hooks", AutoScalingGroupName=name)["LifecycleHooks"]
    state = group_state(groups[0], hooks)
    policies = list(paginate(asg, "describe_policies", "ScalingPolicies", AutoScalingGroupName=name))
    state["scaling_policies"] = sorted(policy["PolicyName"] for policy in policies)
    if predictive_name:
        state["predictive_scaling"] = predictive_state(
            [
                policy
                for policy in policies
                if policy["PolicyName"] == predictive_name and policy.get("PolicyType") == "PredictiveScaling"
            ]
        )
    if notifications:
        state["notifications"] = observe_notifications(asg, name)
    return state


def group_state(group, hooks):
    """``DescribeAutoScalingGroups`` + ``DescribeLifecycleHooks`` -> the flat state."""
    state = {"name": group["AutoScalingGroupName"], "arn": group.get("AutoScalingGroupARN")}
    for key, api in SCALARS:
        state[key] = group.get(api)
    state["capacity_rebalance"] = bool(group.get("CapacityRebalance", False))
    state["subnet_ids"] = sorted(subnet for subnet in (group.get("VPCZoneIdentifier") or "").split(",") if subnet)
    state["availability_zones"] = sorted(group.get("AvailabilityZones") or [])
    state["target_group_arns"] = sorted(group.get("TargetGroupARNs") or [])
    policy = group.get("InstanceMaintenancePolicy")
    state["instance_maintenance_policy"] = (
        _cleared(
            {
                "min_healthy_percentage": policy.get("MinHealthyPercentage"),
                "max_healthy_percentage": policy.get("MaxHealthyPercentage"),
            }
        )
        if policy
        else None
    )
    mixed = group.get("MixedInstancesPolicy")
    if mixed:
        template = mixed.get("LaunchTemplate") or {}
        spec = template.get("LaunchTemplateSpecification") or {}
        state["overrides"] = [
            {
                "instance_type": override.get("InstanceType"),
                "weighted_capacity": _int_or_none(override.get("WeightedCapacity")),
            }
            for override in template.get("Overrides") or []
        ]
        distribution = mixed.get("InstancesDistribution") or {}
        state["instances_distribution"] = {key: distribution[api] for key, api in DISTRIBUTION if api in distribution}
    else:
        spec = group.get("LaunchTemplate") or {}
        state["overrides"] = None
        state["instances_distribution"] = None
    state["mixed_instances_policy"] = bool(mixed)
    state["launch_template"] = (
        {"id": spec.get("LaunchTemplateId"), "name": spec.get("LaunchTemplateName"), "version": spec.get("Version")}
        if spec
        else None
    )
    state["outdated_instances"] = outdated_instances(group, state["launch_template"])
    state["lifecycle_hooks"] = sorted((hook_state(hook) for hook in hooks), key=lambda hook: hook["name"])
    tags = [tag for tag in group.get("Tags") or [] if not tag["Key"].startswith("aws:")]
    state["tags"] = {tag["Key"]: tag["Value"] for tag in tags}
    state["propagated_tags"] = sorted(tag["Key"] for tag in tags if tag.get("PropagateAtLaunch"))
    state["enabled_metrics"] = sorted({metric["Metric"] for metric in group.get("EnabledMetrics") or []})
    return state


def outdated_instances(group, template):
    """Instances (not terminating) launched from another launch template or version than the group's.

    Only with a pinned version: ``$Latest`` and ``$Default`` name no number to compare with."""
    if not template or str(template.get("version")) in ("$Latest", "$Default", "None"):
        return []
    outdated = []
    for instance in group.get("Instances") or []:
        launched = instance.get("LaunchTemplate") or {}
        if not launched or instance.get("LifecycleState", "").startswith("Terminating"):
            continue
        same_template = (
            launched.get("LaunchTemplateId") == template.get("id")
            if launched.get("LaunchTemplateId") and template.get("id")
            else launched.get("LaunchTemplateName") == template.get("name")
        )
        if not same_template or str(launched.get("Version")) != str(template["version"]):
            outdated.append(instance["InstanceId"])
    return sorted(outdated)


def hook_state(hook):
    state = {"name": hook["LifecycleHookName"]}
    for key, api in HOOK_FIELDS:
        state[key] = hook.get(api)
    return state


def observe_notifications(asg, name):
    topics = {}
    for item in paginate(
        asg, "describe_notification_configurations", "NotificationConfigurations", AutoScalingGroupNames=[name]
    ):
        topics.setdefault(item["TopicARN"], set()).add(item["NotificationType"])
    return [{"topic_arn": topic, "types": sorted(types)} for topic, types in sorted(topics.items())]


def predictive_state(policies):
    """The predictive policy among ``policies`` (``DescribePolicies`` items), or ``None``."""
    if not policies:
        return None
    configuration = policies[0].get("PredictiveScalingConfiguration") or {}
    metric = (configuration.get("MetricSpecifications") or [{}])[0]
    pair = metric.get("PredefinedMetricPairSpecification") or {}
    state = {
        "name": policies[0]["PolicyName"],
        "arn": policies[0].get("PolicyARN"),
        "metric_type": pair.get("PredefinedMetricType"),
        "resource_label": pair.get("ResourceLabel"),
        "target_value": float(metric["TargetValue"]) if metric.get("TargetValue") is not None else None,
    }
    for key, api in PREDICTIVE:
        state[key] = configuration.get(api)
    return state


# ---- comparing ---------------------------------------------------------------------------------


def _template_differs(have, want):
    if not want:
        return False
    if not have:
        return True
    if want.get("id") and want["id"] != have.get("id"):
        return True
    if not want.get("id") and want.get("name") and want["name"] != have.get("name"):
        return True
    return want.get("version") is not None and str(want["version"]) != str(have.get("version"))


def _subset_differs(have, want):
    """Whether a key ``want`` sets (not None) has another value in ``have``."""
    have = have or {}
    return any(value is not None and have.get(key) != value for key, value in want.items())


def _hooks_plan(have, want, purge):
    current = {hook["name"]: hook for hook in have or []}
    wanted = {hook["name"]: hook for hook in want}
    put = [
        hook
        for name, hook in sorted(wanted.items())
        if name not in current or any(current[name].get(key) != hook.get(key) for key, _api in HOOK_FIELDS)
    ]
    delete = sorted(name for name in current if name not in wanted) if purge else []
    return put, delete


def _notifications_plan(have, want, purge):
    current = {item["topic_arn"]: sorted(item["types"]) for item in have or []}
    wanted = {item["topic_arn"]: sorted(item["types"]) for item in want}
    put = [
        {"topic_arn": topic, "types": types} for topic, types in sorted(wanted.items()) if current.get(topic) != types
    ]
    delete = sorted(topic for topic in current if topic not in wanted) if purge else []
    return put, delete


def _tags_plan(have, have_propagated, want, propagate, purge):
    current = have or {}
    put = {
        key: str(value)
        for key, value in want.items()
        if current.get(key) != str(value) or (key in (have_propagated or [])) != propagate
    }
    delete = sorted(key for key in current if key not in want) if purge else []
    return put, delete


def _predictive_differs(have, want):
    if want.get("state") == "absent":
        return have is not None
    if have is None:
        return True
    return _subset_differs(have, {key: value for key, value in want.items() if key not in ("state", "name")})


def plan(have, want, purge_hooks=False, purge_notifications=False, purge_tags=False, propagate_tags=False):
    """The differences between the group ``have`` (``None``: absent) and ``want``: a list of
    ``{"field", "before", "after"}`` in ``FIELDS`` order. A group to create is one change,
    ``{"field": "group", ...}``."""
    if have is None:
        missing = [key for key in REQUIRED_AT_CREATE if want.get(key) in (None, [], {})]
        if missing:
            raise FleetError(
                f"Auto Scaling group {want['name']} does not exist; to create it give {', '.join(missing)}"
            )
        return [{"field": "group", "before": None, "after": want["name"]}]
    changes = []
    for field in FIELDS:
        wanted = want.get(field)
        if wanted is None:
            continue
        current = have.get(field)
        if field in ("default_instance_warmup", "instance_maintenance_policy"):
            differs = _cleared(wanted) != _cleared(current)
        elif field in ("subnet_ids", "target_group_arns", "enabled_metrics"):
            differs = sorted(wanted) != sorted(current or [])
        elif field == "launch_template":
            differs = _template_differs(current, wanted)
        elif field == "instances_distribution":
            differs = _subset_differs(current, wanted)
        elif field == "lifecycle_hooks":
            differs = any(_hooks_plan(current, wanted, purge_hooks))
        elif field == "notifications":
            differs = any(_notifications_plan(current, wanted, purge_notifications))
        elif field == "tags":
            differs = any(_tags_plan(current, have.get("propagated_tags"), wanted, propagate_tags, purge_tags))
        elif field == "predictive_scaling":
            differs = _predictive_differs(current, wanted)
        else:
            differs = wanted != current
        if differs:
            changes.append({"field": field, "before": copy.deepcopy(current), "after": copy.deepcopy(wanted)})
    return changes


def describe_change(change):
    """One line for the module's ``changes`` return value."""
    if change["field"] == "group":
        return f"create Auto Scaling group {change['after']}"
    return f"{change['field']}: {change['before']!r} -> {change['after']!r}"


# ---- what the group becomes --------------------------------------------------------------------


def _merged_template(have, want):
    if not want:
        return copy.deepcopy(have)
    have = have or {}
    if want.get("id"):
        same = want["id"] == have.get("id")
        merged = {"id": want["id"], "name": have.get("name") if same else None}
    else:
        same = want.get("name") == have.get("name")
        merged = {"id": have.get("id") if same else None, "name": want.get("name")}
    version = want.get("version")
    merged["version"] = str(version) if version is not None else (have.get("version") if same else None)
    return merged


def predict(have, want, purge_hooks=False, purge_notifications=False, purge_tags=False, propagate_tags=False):
    """The state the group will have once ``want`` is applied (for check mode and the diff)."""
    if have is None:
        state = {
            "name": want["name"],
            "arn": None,
            "capacity_rebalance": False,
            "target_group_arns": [],
            "lifecycle_hooks": [],
            "tags": {},
            "propagated_tags": [],
            "overrides": None,
            "instances_distribution": None,
            "instance_maintenance_policy": None,
            "default_instance_warmup": None,
            "mixed_instances_policy": False,
            "launch_template": None,
            "availability_zones": None,
            "scaling_policies": [],
            "outdated_instances": [],
            "enabled_metrics": [],
        }
        for key, _api in SCALARS:
            state.setdefault(key, None)
        if want.get("desired_capacity") is None:
            # desired_capacity_at_create: the capacity a new group starts with, never compared afterwards
            state["desired_capacity"] = want.get("desired_capacity_at_create", want.get("min_size"))
            if state["desired_capacity"] is None:
                state["desired_capacity"] = want.get("min_size")
    else:
        state = copy.deepcopy(have)
    for key, _api in SCALARS:
        if want.get(key) is not None:
            state[key] = want[key]
    state["default_instance_warmup"] = _cleared(state.get("default_instance_warmup"))
    if want.get("subnet_ids") is not None:
        state["subnet_ids"] = sorted(want["subnet_ids"])
    if want.get("target_group_arns") is not None:
        state["target_group_arns"] = sorted(want["target_group_arns"])
    if want.get("enabled_metrics") is not None:
        state["enabled_metrics"] = sorted(set(want["enabled_metrics"]))
    if want.get("instance_maintenance_policy") is not None:
        state["instance_maintenance_policy"] = _cleared(copy.deepcopy(want["instance_maintenance_policy"]))
    state["launch_template"] = _merged_template(state.get("launch_template"), want.get("launch_template"))
    if want.get("overrides") is not None:
        state["overrides"] = copy.deepcopy(want["overrides"])
    if want.get("instances_distribution") is not None:
        distribution = dict(state.get("instances_distribution") or {})
        distribution.update({key: value for key, value in want["instances_distribution"].items() if value is not None})
        state["instances_distribution"] = distribution
    state["mixed_instances_policy"] = bool(
        state.get("mixed_instances_policy") or state.get("overrides") or state.get("instances_distribution")
    )
    if want.get("lifecycle_hooks") is not None:
        hooks = {hook["name"]: hook for hook in state.get("lifecycle_hooks") or []}
        if purge_hooks:
            hooks = {}
        hooks.update({hook["name"]: copy.deepcopy(hook) for hook in want["lifecycle_hooks"]})
        state["lifecycle_hooks"] = [hooks[name] for name in sorted(hooks)]
    if want.get("notifications") is not None:
        topics = {} if purge_notifications else {item["topic_arn"]: item for item in state.get("notifications") or []}
        topics.update(
            {
                item["topic_arn"]: {"topic_arn": item["topic_arn"], "types": sorted(item["types"])}
                for item in want["notifications"]
            }
        )
        state["notifications"] = [topics[topic] for topic in sorted(topics)]
    if want.get("tags") is not None:
        tags = {} if purge_tags else dict(state.get("tags") or {})
        propagated = set() if purge_tags else set(state.get("propagated_tags") or [])
        tags.update({key: str(value) for key, value in want["tags"].items()})
        propagated = (propagated | set(want["tags"])) if propagate_tags else (propagated - set(want["tags"]))
        state["tags"] = tags
        state["propagated_tags"] = sorted(propagated & set(tags))
    if want.get("predictive_scaling") is not None:
        wanted = want["predictive_scaling"]
        names = set(state.get("scaling_policies") or [])
        if wanted.get("state") == "absent":
            state["predictive_scaling"] = None
            names.discard(wanted["name"])
        else:
            policy = dict(state.get("predictive_scaling") or {"arn": None})
            policy.update({key: value for key, value in wanted.items() if value is not None and key != "state"})
            state["predictive_scaling"] = policy
            names.add(wanted["name"])
        state["scaling_policies"] = sorted(names)
    return state


# ---- API parameters ----------------------------------------------------------------------------


def _template_spec(template):
    spec = {"LaunchTemplateId": template["id"]} if template.get("id") else {"LaunchTemplateName": template["name"]}
    if template.get("version") is not None:
        spec["Version"] = str(template["version"])
    return spec


def _override(override):
    item = {"InstanceType": override["instance_type"]}
    if override.get("weighted_capacity") is not None:
        item["WeightedCapacity"] = str(override["weighted_capacity"])
    return item


def _launch_params(state):
    """``MixedInstancesPolicy`` (or ``LaunchTemplate`` for a group without one) of a state."""
    if not state.get("mixed_instances_policy"):
        return {"LaunchTemplate": _template_spec(state["launch_template"])}
    policy = {"LaunchTemplate": {"LaunchTemplateSpecification": _template_spec(state["launch_template"])}}
    if state.get("overrides"):
        policy["LaunchTemplate"]["Overrides"] = [_override(item) for item in state["overrides"]]
    distribution = state.get("instances_distribution") or {}
    if distribution:
        policy["InstancesDistribution"] = {
            api: distribution[key] for key, api in DISTRIBUTION if distribution.get(key) is not None
        }
    return {"MixedInstancesPolicy": policy}


def _maintenance_params(policy):
    policy = policy or {}
    return {
        "MinHealthyPercentage": -1
        if policy.get("min_healthy_percentage") is None
        else policy["min_healthy_percentage"],
        "MaxHealthyPercentage": -1
        if policy.get("max_healthy_percentage") is None
        else policy["max_healthy_percentage"],
    }


def _hook_params(group_name, hook, with_group=True):
    params = {"LifecycleHookName": hook["name"]}
    if with_group:
        params["AutoScalingGroupName"] = group_name
    for key, api in HOOK_FIELDS:
        if hook.get(key) is not None:
            params[api] = hook[key]
    return params


def _tag_params(group_name, tags, propagated):
    return [
        {
            "ResourceId": group_name,
            "ResourceType": "auto-scaling-group",
            "Key": key,
            "Value": str(value),
            "PropagateAtLaunch": key in propagated,
        }
        for key, value in sorted(tags.items())
    ]


def _predictive_params(group_name, policy):
    pair = {"PredefinedMetricType": policy["metric_type"]}
    if policy.get("resource_label"):
        pair["ResourceLabel"] = policy["resource_label"]
    configuration = {
        "MetricSpecifications": [
            {"TargetValue": float(policy["target_value"]), "PredefinedMetricPairSpecification": pair}
        ]
    }
    for key, api in PREDICTIVE:
        if policy.get(key) is not None:
            configuration[api] = policy[key]
    return {
        "AutoScalingGroupName": group_name,
        "PolicyName": policy["name"],
        "PolicyType": "PredictiveScaling",
        "PredictiveScalingConfiguration": configuration,
    }


# ---- making the changes ------------------------------------------------------------------------


def create(asg, want, after):
    """Create the group with everything CreateAutoScalingGroup takes, hooks included, then its
    notifications and predictive policy. ``after`` is ``predict(None, want)``."""
    name = want["name"]
    params = {
        "AutoScalingGroupName": name,
        "MinSize": after["min_size"],
        "MaxSize": after["max_size"],
        "DesiredCapacity": after["desired_capacity"],
        "VPCZoneIdentifier": ",".join(want["subnet_ids"]),
    }
    params.update(_launch_params(after))
    for key, api in SCALARS:
        if key not in ("min_size", "max_size", "desired_capacity") and _cleared(after.get(key)) is not None:
            params[api] = after[key]
    if after.get("target_group_arns"):
        params["TargetGroupARNs"] = after["target_group_arns"]
    if after.get("instance_maintenance_policy"):
        params["InstanceMaintenancePolicy"] = _maintenance_params(after["instance_maintenance_policy"])
    if after.get("lifecycle_hooks"):
        params["LifecycleHookSpecificationList"] = [
            _hook_params(name, hook, with_group=False) for hook in after["lifecycle_hooks"]
        ]
    if after.get("tags"):
        params["Tags"] = _tag_params(name, after["tags"], after.get("propagated_tags") or [])
    call(asg, "create_auto_scaling_group", **params)
    for item in after.get("notifications") or []:
        _put_notification(asg, name, item)
    if after.get("predictive_scaling"):
        call(asg, "put_scaling_policy", **_predictive_params(name, after["predictive_scaling"]))
    if after.get("enabled_metrics"):
        _enable_metrics(asg, name, after["enabled_metrics"])


def _sync_set(current, wanted, add, remove):
    """Make a set-valued setting ``wanted`` from ``current``: ``add`` what is missing, ``remove`` what is extra (each
    called with a sorted list, and only when it is not empty)."""
    current, wanted = set(current or []), set(wanted)
    if wanted - current:
        add(sorted(wanted - current))
    if current - wanted:
        remove(sorted(current - wanted))


def _put_notification(asg, name, item):
    call(asg, "put_notification_configuration", AutoScalingGroupName=name, TopicARN=item["topic_arn"],
         NotificationTypes=item["types"])  # fmt: skip


def _enable_metrics(asg, name, metrics):
    """Group metrics are free at 1-minute granularity (the dashboard's capacity widgets need them)."""
    call(asg, "enable_metrics_collection", AutoScalingGroupName=name, Granularity="1Minute", Metrics=metrics)


def apply(
    asg,
    have,
    want,
    changes,
    after,
    purge_hooks=False,
    purge_notifications=False,
    purge_tags=False,
    propagate_tags=False,
):
    """Make ``changes`` (from ``plan``) to the existing group ``have``; ``after`` is ``predict(...)``."""
    name = have["name"]
    fields = {change["field"] for change in changes}
    update = {}
    for key, api in SCALARS:
        if key in fields:
            update[api] = -1 if key == "default_instance_warmup" and after.get(key) is None else after[key]
    if "subnet_ids" in fields:
        update["VPCZoneIdentifier"] = ",".join(want["subnet_ids"])
    if "instance_maintenance_policy" in fields:
        update["InstanceMaintenancePolicy"] = _maintenance_params(after["instance_maintenance_policy"])
    if fields & {"launch_template", "overrides", "instances_distribution"}:
        update.update(_launch_params(after))
    if update:
        call(asg, "update_auto_scaling_group", AutoScalingGroupName=name, **update)
    if "target_group_arns" in fields:
        _sync_set(
            have.get("target_group_arns"),
            want["target_group_arns"],
            lambda arns: call(
                asg, "attach_load_balancer_target_groups", AutoScalingGroupName=name, TargetGroupARNs=arns
            ),
            lambda arns: call(
                asg, "detach_load_balancer_target_groups", AutoScalingGroupName=name, TargetGroupARNs=arns
            ),
        )
    if "lifecycle_hooks" in fields:
        put, delete = _hooks_plan(have.get("lifecycle_hooks"), want["lifecycle_hooks"], purge_hooks)
        for hook in put:
            call(asg, "put_lifecycle_hook", **_hook_params(name, hook))
        for hook_name in delete:
            call(asg, "delete_lifecycle_hook", AutoScalingGroupName=name, LifecycleHookName=hook_name)
    if "notifications" in fields:
        put, delete = _notifications_plan(have.get("notifications"), want["notifications"], purge_notifications)
        for item in put:
            _put_notification(asg, name, item)
        for topic in delete:
            call(asg, "delete_notification_configuration", AutoScalingGroupName=name, TopicARN=topic)
    if "tags" in fields:
        put, delete = _tags_plan(
            have.get("tags"), have.get("propagated_tags"), want["tags"], propagate_tags, purge_tags
        )
        if put:
            call(asg, "create_or_update_tags", Tags=_tag_params(name, put, list(put) if propagate_tags else []))
        if delete:
            call(
                asg,
                "delete_tags",
                Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": key} for key in delete],
            )
    if "enabled_metrics" in fields:
        _sync_set(
            have.get("enabled_metrics"),
            want["enabled_metrics"],
            lambda metrics: _enable_metrics(asg, name, metrics),
            lambda metrics: call(asg, "disable_metrics_collection", AutoScalingGroupName=name, Metrics=metrics),
        )
    if "predictive_scaling" in fields:
        policy = want["predictive_scaling"]
        if policy.get("state") == "absent":
            call(asg, "delete_policy", AutoScalingGroupName=name, PolicyName=policy["name"])
        else:
            call(asg, "put_scaling_policy", **_predictive_params(name, after["predictive_scaling"]))


def delete(asg, name, force):
    call(asg, "delete_auto_scaling_group", AutoScalingGroupName=name, ForceDelete=force)


def ensure(
    asg, want, check_mode=False, purge_hooks=False, purge_notifications=False, purge_tags=False, propagate_tags=False
):
    """Make the group ``want`` (present). Returns ``{"changed", "created", "changes", "before", "after",
    "launch_template_changed"}``; in check mode nothing is called but the describes."""
    predictive = want.get("predictive_scaling")
    have = observe(
        asg,
        want["name"],
        notifications=want.get("notifications") is not None,
        predictive_name=predictive["name"] if predictive else None,
    )
    options = dict(
        purge_hooks=purge_hooks,
        purge_notifications=purge_notifications,
        purge_tags=purge_tags,
        propagate_tags=propagate_tags,
    )
    changes = plan(have, want, **options)
    after = predict(have, want, **options)
    if changes and not check_mode:
        if have is None:
            create(asg, want, after)
        else:
            apply(asg, have, want, changes, after, **options)
        described = observe(
            asg,
            want["name"],
            notifications=want.get("notifications") is not None,
            predictive_name=predictive["name"] if predictive else None,
        )
        after = described if described is not None else after
    return {
        "changed": bool(changes),
        "created": have is None,
        "changes": changes,
        "before": have,
        "after": after,
        "launch_template_changed": have is not None and any(change["field"] == "launch_template" for change in changes),
    }


def ensure_absent(asg, name, force=False, check_mode=False):
    have = observe(asg, name)
    if have is not None and not check_mode:
        delete(asg, name, force)
    return {
        "changed": have is not None,
        "created": False,
        "before": have,
        "after": None,
        "launch_template_changed": False,
        "changes": [{"field": "group", "before": name, "after": None}] if have is not None else [],
    }
