"""The Auto Scaling group core of ``autoscaling_group_spot`` against moto in-process, with the sandbox's rules.

moto 5.2.5 has no notification API (the sandbox's Auto Scaling rule now answers it) and drops
``DefaultInstanceWarmup`` on create and update. ``AwsGaps`` plays those parts as the EC2 Auto Scaling API
reference describes them, over the moto client, and counts the calls, so that the module's handling of
both is tested too; the first tests show the gaps.
"""

import copy

import boto3
import pytest
from moto import mock_aws

from ansible_collections.ec2spot.autorecover.plugins.module_utils.fleet import group as g
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from sandbox import rules as sandbox_rules, world as sandbox_world
from sandbox.clock import CONTEXT

sandbox_rules.install()

TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:other"


class AwsGaps:
    """The moto client, plus the notification API and DefaultInstanceWarmup as AWS has them."""

    def __init__(self, client):
        self._client = client
        self.notifications = {}  # (group, topic) -> set of types
        self.warmup = {}  # group -> seconds
        self.calls = []

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return call

    def _keep_warmup(self, params):
        if "DefaultInstanceWarmup" in params:
            value = params.pop("DefaultInstanceWarmup")
            if value == -1:
                self.warmup.pop(params["AutoScalingGroupName"], None)
            else:
                self.warmup[params["AutoScalingGroupName"]] = value

    def create_auto_scaling_group(self, **params):
        self.calls.append("create_auto_scaling_group")
        self._keep_warmup(params)
        return self._client.create_auto_scaling_group(**params)

    def update_auto_scaling_group(self, **params):
        self.calls.append("update_auto_scaling_group")
        self._keep_warmup(params)
        return self._client.update_auto_scaling_group(**params)

    def describe_auto_scaling_groups(self, **params):
        answer = self._client.describe_auto_scaling_groups(**params)
        for group in answer["AutoScalingGroups"]:
            if group["AutoScalingGroupName"] in self.warmup:
                group["DefaultInstanceWarmup"] = self.warmup[group["AutoScalingGroupName"]]
        return answer

    def put_notification_configuration(self, AutoScalingGroupName, TopicARN, NotificationTypes):  # noqa: N803 - boto3's names
        self.calls.append("put_notification_configuration")
        self.notifications[(AutoScalingGroupName, TopicARN)] = set(NotificationTypes)  # replaces the topic's types

    def delete_notification_configuration(self, AutoScalingGroupName, TopicARN):  # noqa: N803
        self.calls.append("delete_notification_configuration")
        del self.notifications[(AutoScalingGroupName, TopicARN)]

    def get_paginator(self, operation):
        if operation != "describe_notification_configurations":
            return self._client.get_paginator(operation)
        gaps = self

        class Paginator:
            def paginate(self, AutoScalingGroupNames):  # noqa: N803
                items = [
                    {"AutoScalingGroupName": group, "TopicARN": topic, "NotificationType": kind}
                    for (group, topic), kinds in sorted(gaps.notifications.items())
                    if group in AutoScalingGroupNames
                    for kind in sorted(kinds)
                ]
                return [{"NotificationConfigurations": items}]

        return Paginator()


# One moto account for the module (seeding it costs most of a second); each test has its own group.
@pytest.fixture(scope="module")
def aws():
    with mock_aws():
        CONTEXT.reset()
        yield


@pytest.fixture(scope="module")
def moto_asg(aws):
    return boto3.client("autoscaling", region_name="us-east-1", config=RETRY_CONFIG)


@pytest.fixture
def asg(moto_asg):
    return AwsGaps(moto_asg)


@pytest.fixture
def name(request):
    return "unit-" + request.node.name.replace("_", "-")[5:60].strip("-")


