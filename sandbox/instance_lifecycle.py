"""The one hook into moto's instance lifecycle, and the order in which the sandbox's rules act at each point.

Several rules act when moto launches, starts, stops, terminates or reboots an instance: Elastic IPs come off a
terminated instance, EC2 emits its state-change events, status checks restart, Auto Scaling replaces what EC2
took away, the capacity rule refuses a launch, the runtime boots the user data or cuts the power. Each of them
used to wrap moto's methods itself, so the order in which they acted was the order they were installed in (the
last one installed wrapped outermost and acted last). Here moto is patched once (``install``, idempotent) and the
rules register a callback for each named point (``register``); the callbacks of a point run in the order of
``ORDER``, whatever order the rules are installed in. A rule that is not in a point's row cannot register there:
a new rule takes its place in the table (here and in sandbox/README.md) first.

Every callback but ``launch-requested``'s runs after moto's own method, and only if it did not raise; an error in a
callback propagates (the API call fails) and the later callbacks of that point do not run. The instance-level
points run on every call, whatever the state the instance was in: the callback gets that state (``before``) and
decides for itself, mostly through ``changed`` (a start from ``stopped``, not a start of a running instance).

==================== ====================================== ============================== =====================
point                after moto's                           rules, in this order           callback arguments
==================== ====================================== ============================== =====================
launch-requested     (before) InstanceBackend.run_instances capacity                       backend, kwargs
instance-created     Instance.__init__ (every creation)     ec2_events, alarms, runtime    instance
instances-launched   InstanceBackend.run_instances          ec2_events                     backend, reservation
instance-started     Instance.start                         ec2_events, alarms, runtime    instance, before
instance-stopped     Instance.stop                          ec2_events, runtime            instance, before
instance-terminated  Instance.terminate                     addresses, ec2_events, runtime instance, before
instance-rebooted    Instance.reboot                        alarms                         instance, before
instances-stopped    InstanceBackend.stop_instances         autoscaling                    backend, instance_ids
instances-terminated InstanceBackend.terminate_instances    autoscaling                    backend, instance_ids
==================== ====================================== ============================== =====================

Why this order:

* ``launch-requested``: the callback may change the keyword arguments moto gets (the placement) or raise to refuse;
  a refused launch creates nothing: no instance, no event, no boot.
* ``instance-created``, ``instance-started``: the state-change events first (a creation's are queued, due at once,
  and emitted at the latest when RunInstances ends; a start's are emitted), then the status checks start, then the
  runtime schedules the boot ``os_boot`` later (after the creation's events in the queue, should it be due at once).
* ``instances-launched``: ``pending`` and ``running`` are on the bus before RunInstances answers.
* ``instance-stopped``: AWS's side first (the events, which a Lambda target handles inside the emit), then the
  host's power cut (the agent's processes killed, its mounts dropped).
* ``instance-terminated``: the Elastic IP and the private IP are free before ``terminated`` is announced, so a
  handler run by that event can take the address; then the events; the power cut and the volumes' devices last.
* ``instance-rebooted``: the status checks start again.
* ``instances-stopped``, ``instances-terminated``: after every instance's own point, so the group's health check
  sees them stopped or gone, with their events already on the bus before a replacement's.

The runtime registers only when a server starts it (``sandbox/runtime/``); the in-process installs of the unit tests
have the other rules only.
"""

from __future__ import annotations

LAUNCH_REQUESTED = "launch-requested"
INSTANCE_CREATED = "instance-created"
INSTANCES_LAUNCHED = "instances-launched"
INSTANCE_STARTED = "instance-started"
INSTANCE_STOPPED = "instance-stopped"
INSTANCE_TERMINATED = "instance-terminated"
INSTANCE_REBOOTED = "instance-rebooted"
INSTANCES_STOPPED = "instances-stopped"
INSTANCES_TERMINATED = "instances-terminated"

