"""Auto Scaling groups as AWS runs them: lifecycle hooks, health replacement, launch settings.

AWS (EC2 Auto Scaling user guide "Amazon EC2 Auto Scaling lifecycle hooks", "Complete a
lifecycle action", "Amazon EC2 Auto Scaling event reference", "Configure a notification
target for lifecycle notifications", "Instance maintenance policies", "Health checks";
API reference CreateAutoScalingGroup, PutLifecycleHook, CompleteLifecycleAction,
RecordLifecycleActionHeartbeat, SetInstanceHealth, UpdateAutoScalingGroup):

* hooks given at create (``LifecycleHookSpecificationList``) exist before the first
  instance launches; a hook put without ``HeartbeatTimeout`` gets 3600 s (the modeled
  ``lifecycle_heartbeat`` figure, which a drill may shorten);
* a launch hook holds each new instance in ``Pending:Wait`` and a terminate hook holds each
  instance the group removes (scale-in, ``TerminateInstanceInAutoScalingGroup``, health
  replacement) in ``Terminating:Wait``, until ``CompleteLifecycleAction`` or the heartbeat
  timeout (then ``DefaultResult``); ``RecordLifecycleActionHeartbeat`` restarts the timeout,
  capped by the global timeout (100 x heartbeat timeout or 48 h, whichever is smaller);
  launch ``ABANDON`` terminates the instance and the group launches another, terminate
  ``CONTINUE`` and ``ABANDON`` both terminate; both calls take the token or the instance id
  and refuse anything else with ``ValidationError`` "No active Lifecycle Action found ...";
* every wait emits ``EC2 Instance-launch/terminate Lifecycle Action`` on the default bus and,
  when the hook has a notification target (SQS queue or SNS topic), sends the lifecycle
  message there; putting such a hook sends ``autoscaling:TEST_NOTIFICATION`` first;
  ``EC2 Instance Launch/Terminate Successful`` follow once the instance is in service/gone;
* ``SetInstanceHealth(Unhealthy)`` replaces the instance: terminate and launch at the same
  time by default, launch before terminating when the instance maintenance policy's
  minimum healthy percentage calls for it; within the health check grace period (which
  starts at ``InService``) the replacement waits unless ``ShouldRespectGracePeriod=False``;
  the API's default grace period is 0;
* an instance terminated or stopped through EC2 fails the EC2 health check and is replaced;
* ``UpdateAutoScalingGroup`` changes ``CapacityRebalance`` and ``InstanceMaintenancePolicy``
  and keeps the ``MixedInstancesPolicy`` it was not given;
* instances take the launch template's ``MetadataOptions`` and ``InstanceMarketOptions``; a
  mixed instances policy makes the part above the On-Demand base Spot by its percentage;
* ``CreateAutoScalingGroup`` / ``UpdateAutoScalingGroup`` keep ``AvailabilityZoneDistribution``
  (``CapacityDistributionStrategy``, default ``balanced-best-effort``; an unknown one is a
  ``ValidationError``): what a launch refused for lack of capacity does next is ``capacity.py``'s;
  each launch that enters service and each termination is a ``Successful`` scaling activity
  (``scaling_activities.py``).

moto 5.2.5 drops hooks given at create, never holds an instance, sends and emits nothing,
raises NotImplementedError on CompleteLifecycleAction and RecordLifecycleActionHeartbeat,
records Unhealthy without replacing, ignores CapacityRebalance and InstanceMaintenancePolicy
on update (and wipes the mixed instances policy), defaults the grace period to 300, launches
from a template without its metadata and market options, counts only InService
instances towards capacity, and ignores ``AvailabilityZoneDistribution``.

**Suspended processes** (EC2 Auto Scaling user guide, "Suspend and resume processes"): while ``Launch`` is
suspended the group launches nothing, whatever its capacity, and launches what is missing once it is resumed.
moto 5.2.5 records the suspension and launches regardless.

Controls: ``autoscaling/actions`` (pending lifecycle actions), ``autoscaling/terminate``
(the group terminates one of its instances, through its hooks, as on a Spot interruption it
acts on) and ``autoscaling/replace`` (an EC2 health check fails: replace as the group's
policy says). Other rules can call ``RULES["asg"]`` (an ``AutoScalingRules``) directly.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import timedelta

from .. import instance_lifecycle as lifecycle
from . import model_list, scaling_activities

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
RESULTS = ("CONTINUE", "ABANDON")
GLOBAL_TIMEOUT_CAP = 172800  # 48 h
DEFAULT_HEARTBEAT = 3600  # AWS's default heartbeat timeout
CAPACITY_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")
GONE_EC2_STATES = ("shutting-down", "terminated")
IMPAIRED_EC2_STATES = ("stopping", "stopped")

# Filled by install(): the one AutoScalingRules, for other rule modules and the tests.
RULES = {}


def _aws_time(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _event_time(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_none(value):
    return None if value is None or value == "" else int(value)


def _maintenance_policy(raw):
    """The policy as AWS stores it; -1 for both percentages clears it."""
    if not raw:
        return None
    policy = {
        key: int(raw[key]) for key in ("MinHealthyPercentage", "MaxHealthyPercentage") if raw.get(key) is not None
    }
    if not policy or all(value == -1 for value in policy.values()):
        return None
    return policy


def _replacing(group):
    """Ids of instances being replaced launch-first: still in the group, no longer capacity."""
    return model_list(group, "sandbox_replacing")


def _actions_of(state):
    """The lifecycle actions started for an instance of a group, finished or still waiting."""
    return model_list(state, "sandbox_actions")


def _terminating(state):
    return state.lifecycle_state.startswith("Terminating")


class LifecycleAction:
    """One hook's wait for one instance, with its token and its modeled deadlines."""

    def __init__(self, rules, group, state, hook):
        from sandbox.clock import new_token

        self.rules = rules
        self.group = group
        self.state = state
        self.hook_name = hook.name
        self.transition = hook.lifecycle_transition
        self.heartbeat_timeout = int(hook.heartbeat_timeout)
        self.default_result = hook.default_result
        self.token = new_token()
        self.done = False
        self.result = None
        clock = rules.context.clock
        self.started = clock.elapsed()
        self.global_due = self.started + clock.duration(min(100 * self.heartbeat_timeout, GLOBAL_TIMEOUT_CAP))
        self.due = None
        self.entry = None
        self.restart()

    @property
    def instance_id(self):
        return self.state.instance.id

    def restart(self):
        """(Re)start the heartbeat timeout, never past the global timeout."""
        context = self.rules.context
        if self.entry is not None:
            context.cancel(self.entry)
        self.due = min(context.clock.elapsed() + context.clock.duration(self.heartbeat_timeout), self.global_due)
        self.entry = context.at(
            self.due, self.expire, f"lifecycle hook {self.hook_name} times out for {self.instance_id}"
        )

    def expire(self):
        self.rules.finish_action(self, self.default_result, "timeout")

    def stop(self):
        self.done = True
        if self.entry is not None:
            self.rules.context.cancel(self.entry)
        self.rules.actions.pop(self.token, None)

    def view(self):
        context = self.rules.context
        now, elapsed = context.now(), context.clock.elapsed()
        return {
            "group": self.group.name,
            "hook": self.hook_name,
            "instance_id": self.instance_id,
            "token": self.token,
            "transition": self.transition,
            "lifecycle_state": self.state.lifecycle_state,
            "default_result": self.default_result,
            "heartbeat_timeout": self.heartbeat_timeout,
            "deadline": (now + timedelta(seconds=self.due - elapsed)).isoformat(),
            "global_deadline": (now + timedelta(seconds=self.global_due - elapsed)).isoformat(),
        }