@pytest.fixture(scope="module")
def world(aws):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    seeded = sandbox_world.seed(ec2)
    for version_type in ("t3.micro", "t3.small"):
        ec2.create_launch_template(
            LaunchTemplateName=f"lt-{version_type}",
            LaunchTemplateData={
                "ImageId": seeded["image_id"],
                "InstanceType": version_type,
                "MetadataOptions": {"HttpTokens": "required"},
            },
        )
    ec2.create_launch_template_version(
        LaunchTemplateName="lt-t3.micro",
        LaunchTemplateData={
            "ImageId": seeded["image_id"],
            "InstanceType": "t3.micro",
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )
    return seeded


def want(world, name, **changes):
    """The role's single stateful instance, as the module hands it to the core."""
    wanted = {
        "name": name,
        "min_size": 1,
        "max_size": 1,
        "desired_capacity": 1,
        "subnet_ids": [world["subnets"]["us-east-1a"], world["subnets"]["us-east-1b"]],
        "launch_template": {"name": "lt-t3.micro", "version": "1"},
        "overrides": [
            {"instance_type": "t3.micro", "weighted_capacity": None},
            {"instance_type": "t3.small", "weighted_capacity": None},
        ],
        "instances_distribution": {
            "on_demand_base_capacity": 0,
            "on_demand_percentage_above_base_capacity": 0,
            "spot_allocation_strategy": "price-capacity-optimized",
        },
        "capacity_rebalance": True,
        "health_check_type": "EC2",
        "health_check_grace_period": 300,
        "instance_maintenance_policy": {"min_healthy_percentage": 100, "max_healthy_percentage": 110},
        "lifecycle_hooks": [
            {
                "name": f"{name}-launch",
                "transition": g.LAUNCHING,
                "heartbeat_timeout": 600,
                "default_result": "ABANDON",
                "notification_target_arn": None,
                "role_arn": None,
                "notification_metadata": None,
            },
            {
                "name": f"{name}-terminate",
                "transition": g.TERMINATING,
                "heartbeat_timeout": 300,
                "default_result": "CONTINUE",
                "notification_target_arn": None,
                "role_arn": None,
                "notification_metadata": None,
            },
        ],
        "tags": {"ec2spot:service": "unit", "ec2spot:lineage": "unitdata"},
    }
    wanted.update(changes)
    return wanted


OPTIONS = {"purge_hooks": True, "purge_notifications": True, "purge_tags": True}


def describe(moto_asg, name):
    groups = moto_asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return groups[0] if groups else None


# ---- the gaps, shown ------------------------------------------------------------------------------


def test_the_sandbox_has_the_notification_api_and_moto_drops_the_default_instance_warmup(moto_asg, world, name):
    g.create(moto_asg, want(world, name), g.predict(None, want(world, name)))
    # moto 5.2.5 raises NotImplementedError here; the sandbox's Auto Scaling rule answers as AWS does.
    assert (
        moto_asg.describe_notification_configurations(AutoScalingGroupNames=[name])["NotificationConfigurations"] == []
    )
    moto_asg.update_auto_scaling_group(AutoScalingGroupName=name, DefaultInstanceWarmup=120)
    assert "DefaultInstanceWarmup" not in describe(moto_asg, name)


# ---- create ---------------------------------------------------------------------------------------


def test_a_new_group_is_created_with_its_hooks_spot_settings_and_tags_in_one_call(asg, moto_asg, world, name):
    result = g.ensure(asg, want(world, name), **OPTIONS)
    assert (result["changed"], result["created"], result["launch_template_changed"]) == (True, True, False)
    assert [c["field"] for c in result["changes"]] == ["group"]
    assert asg.calls.count("create_auto_scaling_group") == 1 and "put_lifecycle_hook" not in asg.calls
    group = describe(moto_asg, name)
    assert group["CapacityRebalance"] is True
    assert group["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 110}
    assert sorted(group["AvailabilityZones"]) == ["us-east-1a", "us-east-1b"]
    assert [o["InstanceType"] for o in group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]] == [
        "t3.micro",
        "t3.small",
    ]
    assert (
        group["MixedInstancesPolicy"]["InstancesDistribution"]["SpotAllocationStrategy"] == "price-capacity-optimized"
    )
    assert {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]} == {
        "ec2spot:service": ("unit", False),
        "ec2spot:lineage": ("unitdata", False),
    }
    hooks = {
        h["LifecycleHookName"]: (h["HeartbeatTimeout"], h["DefaultResult"])
        for h in moto_asg.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
    }
    assert hooks == {f"{name}-launch": (600, "ABANDON"), f"{name}-terminate": (300, "CONTINUE")}
    assert result["after"]["arn"] == group["AutoScalingGroupARN"]