# The table of the module's documentation: at each point, the rules (module names) that act, in this order.
ORDER = {
    LAUNCH_REQUESTED: ("capacity",),
    INSTANCE_CREATED: ("ec2_events", "alarms", "runtime"),
    INSTANCES_LAUNCHED: ("ec2_events",),
    INSTANCE_STARTED: ("ec2_events", "alarms", "runtime"),
    INSTANCE_STOPPED: ("ec2_events", "runtime"),
    INSTANCE_TERMINATED: ("addresses", "ec2_events", "runtime"),
    INSTANCE_REBOOTED: ("alarms",),
    INSTANCES_STOPPED: ("autoscaling",),
    INSTANCES_TERMINATED: ("autoscaling",),
}

# The state changes ``changed`` recognises: (states before, state after).
TRANSITIONS = {
    INSTANCE_STARTED: (("stopped", "stopping"), "running"),
    INSTANCE_STOPPED: (("pending", "running"), "stopped"),
}

_CALLBACKS = {point: {} for point in ORDER}  # point -> rule -> callback
_INSTALLED = []


def register(rule, callbacks):
    """Register ``rule``'s callbacks, ``{point: callback}``; registering again replaces them."""
    for point, callback in callbacks.items():
        if point not in ORDER:
            raise ValueError(f"no instance lifecycle point {point!r}; known: {', '.join(ORDER)}")
        if rule not in ORDER[point]:
            raise ValueError(
                f"rule {rule!r} has no place at {point!r} (instance_lifecycle.ORDER): add it to the table first"
            )
    install()
    for point, callback in callbacks.items():
        _CALLBACKS[point][rule] = callback


def changed(point, instance, before):
    """Whether the call at ``point`` changed the instance's state as the point names: a start from ``stopped`` (or
    ``stopping``) to ``running``, a stop from ``pending`` or ``running`` to ``stopped``, a termination of an instance
    that was not terminated yet."""
    if point == INSTANCE_TERMINATED:
        return before != "terminated" and instance.state == "terminated"
    states_before, state_after = TRANSITIONS[point]
    return before in states_before and instance.state == state_after


def _run(point, *arguments):
    for rule in ORDER[point]:
        callback = _CALLBACKS[point].get(rule)
        if callback is not None:
            callback(*arguments)


def _after_instance_call(point, moto_method):
    """``Instance.<method>`` that runs the point's callbacks with the state the instance was in before the call."""

    def method(self):
        before = self.state
        previous = moto_method(self)
        _run(point, self, before)
        return previous

    method.__name__ = moto_method.__name__
    method.__doc__ = moto_method.__doc__
    return method


def _after_backend_call(point, moto_method):
    """``InstanceBackend.<method>(instance_ids)`` that runs the point's callbacks once moto has acted on them all."""

    def method(self, instance_ids):
        result = moto_method(self, instance_ids)
        _run(point, self, instance_ids)
        return result

    method.__name__ = moto_method.__name__
    method.__doc__ = moto_method.__doc__
    return method


def install():
    """Patch moto's ``Instance`` and ``InstanceBackend`` lifecycle methods (once)."""
    if _INSTALLED:
        return
    from moto.ec2.models.instances import Instance, InstanceBackend

    moto_init = Instance.__init__
    moto_run_instances = InstanceBackend.run_instances

    def init(self, *args, **kwargs):
        moto_init(self, *args, **kwargs)
        _run(INSTANCE_CREATED, self)

    def run_instances(self, image_id, count, user_data, security_group_names, **kwargs):
        _run(LAUNCH_REQUESTED, self, kwargs)
        reservation = moto_run_instances(self, image_id, count, user_data, security_group_names, **kwargs)
        _run(INSTANCES_LAUNCHED, self, reservation)
        return reservation

    Instance.__init__ = init
    Instance.start = _after_instance_call(INSTANCE_STARTED, Instance.start)
    Instance.stop = _after_instance_call(INSTANCE_STOPPED, Instance.stop)
    Instance.terminate = _after_instance_call(INSTANCE_TERMINATED, Instance.terminate)
    Instance.reboot = _after_instance_call(INSTANCE_REBOOTED, Instance.reboot)
    InstanceBackend.run_instances = run_instances
    InstanceBackend.stop_instances = _after_backend_call(INSTANCES_STOPPED, InstanceBackend.stop_instances)
    InstanceBackend.terminate_instances = _after_backend_call(INSTANCES_TERMINATED, InstanceBackend.terminate_instances)
    _INSTALLED.append(True)