class AutoScalingRules:
    """The group behaviour moto lacks, driven from moto's own models (moto keeps the state)."""

    def __init__(self, context):
        self.context = context
        self.actions = {}  # token -> LifecycleAction still waiting
        self.pending_tests = {}  # group name -> hooks whose TEST_NOTIFICATION is not sent yet
        self.group_terminating = set()  # instance ids the groups themselves are terminating in EC2
        self.zone_strategies = {}  # group name -> CapacityDistributionStrategy while moto creates the group

    # ---- lookups ------------------------------------------------------------------------
    def backend(self):
        return self.context.backend("autoscaling")

    @staticmethod
    def hooks(group, transition):
        return [
            hook
            for hook in group.autoscaling_backend.lifecycle_hooks.values()
            if hook.auto_scaling_group_name == group.name and hook.lifecycle_transition == transition
        ]

    @staticmethod
    def live(group):
        return group.autoscaling_backend.autoscaling_groups.get(group.name) is group and not getattr(
            group, "sandbox_deleting", False
        )

    def active(self, action):
        """Still waiting for an instance of a live group (a detached instance's wait is over)."""
        return not action.done and self.live(action.group) and action.state in action.group.instance_states

    @staticmethod
    def find(backend, instance_id):
        for group in backend.autoscaling_groups.values():
            for state in group.instance_states:
                if state.instance.id == instance_id:
                    return group, state
        return None, None

    def find_or_refuse(self, backend, instance_id):
        from moto.autoscaling.exceptions import ValidationError

        group, state = self.find(backend, instance_id)
        if state is None:
            raise ValidationError(f"Instance Id not found - No managed instance found for instance ID: {instance_id}")
        return group, state

    @staticmethod
    def capacity(group):
        """The instances that make up the group's capacity (moto counts InService only)."""
        replacing = _replacing(group)
        return [
            state
            for state in group.instance_states
            if state.lifecycle_state in CAPACITY_STATES and state.instance.id not in replacing
        ]

    @staticmethod
    def target_instances(group):
        """How many instances the desired capacity calls for (moto's arithmetic, weights included)."""
        target = group.desired_capacity or 0
        split = AutoScalingRules.market_split(group)
        return target if split is None else split[0] + split[1]

    @staticmethod
    def market_split(group):
        """(On-Demand, Spot) instance counts of a mixed instances policy; None without one."""
        policy = group.mixed_instances_policy
        if not policy:
            return None
        target = group.desired_capacity or 0
        overrides = (policy.get("LaunchTemplate") or {}).get("Overrides") or []
        distribution = policy.get("InstancesDistribution") or {}
        base = int(distribution.get("OnDemandBaseCapacity", 0) or 0)
        percent = distribution.get("OnDemandPercentageAboveBaseCapacity")
        percent = 100 if percent is None else int(percent)
        weight_text = str(overrides[0].get("WeightedCapacity", "1")) if overrides else "1"
        weight = int(weight_text) if weight_text.isdigit() and int(weight_text) > 0 else 1
        if base >= target:
            on_demand, spot = target, 0
        else:
            above = target - base
            spot = int(above - above * percent / 100.0)
            on_demand = target - spot
        return math.ceil(on_demand / weight), math.ceil(spot / weight)

    # ---- notifications and events ---------------------------------------------------------
    def deliver(self, arn, message, subject):
        """Send a message to an SQS queue or SNS topic ARN, as Auto Scaling does."""
        parts = arn.split(":")
        if len(parts) < 6 or parts[2] not in ("sqs", "sns"):
            raise ValueError(f"unsupported notification target {arn}")
        if parts[2] == "sqs":
            self.context.backend("sqs").send_message(parts[5], json.dumps(message))
        else:
            self.context.backend("sns").publish(json.dumps(message), arn=arn, subject=subject)

    def test_message(self, group):
        from sandbox.clock import new_token

        return {
            "AccountId": self.context.account_id,
            "RequestId": new_token(),
            "AutoScalingGroupARN": group.arn,
            "AutoScalingGroupName": group.name,
            "Service": "AWS Auto Scaling",
            "Event": "autoscaling:TEST_NOTIFICATION",
            "Time": _aws_time(self.context.now()),
        }

    def send_test(self, group, hook):
        self.deliver(
            hook.notification_target_arn,
            self.test_message(group),
            f'Auto Scaling: test notification for group "{group.name}"',
        )

    def flush_tests(self, group):
        """Send the TEST_NOTIFICATIONs of hooks given at create, before any lifecycle message."""
        for hook in self.pending_tests.pop(group.name, []):
            try:
                self.send_test(group, hook)
            except Exception as exc:  # a missing target must not stop the group
                self.context.record("lifecycle_notification_errors", {"hook": hook.name, "error": repr(exc)})

    def announce(self, action, hook):
        """The EventBridge event and the notification-target message of one lifecycle action."""
        from sandbox.clock import new_token

        group, launching = action.group, action.transition == LAUNCHING
        origin, destination = ("EC2", "AutoScalingGroup") if launching else ("AutoScalingGroup", "EC2")
        detail = {
            "LifecycleActionToken": action.token,
            "AutoScalingGroupName": group.name,
            "LifecycleHookName": action.hook_name,
            "EC2InstanceId": action.instance_id,
            "LifecycleTransition": action.transition,
        }
        if getattr(hook, "notification_metadata", None):
            detail["NotificationMetadata"] = hook.notification_metadata
        detail.update({"Origin": origin, "Destination": destination})
        self.context.emit(
            "aws.autoscaling",
            "EC2 Instance-launch Lifecycle Action" if launching else "EC2 Instance-terminate Lifecycle Action",
            detail,
            [group.arn],
        )
        target = getattr(hook, "notification_target_arn", None)
        if not target:
            return
        message = {
            "Origin": origin,
            "LifecycleHookName": action.hook_name,
            "Destination": destination,
            "AccountId": self.context.account_id,
            "RequestId": new_token(),
            "LifecycleTransition": action.transition,
            "AutoScalingGroupName": group.name,
            "Service": "AWS Auto Scaling",
            "Time": _aws_time(self.context.now()),
            "EC2InstanceId": action.instance_id,
            "LifecycleActionToken": action.token,
        }
        if getattr(hook, "notification_metadata", None):
            message["NotificationMetadata"] = hook.notification_metadata
        verb = "LAUNCHING" if launching else "TERMINATING"
        try:
            self.deliver(
                target,
                message,
                f"Auto Scaling:  Lifecycle action '{verb}' for instance {action.instance_id} in progress.",
            )
        except Exception as exc:  # AWS drops what it cannot deliver
            self.context.record("lifecycle_notification_errors", {"hook": action.hook_name, "error": repr(exc)})

    def activity_event(self, group, state, launched, cause):
        from sandbox.clock import new_token

        instance = state.instance
        now = _event_time(self.context.now())
        description = f"{'Launching a new' if launched else 'Terminating'} EC2 instance: {instance.id}"
        details = {"Availability Zone": instance.placement.zone, "Subnet ID": instance.subnet_id}
        activity = scaling_activities.record(self.context, group, description, cause, details)
        detail = {
            "StatusCode": "InProgress",
            "Description": description,
            "AutoScalingGroupName": group.name,
            "ActivityId": activity["ActivityId"],
            "Details": details,
            "RequestId": new_token(),
            "StatusMessage": "",
            "EndTime": now,
            "EC2InstanceId": instance.id,
            "StartTime": now,
            "Cause": cause,
            "Origin": "EC2" if launched else "AutoScalingGroup",
            "Destination": "AutoScalingGroup" if launched else "EC2",
        }
        instance_arn = f"arn:aws:ec2:{self.context.region}:{self.context.account_id}:instance/{instance.id}"
        self.context.emit(
            "aws.autoscaling",
            "EC2 Instance Launch Successful" if launched else "EC2 Instance Terminate Successful",
            detail,
            [group.arn, instance_arn],
        )

    # ---- hooks ----------------------------------------------------------------------------
    def put_hook(self, backend, group_name, spec):
        """PutLifecycleHook semantics: fields not given keep their value on an existing hook."""
        name = spec["LifecycleHookName"]
        existing = backend.lifecycle_hooks.get(f"{group_name}_{name}")

        def pick(field, attribute):
            if spec.get(field) not in (None, ""):
                return spec[field]
            return getattr(existing, attribute, None) if existing is not None else None

        hook = backend.create_lifecycle_hook(
            name=name,
            as_name=group_name,
            transition=pick("LifecycleTransition", "lifecycle_transition"),
            timeout=_int_or_none(pick("HeartbeatTimeout", "heartbeat_timeout")),
            result=pick("DefaultResult", "default_result"),
        )
        hook.notification_target_arn = pick("NotificationTargetARN", "notification_target_arn")
        hook.role_arn = pick("RoleARN", "role_arn")
        hook.notification_metadata = pick("NotificationMetadata", "notification_metadata")
        return hook, existing

    # ---- the lifecycle ----------------------------------------------------------------------
    def start_action(self, group, state, hook):
        action = LifecycleAction(self, group, state, hook)
        self.actions[action.token] = action
        _actions_of(state).append(action)
        self.announce(action, hook)
        return action

    def find_action(self, group_name, hook_name, token=None, instance_id=None):
        from moto.autoscaling.exceptions import ValidationError

        for action in self.actions.values():
            if action.group.name != group_name or action.hook_name != hook_name or not self.active(action):
                continue
            if token and action.token == token and (not instance_id or action.instance_id == instance_id):
                return action
            if not token and instance_id and action.instance_id == instance_id:
                return action
        if token:
            raise ValidationError(f"No active Lifecycle Action found with token {token}")
        raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")

    def finish_action(self, action, result, how):
        if action.done:
            return
        action.stop()
        action.result = result
        group, state = action.group, action.state
        self.context.record(
            "lifecycle_actions",
            {
                "group": group.name,
                "hook": action.hook_name,
                "instance_id": action.instance_id,
                "transition": action.transition,
                "token": action.token,
                "result": result,
                "how": how,
                "at": self.context.now().isoformat(),
            },
        )
        if state not in group.instance_states:
            return
        waiting = [other for other in _actions_of(state) if not other.done]
        if action.transition == LAUNCHING:
            if result == "ABANDON":
                for other in waiting:
                    other.stop()
                self.abandon_launch(group, state)
            elif not waiting:
                state.lifecycle_state = "Pending:Proceed"
                self.enter_service(group, state)
        elif not waiting:
            self.finish_termination(group, state)

    def begin_launch(self, group, state):
        """A new instance of the group: through the launch hooks, or straight into service."""
        state.sandbox_launched_at = self.context.clock.elapsed()
        hooks = self.hooks(group, LAUNCHING) if not getattr(group, "sandbox_deleting", False) else []
        if not hooks:
            self.enter_service(group, state)
            return
        state.lifecycle_state = "Pending:Wait"
        self.flush_tests(group)
        for hook in hooks:
            self.start_action(group, state, hook)

    def enter_service(self, group, state):
        state.lifecycle_state = "InService"
        state.sandbox_in_service_at = self.context.clock.elapsed()
        cause = f"At {_event_time(self.context.now())} an instance was started in response to a difference between desired and actual capacity."
        self.activity_event(group, state, True, cause)
        self.refresh_targets(group)
        replacing = _replacing(group)
        while replacing:  # launch before terminate: a replacement is ready, the old instance may go
            group_old, old = self.find(group.autoscaling_backend, replacing.pop(0))
            if old is not None and group_old is group and not _terminating(old):
                self.begin_termination(group, old, reconcile=False)
                break

    def abandon_launch(self, group, state):
        state.lifecycle_state = "Terminating"
        self.finish_termination(group, state)

    def begin_termination(self, group, state, reconcile=True, cause="user request"):
        """The group removes an instance: through the terminate hooks, or at once."""
        if _terminating(state):
            return
        for action in list(_actions_of(state)):
            if not action.done:
                action.stop()
        if state.instance.id in _replacing(group):
            _replacing(group).remove(state.instance.id)
        state.sandbox_cause = cause
        hooks = self.hooks(group, TERMINATING) if self.live(group) else []
        if not hooks:
            state.lifecycle_state = "Terminating"
            self.finish_termination(group, state, reconcile=reconcile)
            return
        state.lifecycle_state = "Terminating:Wait"
        self.refresh_targets(group)
        self.flush_tests(group)
        for hook in hooks:
            self.start_action(group, state, hook)

    def finish_termination(self, group, state, reconcile=True):
        for action in list(_actions_of(state)):
            if not action.done:
                action.stop()
        state.lifecycle_state = "Terminating:Proceed"
        instance = state.instance
        if instance.state not in GONE_EC2_STATES:
            self.group_terminating.add(instance.id)
            try:
                group.autoscaling_backend.ec2_backend.terminate_instances([instance.id])
            finally:
                self.group_terminating.discard(instance.id)
        self.drop(group, state)
        cause = getattr(state, "sandbox_cause", "user request")
        self.activity_event(
            group,
            state,
            False,
            f"At {_event_time(self.context.now())} instance {instance.id} was taken out of service "
            f"in response to a {cause}.",
        )
        if reconcile and self.live(group):
            group.set_desired_capacity(group.desired_capacity)

    def drop(self, group, state):
        if state in group.instance_states:
            group.instance_states.remove(state)
        if state.instance.id in _replacing(group):
            _replacing(group).remove(state.instance.id)
        self.refresh_targets(group)

    @staticmethod
    def refresh_targets(group):
        backend = group.autoscaling_backend
        if backend.autoscaling_groups.get(group.name) is group:
            backend.update_attached_elbs(group.name)
            backend.update_attached_target_groups(group.name)

    # ---- capacity ----------------------------------------------------------------------------
    def set_desired_capacity(self, group, new_capacity):
        """moto's FakeAutoScalingGroup.set_desired_capacity, counting every instance that makes up
        capacity and removing instances through the terminate hooks."""
        group.desired_capacity = group.min_size if new_capacity is None else new_capacity
        counted = self.capacity(group)
        delta = self.target_instances(group) - len(counted)
        if delta > 0 and "Launch" in suspended(group):
            self.context.record(
                "suppressed_launches", {"group": group.name, "missing": delta, "at": self.context.now().isoformat()}
            )
        elif delta > 0:
            group.replace_autoscaling_group_instances(delta, group.get_propagated_tags())
        elif delta < 0:
            # The oldest unprotected instances first (moto's order).
            candidates = [state for state in counted if not state.protected_from_scale_in]
            for state in candidates[:-delta]:
                self.begin_termination(group, state, reconcile=False, cause="scale-in (desired capacity decreased)")
        self.refresh_targets(group)

    def launched(self, group, fresh):
        """New instances moto just launched for the group: apply the launch settings, then the hooks."""
        self.shape(group, fresh)
        for state in fresh:
            self.begin_launch(group, state)

    def shape(self, group, fresh):
        from moto.ec2.models.instances import MetadataOptions

        data = {}
        if group.ec2_launch_template is not None:
            data = group.ec2_launch_template.get_version(group.launch_template_version).data or {}
        metadata = data.get("MetadataOptions")
        spot = [((data.get("InstanceMarketOptions") or {}).get("MarketType") == "spot")] * len(fresh)
        override_types = []
        split = self.market_split(group)
        if split is not None:
            overrides = (group.mixed_instances_policy.get("LaunchTemplate") or {}).get("Overrides") or []
            override_types = [override["InstanceType"] for override in overrides if override.get("InstanceType")]
            others = [state for state in self.capacity(group) if state not in fresh]
            on_demand_needed = max(0, split[0] - sum(1 for state in others if state.instance.lifecycle != "spot"))
            spot = [index >= on_demand_needed for index in range(len(fresh))]
        for state, is_spot in zip(fresh, spot):
            instance = state.instance
            if metadata:
                instance.metadata_options = MetadataOptions(metadata)
            if is_spot:
                instance.lifecycle = "spot"
            # The capacity rule launched the override whose pool had capacity; anything else takes the first.
            if override_types and instance.instance_type not in override_types:
                instance.instance_type = state.instance_type = override_types[0]

    # ---- health --------------------------------------------------------------------------------
    def set_health(self, group, state, status, respect_grace):
        state.health_status = status
        if status != "Unhealthy" or state.lifecycle_state != "InService":
            return
        clock = self.context.clock
        since = getattr(state, "sandbox_in_service_at", None)
        grace = group.health_check_grace_period or 0
        if respect_grace and grace and since is not None and since + clock.duration(grace) > clock.elapsed():
            self.context.at(
                since + clock.duration(grace),
                lambda: self.replace_if_unhealthy(group, state),
                f"health check grace period of {state.instance.id} ends",
            )
            return
        self.replace(group, state)

    def replace_if_unhealthy(self, group, state):
        if (
            self.live(group)
            and state in group.instance_states
            and state.health_status == "Unhealthy"
            and state.lifecycle_state == "InService"
        ):
            self.replace(group, state)

    def launch_first(self, group):
        """Whether the instance maintenance policy keeps the instance until its replacement is in service."""
        policy = getattr(group, "instance_maintenance_policy", None) or {}
        minimum, maximum = policy.get("MinHealthyPercentage"), policy.get("MaxHealthyPercentage")
        if minimum is None or minimum < 0 or (maximum is not None and 0 <= maximum <= 100):
            return False
        in_service = [state for state in self.capacity(group) if state.lifecycle_state == "InService"]
        return len(in_service) - 1 < math.ceil((group.desired_capacity or 0) * minimum / 100.0)

    def replace(self, group, state, cause="health check indicating it is unhealthy"):
        """Replace one instance of the group (health check failure, or a drill)."""
        if _terminating(state) or state.instance.id in _replacing(group):
            return
        state.health_status = "Unhealthy"
        if self.launch_first(group):
            _replacing(group).append(state.instance.id)
        else:
            self.begin_termination(group, state, reconcile=False, cause=cause)
        if self.live(group):
            group.set_desired_capacity(group.desired_capacity)

    def lost(self, group, state):
        """An instance of the group was terminated outside the group (EC2 API, Spot reclaim)."""
        if state.lifecycle_state == "Terminating:Wait":
            return  # the group is terminating it already; its hooks run their course
        for action in list(_actions_of(state)):
            if not action.done:
                action.stop()
        state.health_status = "Unhealthy"
        state.lifecycle_state = "Terminating:Proceed"
        self.drop(group, state)
        self.activity_event(
            group,
            state,
            False,
            f"At {_event_time(self.context.now())} an instance was taken out of service in "
            "response to an EC2 health check indicating it has been terminated or stopped.",
        )
        if self.live(group):
            group.set_desired_capacity(group.desired_capacity)

    def instances_gone(self, backend, instance_ids):
        for group in list(backend.autoscaling_groups.values()):
            for state in list(group.instance_states):
                if state.instance.id in instance_ids and state.instance.id not in self.group_terminating:
                    self.lost(group, state)

    def sweep(self, backend):
        """The EC2 health check: instances gone or stopped behind the group's back."""
        for group in list(backend.autoscaling_groups.values()):
            for state in list(group.instance_states):
                ec2_state = state.instance.state
                if ec2_state in GONE_EC2_STATES and not _terminating(state):
                    self.lost(group, state)
                elif ec2_state in IMPAIRED_EC2_STATES and state.lifecycle_state == "InService":
                    self.replace(group, state, cause="EC2 health check indicating it has been terminated or stopped")

    def delete_group(self, group):
        """DeleteAutoScalingGroup (moto treats every delete as ForceDelete): no hooks, nothing left."""
        group.sandbox_deleting = True
        for state in list(group.instance_states):
            for action in list(_actions_of(state)):
                if not action.done:
                    action.stop()
        for state in [state for state in group.instance_states if state.lifecycle_state not in CAPACITY_STATES]:
            self.finish_termination(group, state, reconcile=False)