def test_the_same_group_again_changes_nothing(asg, world, name):
    everything = want(
        world,
        name,
        notifications=[{"topic_arn": TOPIC, "types": list(g.NOTIFICATION_TYPES)}],
        default_instance_warmup=60,
        predictive_scaling=predictive(name),
    )
    g.ensure(asg, copy.deepcopy(everything), **OPTIONS)
    asg.calls.clear()
    again = g.ensure(asg, copy.deepcopy(everything), **OPTIONS)
    assert (again["changed"], again["changes"], again["created"]) == (False, [], False)
    assert again["before"] == again["after"]
    assert not [
        call for call in asg.calls if call.startswith(("create", "update", "put", "delete", "attach", "detach"))
    ]


def test_check_mode_describes_a_group_it_would_create_and_creates_nothing(asg, moto_asg, world, name):
    result = g.ensure(asg, want(world, name), check_mode=True, **OPTIONS)
    assert (result["changed"], result["created"]) == (True, True)
    assert describe(moto_asg, name) is None
    after = result["after"]
    assert (after["arn"], after["capacity_rebalance"], after["desired_capacity"]) == (None, True, 1)
    assert [h["name"] for h in after["lifecycle_hooks"]] == [f"{name}-launch", f"{name}-terminate"]


def test_a_group_needs_a_template_sizes_and_subnets_to_be_created(asg, world, name):
    with pytest.raises(g.FleetError, match="does not exist; to create it give min_size, launch_template"):
        g.ensure(asg, {"name": name, "capacity_rebalance": True, "max_size": 1, "subnet_ids": ["subnet-1"]})


def test_without_a_desired_capacity_a_new_group_starts_at_its_minimum_or_the_capacity_for_creation(
    asg, moto_asg, world, name
):
    g.ensure(
        asg, want(world, name, min_size=1, max_size=6, desired_capacity=None, desired_capacity_at_create=3), **OPTIONS
    )
    assert describe(moto_asg, name)["DesiredCapacity"] == 3
    moto_asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=4)  # as a scaling policy would
    again = g.ensure(
        asg, want(world, name, min_size=1, max_size=6, desired_capacity=None, desired_capacity_at_create=3), **OPTIONS
    )
    assert again["changed"] is False and describe(moto_asg, name)["DesiredCapacity"] == 4


# ---- update ---------------------------------------------------------------------------------------


def test_only_what_differs_is_changed_and_a_new_template_version_is_reported(asg, moto_asg, world, name):
    g.ensure(asg, want(world, name, capacity_rebalance=False), **OPTIONS)
    asg.calls.clear()
    weighted = [
        {"instance_type": "t3.micro", "weighted_capacity": 1},
        {"instance_type": "t3.small", "weighted_capacity": 2},
    ]
    result = g.ensure(
        asg,
        want(
            world,
            name,
            launch_template={"name": "lt-t3.micro", "version": "2"},
            overrides=weighted,
            max_size=4,
            capacity_rebalance=True,
        ),
        **OPTIONS,
    )
    assert [c["field"] for c in result["changes"]] == ["max_size", "capacity_rebalance", "launch_template", "overrides"]
    assert result["launch_template_changed"] is True
    assert asg.calls.count("update_auto_scaling_group") == 1
    group = describe(moto_asg, name)
    assert (group["CapacityRebalance"], group["MaxSize"]) == (True, 4)
    policy = group["MixedInstancesPolicy"]
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["Version"] == "2"
    assert [(o["InstanceType"], o["WeightedCapacity"]) for o in policy["LaunchTemplate"]["Overrides"]] == [
        ("t3.micro", "1"),
        ("t3.small", "2"),
    ]
    # the distribution it was not asked to change is kept (amazon.aws.autoscaling_group would have dropped it)
    assert policy["InstancesDistribution"]["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert (
        g.ensure(
            asg,
            want(world, name, launch_template={"name": "lt-t3.micro", "version": "2"}, overrides=weighted, max_size=4),
            **OPTIONS,
        )["changed"]
        is False
    )


def test_instances_of_another_template_version_are_reported_for_a_refresh(asg, moto_asg, world, name):
    created = g.ensure(asg, want(world, name), **OPTIONS)
    launched = [i["InstanceId"] for i in describe(moto_asg, name)["Instances"]]
    assert launched and created["after"]["outdated_instances"] == []
    moved = g.ensure(asg, want(world, name, launch_template={"name": "lt-t3.micro", "version": "2"}), **OPTIONS)
    assert moved["launch_template_changed"] is True
    assert moved["after"]["outdated_instances"] == sorted(launched)
    # no number to compare with
    assert (
        g.ensure(asg, want(world, name, launch_template={"name": "lt-t3.micro", "version": "$Latest"}), **OPTIONS)[
            "after"
        ]["outdated_instances"]
        == []
    )


def test_a_template_without_a_version_keeps_the_groups_version(asg, world, name):
    g.ensure(asg, want(world, name), **OPTIONS)
    result = g.ensure(asg, want(world, name, launch_template={"name": "lt-t3.micro", "version": None}), **OPTIONS)
    assert result["changed"] is False and result["after"]["launch_template"]["version"] == "1"


def test_a_distribution_compares_only_the_keys_asked_for(asg, world, name):
    g.ensure(asg, want(world, name), **OPTIONS)
    assert (
        g.ensure(
            asg,
            want(world, name, instances_distribution={"spot_allocation_strategy": "price-capacity-optimized"}),
            **OPTIONS,
        )["changed"]
        is False
    )
    moved = g.ensure(
        asg, want(world, name, instances_distribution={"spot_allocation_strategy": "capacity-optimized"}), **OPTIONS
    )
    assert moved["after"]["instances_distribution"] == {
        "on_demand_base_capacity": 0,
        "on_demand_percentage_above_base_capacity": 0,
        "spot_allocation_strategy": "capacity-optimized",
    }


def test_check_mode_on_an_existing_group_reports_the_changes_and_makes_none(asg, moto_asg, world, name):
    g.ensure(asg, want(world, name), **OPTIONS)
    before = copy.deepcopy(describe(moto_asg, name))
    result = g.ensure(
        asg,
        want(
            world,
            name,
            max_size=3,
            capacity_rebalance=False,
            instance_maintenance_policy={"min_healthy_percentage": 90, "max_healthy_percentage": 120},
        ),
        check_mode=True,
        **OPTIONS,
    )
    assert [c["field"] for c in result["changes"]] == ["max_size", "capacity_rebalance", "instance_maintenance_policy"]
    assert result["after"]["max_size"] == 3 and result["before"]["max_size"] == 1
    assert describe(moto_asg, name) == before