def suspended(group):
    """The names of a group's suspended processes."""
    return [p["ProcessName"] if isinstance(p, dict) else p for p in getattr(group, "suspended_processes", None) or []]


def _patch_models(rules):
    from moto.autoscaling.models import (
        AutoScalingBackend,
        FakeAutoScalingGroup,
        TerminateInstanceActivity,
        autoscaling_backends,
    )

    original_replace = FakeAutoScalingGroup.replace_autoscaling_group_instances
    original_update = FakeAutoScalingGroup.update
    original_create_hook = AutoScalingBackend.create_lifecycle_hook
    original_delete_group = AutoScalingBackend.delete_auto_scaling_group
    original_resume = AutoScalingBackend.resume_processes

    def resume_processes(self, group_name, scaling_processes):
        original_resume(self, group_name, scaling_processes)
        group = self.autoscaling_groups[group_name]
        if "Launch" not in suspended(group) and rules.live(group):  # launch what is missing
            group.set_desired_capacity(group.desired_capacity)

    def replace_autoscaling_group_instances(self, count_needed, propagated_tags):
        before = {state.instance.id for state in self.instance_states}
        original_replace(self, count_needed, propagated_tags)
        rules.launched(self, [state for state in self.instance_states if state.instance.id not in before])

    def set_desired_capacity(self, new_capacity):
        rules.set_desired_capacity(self, new_capacity)

    def update_attached_target_groups(self, group_name):
        # AWS registers an instance in its group's target groups when it enters InService, after its launch hooks
        # (EC2 Auto Scaling user guide, "How lifecycle hooks work in Auto Scaling groups": Pending:Proceed, then
        # InService; "Use Elastic Load Balancing to distribute incoming application traffic in your Auto Scaling
        # group"), and an instance in service when a target group is attached; once, not again at every change of
        # the group. moto registers every instance of the group, held in Pending:Wait too, at every update, which
        # would also put back a target its instance deregistered itself (the agent's stop).
        group = self.autoscaling_groups[group_name]
        registered = group.__dict__.setdefault("sandbox_registered_targets", set())
        registered &= {(instance_id, arn) for instance_id, arn in registered if arn in group.target_group_arns}
        if not group.target_group_arns:
            return
        in_service = [state.instance.id for state in group.instance_states if state.lifecycle_state == "InService"]
        target_groups = self.elbv2_backend.describe_target_groups(
            target_group_arns=group.target_group_arns, load_balancer_arn=None, names=None
        )
        for target_group in target_groups:
            fresh = [instance_id for instance_id in in_service if (instance_id, target_group.arn) not in registered]
            if fresh:
                self.elbv2_backend.register_targets(
                    target_group.arn, [{"Id": instance_id, "Port": target_group.port} for instance_id in fresh]
                )
                registered.update((instance_id, target_group.arn) for instance_id in fresh)

    def update(self, *args, **kwargs):
        # AWS changes only the parts of a mixed instances policy an update gives ("Any parameters that you don't
        # specify are not changed"; API reference LaunchTemplate: LaunchTemplateSpecification and Overrides are each
        # optional, "When you update the launch template or overrides ..."): moto takes the given policy whole, and
        # fails on one without a launch template specification.
        given = kwargs.get("mixed_instances_policy")
        if given is not None and self.mixed_instances_policy:
            merged = copy.deepcopy(self.mixed_instances_policy)
            template = merged.setdefault("LaunchTemplate", {})
            for part in ("LaunchTemplateSpecification", "Overrides"):
                if part in (given.get("LaunchTemplate") or {}):
                    template[part] = copy.deepcopy(given["LaunchTemplate"][part])
            if given.get("InstancesDistribution"):
                merged.setdefault("InstancesDistribution", {}).update(copy.deepcopy(given["InstancesDistribution"]))
            spec = template.get("LaunchTemplateSpecification") or {}
            if spec.get("LaunchTemplateId"):  # moto stored both id and name; it accepts only one
                spec.pop("LaunchTemplateName", None)
            kwargs["mixed_instances_policy"] = merged
        # AWS keeps the mixed instances policy an update does not mention; moto wipes it.
        if (
            kwargs.get("mixed_instances_policy") is None
            and not kwargs.get("launch_template")
            and not kwargs.get("launch_config_name")
            and not args
            and self.mixed_instances_policy
        ):
            kept = copy.deepcopy(self.mixed_instances_policy)
            spec = (kept.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
            if spec.get("LaunchTemplateId"):  # moto stored both id and name; it accepts only one
                spec.pop("LaunchTemplateName", None)
            kwargs["mixed_instances_policy"] = kept
        return original_update(self, *args, **kwargs)

    def create_lifecycle_hook(self, name, as_name, transition, timeout, result):
        if timeout is None:  # AWS's default, 3600 s, unless a drill shortened the modeled figure
            timeout = int(rules.context.latency.get("lifecycle_heartbeat", DEFAULT_HEARTBEAT))
        hook = original_create_hook(self, name, as_name, transition, timeout, result)
        # moto hardcodes a role and an SQS target for every hook; AWS has neither unless given.
        hook.notification_target_arn = None
        hook.role_arn = None
        hook.notification_metadata = None
        hook.global_timeout = min(100 * int(hook.heartbeat_timeout), GLOBAL_TIMEOUT_CAP)
        return hook

    def delete_auto_scaling_group(self, group_name):
        group = self.autoscaling_groups.get(group_name)
        if group is not None:
            rules.delete_group(group)
        original_delete_group(self, group_name)
        if group is not None:
            scaling_activities.group_deleted(self, group)
            for state in list(group.instance_states):  # standby or protected ones too: the group is gone
                rules.finish_termination(group, state, reconcile=False)
            for key in [
                key for key, hook in self.lifecycle_hooks.items() if hook.auto_scaling_group_name == group_name
            ]:
                del self.lifecycle_hooks[key]
            rules.pending_tests.pop(group_name, None)

    def set_instance_health(self, instance_id, health_status, should_respect_grace_period=True):
        group, state = rules.find_or_refuse(self, instance_id)
        rules.set_health(group, state, health_status, should_respect_grace_period)

    def terminate_instance(self, instance_id, should_decrement):
        group, state = rules.find_or_refuse(self, instance_id)
        original_size = group.desired_capacity
        if should_decrement:
            group.desired_capacity = max(0, (group.desired_capacity or 0) - 1)
        activity = TerminateInstanceActivity(state.instance, original_size)
        rules.begin_termination(group, state, reconcile=False)
        if rules.live(group):
            group.set_desired_capacity(group.desired_capacity)
        return activity

    def notify_terminate_instances(self, instance_ids):
        # EC2 TerminateInstances: already seen at the instance lifecycle's instances-terminated below; sweep for the rest.
        rules.instances_gone(self, instance_ids)

    def instances_terminated(ec2_backend, instance_ids):
        outside = [instance_id for instance_id in instance_ids if instance_id not in rules.group_terminating]
        if outside:
            rules.instances_gone(autoscaling_backends[ec2_backend.account_id][ec2_backend.region_name], outside)

    def instances_stopped(ec2_backend, unused_instance_ids):
        rules.sweep(autoscaling_backends[ec2_backend.account_id][ec2_backend.region_name])

    FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances
    FakeAutoScalingGroup.set_desired_capacity = set_desired_capacity
    FakeAutoScalingGroup.update = update
    AutoScalingBackend.create_lifecycle_hook = create_lifecycle_hook
    AutoScalingBackend.update_attached_target_groups = update_attached_target_groups
    AutoScalingBackend.delete_auto_scaling_group = delete_auto_scaling_group
    AutoScalingBackend.resume_processes = resume_processes
    AutoScalingBackend.set_instance_health = set_instance_health
    AutoScalingBackend.terminate_instance = terminate_instance
    AutoScalingBackend.notify_terminate_instances = notify_terminate_instances
    lifecycle.register(
        "autoscaling",
        {lifecycle.INSTANCES_TERMINATED: instances_terminated, lifecycle.INSTANCES_STOPPED: instances_stopped},
    )


# What EnableMetricsCollection accepts; without a list AWS enables them all.
GROUP_METRICS = frozenset(
    {
        "GroupMinSize",
        "GroupMaxSize",
        "GroupDesiredCapacity",
        "GroupInServiceInstances",
        "GroupPendingInstances",
        "GroupStandbyInstances",
        "GroupTerminatingInstances",
        "GroupTotalInstances",
        "GroupInServiceCapacity",
        "GroupPendingCapacity",
        "GroupStandbyCapacity",
        "GroupTerminatingCapacity",
        "GroupTotalCapacity",
        "WarmPoolDesiredCapacity",
        "WarmPoolWarmedCapacity",
        "WarmPoolPendingCapacity",
        "WarmPoolTerminatingCapacity",
        "WarmPoolTotalCapacity",
        "GroupAndWarmPoolDesiredCapacity",
        "GroupAndWarmPoolTotalCapacity",
    }
)
# AvailabilityZoneDistribution.CapacityDistributionStrategy (API reference); AWS's default is balanced-best-effort.
ZONE_STRATEGIES = ("balanced-best-effort", "balanced-only", "reservations-then-balanced")
DEFAULT_ZONE_STRATEGY = "balanced-best-effort"
NOTIFICATION_TYPES = frozenset(
    {
        "autoscaling:EC2_INSTANCE_LAUNCH",
        "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
        "autoscaling:EC2_INSTANCE_TERMINATE",
        "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
        "autoscaling:TEST_NOTIFICATION",
    }
)


def _patch_responses(rules):
    from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult, EmptyResult

    original_call = AutoScalingResponse.call_action
    original_create = AutoScalingResponse.create_auto_scaling_group
    original_update = AutoScalingResponse.update_auto_scaling_group

    def call_action(self):
        rules.sweep(self.autoscaling_backend)
        return original_call(self)

    def create_auto_scaling_group(self):
        params = self._get_params()
        name = params.get("AutoScalingGroupName")
        backend = self.autoscaling_backend
        strategy = _zone_strategy(params.get("AvailabilityZoneDistribution"))
        if name in backend.autoscaling_groups:
            raise AutoscalingClientError(
                "AlreadyExists",
                f"AutoScalingGroup by this name already exists - A group with the name {name} already exists",
            )
        hooks = []
        for spec in params.get("LifecycleHookSpecificationList") or []:
            hook, _existing = rules.put_hook(backend, name, spec)
            hooks.append(hook)
        rules.pending_tests[name] = [hook for hook in hooks if hook.notification_target_arn]
        # The group's first launch happens inside moto's create: the strategy must be known by then.
        rules.zone_strategies[name] = strategy
        try:
            answer = original_create(self)
        except Exception:
            for hook in hooks:
                backend.lifecycle_hooks.pop(f"{name}_{hook.name}", None)
            rules.pending_tests.pop(name, None)
            raise
        finally:
            rules.zone_strategies.pop(name, None)
        group = backend.autoscaling_groups[name]
        group.availability_zone_distribution = {"CapacityDistributionStrategy": strategy}
        group.instance_maintenance_policy = _maintenance_policy(params.get("InstanceMaintenancePolicy"))
        if params.get("HealthCheckGracePeriod") is None:
            group.health_check_grace_period = 0  # the API's default (moto: 300)
        rules.flush_tests(group)
        return answer

    def update_auto_scaling_group(self):
        params = self._get_params()
        answer = original_update(self)
        group = self.autoscaling_backend.autoscaling_groups[params.get("AutoScalingGroupName")]
        if params.get("AvailabilityZoneDistribution"):
            group.availability_zone_distribution = {
                "CapacityDistributionStrategy": _zone_strategy(params["AvailabilityZoneDistribution"])
            }
        if params.get("CapacityRebalance") is not None:
            group.capacity_rebalance = self._get_bool_param("CapacityRebalance")
        if "InstanceMaintenancePolicy" in params:
            group.instance_maintenance_policy = _maintenance_policy(params.get("InstanceMaintenancePolicy"))
        return answer

    def put_lifecycle_hook(self):
        params = self._get_params()
        backend = self.autoscaling_backend
        group_name = params.get("AutoScalingGroupName")
        hook, existing = rules.put_hook(backend, group_name, params)
        group = backend.autoscaling_groups.get(group_name)
        if group is not None and params.get("NotificationTargetARN"):
            try:
                rules.send_test(group, hook)
            except Exception:  # AWS refuses a hook it cannot notify
                key = f"{group_name}_{hook.name}"
                if existing is None:
                    backend.lifecycle_hooks.pop(key, None)
                else:
                    backend.lifecycle_hooks[key] = existing
                raise ValidationError(
                    f"Unable to publish test message to notification target {hook.notification_target_arn} using "
                    f"IAM role {hook.role_arn}. Please check your target and role configuration and try to put "
                    "lifecycle hook again."
                ) from None
        return EmptyResult()

    def complete_lifecycle_action(self):
        result = self._get_param("LifecycleActionResult")
        if result not in RESULTS:
            raise ValidationError("LifecycleActionResult must be CONTINUE or ABANDON")
        action = rules.find_action(
            self._get_param("AutoScalingGroupName"),
            self._get_param("LifecycleHookName"),
            self._get_param("LifecycleActionToken"),
            self._get_param("InstanceId"),
        )
        rules.finish_action(action, result, "complete")
        return EmptyResult()

    def record_lifecycle_action_heartbeat(self):
        action = rules.find_action(
            self._get_param("AutoScalingGroupName"),
            self._get_param("LifecycleHookName"),
            self._get_param("LifecycleActionToken"),
            self._get_param("InstanceId"),
        )
        action.restart()
        rules.context.record(
            "lifecycle_heartbeats",
            {"token": action.token, "instance_id": action.instance_id, "at": rules.context.now().isoformat()},
        )
        return EmptyResult()

    def set_instance_health(self):
        health_status = self._get_param("HealthStatus")
        if health_status not in ("Healthy", "Unhealthy"):
            raise ValidationError("Valid instance health states are: [Healthy, Unhealthy]")
        self.autoscaling_backend.set_instance_health(
            self._get_param("InstanceId"), health_status, self._get_bool_param("ShouldRespectGracePeriod", True)
        )
        return EmptyResult()

    # Notification configurations (moto 5.2.5 answers 500): stored per (group, topic), described one
    # entry per notification type, as AWS does. Deleting the group deletes them.
    notifications = {}

    def known_group(self, name):
        if name not in self.autoscaling_backend.autoscaling_groups:
            raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")

    def put_notification_configuration(self):
        group, topic = self._get_param("AutoScalingGroupName"), self._get_param("TopicARN")
        known_group(self, group)
        types = self._get_params().get("NotificationTypes") or []
        unknown = sorted(set(types) - NOTIFICATION_TYPES)
        if not types or unknown:
            raise ValidationError(f"Invalid notification types: {unknown or 'none given'}")
        notifications[(group, topic)] = sorted(set(types))
        return EmptyResult()

    def describe_notification_configurations(self):
        wanted = set(self._get_params().get("AutoScalingGroupNames") or [])
        live = self.autoscaling_backend.autoscaling_groups
        entries = [
            {"AutoScalingGroupName": group, "TopicARN": topic, "NotificationType": kind}
            for (group, topic), kinds in sorted(notifications.items())
            if group in live and (not wanted or group in wanted)
            for kind in kinds
        ]
        return ActionResult({"NotificationConfigurations": entries})

    def delete_notification_configuration(self):
        group, topic = self._get_param("AutoScalingGroupName"), self._get_param("TopicARN")
        known_group(self, group)
        notifications.pop((group, topic), None)
        return EmptyResult()

    # Group metrics (moto 5.2.5: EnableMetricsCollection replaces the enabled list, DisableMetricsCollection is not
    # implemented). AWS adds to the enabled set and removes from it; no list means every metric.
    def metrics_request(self):
        name = self._get_param("AutoScalingGroupName")
        known_group(self, name)
        wanted = self._get_params().get("Metrics") or sorted(GROUP_METRICS)
        unknown = sorted(set(wanted) - GROUP_METRICS)
        if unknown:
            raise ValidationError(f"Invalid metrics: {unknown}")
        return self.autoscaling_backend.autoscaling_groups[name], set(wanted)

    def enable_metrics_collection(self):
        if self._get_param("Granularity") != "1Minute":
            raise ValidationError("Valid granularity is 1Minute")
        group, wanted = metrics_request(self)
        group.metrics = sorted(set(group.metrics or []) | wanted)
        return EmptyResult()

    def disable_metrics_collection(self):
        group, wanted = metrics_request(self)
        group.metrics = sorted(set(group.metrics or []) - wanted)
        return EmptyResult()

    AutoScalingResponse.enable_metrics_collection = enable_metrics_collection
    AutoScalingResponse.disable_metrics_collection = disable_metrics_collection
    AutoScalingResponse.put_notification_configuration = put_notification_configuration
    AutoScalingResponse.describe_notification_configurations = describe_notification_configurations
    AutoScalingResponse.delete_notification_configuration = delete_notification_configuration
    AutoScalingResponse.call_action = call_action
    AutoScalingResponse.create_auto_scaling_group = create_auto_scaling_group
    AutoScalingResponse.update_auto_scaling_group = update_auto_scaling_group
    AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook
    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
    AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat
    AutoScalingResponse.set_instance_health = set_instance_health


def _zone_strategy(distribution):
    """The CapacityDistributionStrategy asked for (AWS's default when none), or ``ValidationError``."""
    from moto.autoscaling.exceptions import ValidationError

    strategy = (distribution or {}).get("CapacityDistributionStrategy") or DEFAULT_ZONE_STRATEGY
    if strategy not in ZONE_STRATEGIES:
        raise ValidationError(
            f"Value '{strategy}' at 'availabilityZoneDistribution.capacityDistributionStrategy' failed to "
            f"satisfy constraint: Member must satisfy enum value set: [{', '.join(ZONE_STRATEGIES)}]"
        )
    return strategy


def zone_strategy(group):
    """What the group does when launches fail in a zone (``AvailabilityZoneDistribution``)."""
    distribution = getattr(group, "availability_zone_distribution", None)
    if distribution is None and "asg" in RULES:  # still inside moto's create: the request's strategy
        return RULES["asg"].zone_strategies.get(group.name, DEFAULT_ZONE_STRATEGY)
    return (distribution or {}).get("CapacityDistributionStrategy") or DEFAULT_ZONE_STRATEGY


def _register_controls(context, rules):
    @context.control("autoscaling/actions")
    def actions_control(payload):
        """Pending lifecycle actions (optionally of one ``group``), soonest deadline first."""
        wanted = payload.get("group")
        pending = [
            action
            for action in rules.actions.values()
            if rules.active(action) and (not wanted or action.group.name == wanted)
        ]
        return {"actions": [action.view() for action in sorted(pending, key=lambda action: action.due)]}

    @context.control("autoscaling/terminate")
    def terminate_control(payload):
        """``{"instance_id", "decrement": false}``: the group terminates the instance through its hooks."""
        group, state = rules.find_or_refuse(rules.backend(), payload["instance_id"])
        if payload.get("decrement"):
            group.desired_capacity = max(0, (group.desired_capacity or 0) - 1)
        rules.begin_termination(group, state, reconcile=False, cause=payload.get("cause", "user request"))
        group.set_desired_capacity(group.desired_capacity)
        return {"group": group.name, "instance_id": state.instance.id, "lifecycle_state": state.lifecycle_state}

    @context.control("autoscaling/replace")
    def replace_control(payload):
        """``{"instance_id"}``: an EC2 health check fails; the group replaces the instance by its policy."""
        group, state = rules.find_or_refuse(rules.backend(), payload["instance_id"])
        rules.replace(group, state)
        return {"group": group.name, "instance_id": state.instance.id, "lifecycle_state": state.lifecycle_state}


def install(context):
    context.latency.setdefault("lifecycle_heartbeat", DEFAULT_HEARTBEAT)
    rules = AutoScalingRules(context)
    RULES["asg"] = rules
    _patch_models(rules)
    _patch_responses(rules)
    _register_controls(context, rules)