def test_hooks_are_updated_and_unlisted_ones_removed_only_when_purging(asg, moto_asg, world, name):
    g.ensure(asg, want(world, name), **OPTIONS)
    moto_asg.put_lifecycle_hook(
        AutoScalingGroupName=name, LifecycleHookName="someone-elses", LifecycleTransition=g.LAUNCHING
    )
    hooks = want(world, name)["lifecycle_hooks"]
    hooks[0]["heartbeat_timeout"] = 900
    kept = g.ensure(asg, want(world, name, lifecycle_hooks=hooks), purge_hooks=False)
    assert [c["field"] for c in kept["changes"]] == ["lifecycle_hooks"]
    names = [
        h["LifecycleHookName"] for h in moto_asg.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
    ]
    assert sorted(names) == sorted([f"{name}-launch", f"{name}-terminate", "someone-elses"])
    g.ensure(asg, want(world, name, lifecycle_hooks=hooks), purge_hooks=True)
    timeouts = {
        h["LifecycleHookName"]: h["HeartbeatTimeout"]
        for h in moto_asg.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
    }
    assert timeouts == {f"{name}-launch": 900, f"{name}-terminate": 300}


def test_tags_are_set_propagated_and_purged(asg, moto_asg, world, name):
    g.ensure(asg, want(world, name), **OPTIONS)
    g.ensure(
        asg, want(world, name, tags={"ec2spot:service": "unit", "team": "db"}), purge_tags=True, propagate_tags=True
    )
    tags = {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in describe(moto_asg, name)["Tags"]}
    assert tags == {"ec2spot:service": ("unit", True), "team": ("db", True)}


def test_target_groups_are_attached_and_detached(asg, moto_asg, world, name):
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    arns = [
        elbv2.create_target_group(Name=f"{name[-20:]}-{tg}", Protocol="HTTP", Port=80, VpcId=world["vpc_id"])[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        for tg in ("one", "two")
    ]
    g.ensure(asg, want(world, name, target_group_arns=[arns[0]]), **OPTIONS)
    assert describe(moto_asg, name)["TargetGroupARNs"] == [arns[0]]
    g.ensure(asg, want(world, name, target_group_arns=[arns[1]]), **OPTIONS)
    assert describe(moto_asg, name)["TargetGroupARNs"] == [arns[1]]


def test_group_metrics_are_enabled_changed_and_disabled(asg, moto_asg, world, name):
    def enabled():
        return sorted(metric["Metric"] for metric in describe(moto_asg, name).get("EnabledMetrics") or [])

    created = g.ensure(
        asg, want(world, name, enabled_metrics=["GroupInServiceInstances", "GroupDesiredCapacity"]), **OPTIONS
    )
    assert created["after"]["enabled_metrics"] == enabled() == ["GroupDesiredCapacity", "GroupInServiceInstances"]
    assert not g.ensure(
        asg, want(world, name, enabled_metrics=["GroupDesiredCapacity", "GroupInServiceInstances"]), **OPTIONS
    )["changed"]
    changed = g.ensure(
        asg, want(world, name, enabled_metrics=["GroupInServiceInstances", "GroupTotalInstances"]), **OPTIONS
    )
    assert changed["changed"] and enabled() == ["GroupInServiceInstances", "GroupTotalInstances"]
    assert g.ensure(asg, want(world, name, enabled_metrics=[]), **OPTIONS)["changed"] and enabled() == []
    assert not g.ensure(asg, want(world, name), **OPTIONS)["changed"]  # unmanaged: left alone


def predictive(name, **changes):
    policy = {
        "name": f"{name}-predictive",
        "state": "present",
        "metric_type": "ASGCPUUtilization",
        "target_value": 50.0,
        "resource_label": None,
        "mode": "ForecastOnly",
        "scheduling_buffer_time": None,
        "max_capacity_breach_behavior": "HonorMaxCapacity",
        "max_capacity_buffer": None,
    }
    policy.update(changes)
    return policy


def test_a_predictive_policy_is_put_changed_and_removed(asg, moto_asg, world, name):
    g.ensure(asg, want(world, name, max_size=4, predictive_scaling=predictive(name)), **OPTIONS)
    [policy] = moto_asg.describe_policies(AutoScalingGroupName=name)["ScalingPolicies"]
    assert policy["PolicyType"] == "PredictiveScaling"
    assert policy["PredictiveScalingConfiguration"]["MetricSpecifications"][0]["TargetValue"] == 50.0
    changed = g.ensure(
        asg, want(world, name, max_size=4, predictive_scaling=predictive(name, mode="ForecastAndScale")), **OPTIONS
    )
    assert [c["field"] for c in changed["changes"]] == ["predictive_scaling"]
    assert changed["after"]["predictive_scaling"]["mode"] == "ForecastAndScale"
    removed = g.ensure(
        asg,
        want(world, name, max_size=4, predictive_scaling={"name": f"{name}-predictive", "state": "absent"}),
        **OPTIONS,
    )
    assert removed["changed"] is True and removed["after"]["predictive_scaling"] is None
    assert moto_asg.describe_policies(AutoScalingGroupName=name)["ScalingPolicies"] == []
    assert (
        g.ensure(
            asg,
            want(world, name, max_size=4, predictive_scaling={"name": f"{name}-predictive", "state": "absent"}),
            **OPTIONS,
        )["changed"]
        is False
    )


# ---- what moto lacks, as AWS does it --------------------------------------------------------------


def test_notifications_go_to_the_topics_given_and_others_are_purged(asg, world, name):
    asg.notifications[(name, OTHER_TOPIC)] = {"autoscaling:EC2_INSTANCE_LAUNCH"}
    launches = ["autoscaling:EC2_INSTANCE_LAUNCH", "autoscaling:EC2_INSTANCE_LAUNCH_ERROR"]
    g.ensure(asg, want(world, name, notifications=[{"topic_arn": TOPIC, "types": launches}]), purge_notifications=False)
    assert asg.notifications == {(name, TOPIC): set(launches), (name, OTHER_TOPIC): {"autoscaling:EC2_INSTANCE_LAUNCH"}}
    result = g.ensure(
        asg, want(world, name, notifications=[{"topic_arn": TOPIC, "types": list(g.NOTIFICATION_TYPES)}]), **OPTIONS
    )
    assert [c["field"] for c in result["changes"]] == ["notifications"]
    assert asg.notifications == {(name, TOPIC): set(g.NOTIFICATION_TYPES)}
    assert result["after"]["notifications"] == [{"topic_arn": TOPIC, "types": sorted(g.NOTIFICATION_TYPES)}]


def test_the_default_instance_warmup_is_set_and_cleared(asg, world, name):
    g.ensure(asg, want(world, name, default_instance_warmup=120), **OPTIONS)
    assert asg.warmup == {name: 120}
    assert g.ensure(asg, want(world, name, default_instance_warmup=120), **OPTIONS)["changed"] is False
    cleared = g.ensure(asg, want(world, name, default_instance_warmup=-1), **OPTIONS)
    assert cleared["changed"] is True and asg.warmup == {}
    assert g.ensure(asg, want(world, name, default_instance_warmup=-1), **OPTIONS)["changed"] is False


def test_an_unmanaged_setting_is_neither_described_nor_changed(asg, world, name):
    g.ensure(asg, want(world, name), **OPTIONS)
    asg.calls.clear()
    g.ensure(asg, {"name": name, "capacity_rebalance": True})
    assert "describe_notification_configurations" not in asg.calls


# ---- delete ---------------------------------------------------------------------------------------


def test_absent_deletes_the_group_once(asg, moto_asg, world, name):
    g.ensure(asg, want(world, name, min_size=0, desired_capacity=0), **OPTIONS)
    assert g.ensure_absent(asg, name, check_mode=True)["changed"] is True and describe(moto_asg, name) is not None
    assert g.ensure_absent(asg, name, force=True)["changed"] is True
    assert describe(moto_asg, name) is None
    assert g.ensure_absent(asg, name)["changed"] is False
