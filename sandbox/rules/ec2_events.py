"""EC2's own events as AWS emits them: instance state changes, Spot interruptions, rebalance recommendations.

AWS (EC2 user guide "Amazon EventBridge events for Amazon EC2" / "EC2 instance state-change events",
"Spot Instance interruption notices", "EC2 instance rebalance recommendations", "Instance metadata
categories"; FIS action ``aws:ec2:send-spot-instance-interruptions``):

* every instance state transition puts ``EC2 Instance State-change Notification`` (source ``aws.ec2``,
  ``resources`` the instance ARN, ``detail`` ``{"instance-id", "state"}``) on the default bus, whoever made
  the change (an API call, Auto Scaling, a Spot reclaim). An instance passes through intermediate states:
  launch ``pending`` -> ``running``, start ``pending`` -> ``running``, stop ``stopping`` -> ``stopped``,
  terminate ``shutting-down`` -> ``terminated``;
* a Spot interruption is announced two minutes ahead: ``EC2 Spot Instance Interruption Warning``
  (``detail`` ``{"instance-id", "instance-action": "terminate"}``), and the instance's metadata answers
  ``spot/instance-action`` with ``{"action": "terminate", "time": "<when>"}`` (and the older
  ``spot/termination-time`` with the time); at that time the instance is terminated with state reason
  ``Server.SpotInstanceTermination`` (termination protection does not stop a Spot reclaim);
* an instance whose interruption behaviour is ``stop`` or ``hibernate`` (a persistent Spot request; EC2
  user guide "Behavior of Spot Instance interruptions") gets the same notice with that ``instance-action``
  and is **stopped**, not terminated, at the notice time (state reason ``Server.SpotInstanceShutdown`` or
  ``Server.SpotInstanceHibernate``), keeping its volumes; only EC2 starts it again, when capacity returns
  (the ``spot/capacity`` control plays that). moto keeps no interruption behaviour (it reads only the
  market type), so the ``spot/interrupt`` control takes it as ``action``;
* a rebalance recommendation (earlier, no termination): ``EC2 Instance Rebalance Recommendation``
  (``detail`` ``{"instance-id"}``) and metadata ``events/recommendations/rebalance`` =
  ``{"noticeTime": "<when>"}``.

The sandbox acts on moto's model, not the API layer: at the instance lifecycle's points (``instance_lifecycle.py``:
creation, ``run_instances``, ``Instance.start/stop/terminate``), so transitions made by other sandbox rules (Auto
Scaling, Spot reclaims) and by moto itself emit too.
**Choice**: moto changes state at once, and moto, the other rules (an attach needs a ``running`` or
``stopped`` instance) and the code under test all read that state, so the sandbox keeps moto's instant state
and emits both events of each pair at the moment of the change, in AWS's order. Delaying only the final
event would announce a state that ``DescribeInstances`` already showed; delaying the state itself would make
every caller that acts right after ``RunInstances`` meet ``pending``, which it must tolerate in AWS but is
out of this rule's scope.

Controls: ``spot/interrupt`` (``instance_id``, optional ``lead`` seconds, default the modeled
``spot_notice_lead``, optional ``action``: ``terminate``, ``stop`` or ``hibernate``), ``spot/capacity``
(``instance_id``: EC2 restarts an instance a Spot interruption stopped), ``spot/rebalance`` (``instance_id``), ``imds`` (``instance_id``, ``path``:
``{"value": ...}``). Interruptions and rebalances are refused for an unknown or not ``running`` instance.
The sandbox records each interruption (``records`` control, name ``spot_interruptions``).

moto 5.2.5 emits no EC2 event at all, has no way to interrupt a Spot instance (FIS experiments run but do
nothing to the instance) and keeps no instance metadata.
"""

from __future__ import annotations

import json
from datetime import timedelta

from .. import instance_lifecycle as lifecycle

STATE_CHANGE = "EC2 Instance State-change Notification"
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
SOURCE = "aws.ec2"

_STATE = {"born": [], "flush_entries": []}
RECLAIM_ATTRIBUTE = "_sandbox_spot_reclaim"  # the scheduled reclaim of an interrupted instance


def _context(context=None):
    if context is not None:
        return context
    from ..clock import CONTEXT

    return CONTEXT


def instance_arn(instance):
    backend = instance.ec2_backend
    return f"arn:aws:ec2:{backend.region_name}:{backend.account_id}:instance/{instance.id}"


def _iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _emit(context, instance, detail_type, detail):
    """Put an ``aws.ec2`` event on the default bus of the instance's own account and region."""
    backend = instance.ec2_backend
    resources = [instance_arn(instance)]
    if (backend.account_id, backend.region_name) == (context.account_id, context.region):
        return context.emit(SOURCE, detail_type, detail, resources)
    from moto.backends import get_backend

    return get_backend("events")[backend.account_id][backend.region_name].put_events(
        [
            {
                "Source": SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "Resources": resources,
                "EventBusName": "default",
            }
        ]
    )


def _states(context, instance, *states):
    flush_births(context)
    for state in states:
        _emit(context, instance, STATE_CHANGE, {"instance-id": instance.id, "state": state})


def flush_births(context=None):
    """Emit ``pending`` then ``running`` for every instance created since the last flush."""
    context = _context(context)
    born, _STATE["born"] = _STATE["born"], []
    for entry in _STATE["flush_entries"]:
        context.cancel(entry)
    _STATE["flush_entries"] = []
    for instance in born:
        for state in ("pending", "running"):
            _emit(context, instance, STATE_CHANGE, {"instance-id": instance.id, "state": state})


def _running_instance(context, instance_id):
    from moto.ec2.exceptions import InvalidInstanceIdError

    if not instance_id:
        raise ValueError("instance_id is required")
    try:
        instance = context.backend("ec2").get_instance(instance_id)
    except InvalidInstanceIdError as exc:
        raise ValueError(f"The instance ID '{instance_id}' does not exist") from exc
    if instance.state != "running":
        raise ValueError(f"Instance '{instance_id}' is not running (it is '{instance.state}')")
    return instance


INTERRUPTION_BEHAVIOURS = {
    "terminate": "Server.SpotInstanceTermination: Spot instance termination",
    "stop": "Server.SpotInstanceShutdown: Spot instance shutdown",
    "hibernate": "Server.SpotInstanceHibernate: Spot instance hibernation",
}


def interrupt(instance_id, lead=None, context=None, action="terminate"):
    """Inject a Spot interruption as AWS (and FIS) do: warning event, IMDS notice, then at the notice time the
    instance's interruption behaviour (``action``): terminated, or stopped with its volumes (stop, hibernate)."""
    context = _context(context)
    if action not in INTERRUPTION_BEHAVIOURS:
        raise ValueError(f"action must be one of {', '.join(INTERRUPTION_BEHAVIOURS)}")
    with context.lock:
        instance = _running_instance(context, instance_id)
        if getattr(instance, RECLAIM_ATTRIBUTE, None) is not None:
            raise ValueError(f"Instance '{instance_id}' already has an interruption notice")
        lead = context.latency["spot_notice_lead"] if lead is None else float(lead)
        if lead < 0:
            raise ValueError("lead must not be negative")
        when = _iso(context.now() + timedelta(seconds=context.clock.duration(lead)))
        metadata = context.imds.setdefault(instance_id, {})
        metadata["spot/instance-action"] = json.dumps({"action": action, "time": when})
        metadata["spot/termination-time"] = when
        _emit(context, instance, SPOT_WARNING, {"instance-id": instance_id, "instance-action": action})

        def reclaim():
            setattr(instance, RECLAIM_ATTRIBUTE, None)
            if instance.state in ("shutting-down", "terminated"):
                return
            from moto.ec2.models.instances import StateReason

            if action != "terminate":
                if instance.state in ("pending", "running"):
                    instance.ec2_backend.stop_instances([instance_id])
                    code = INTERRUPTION_BEHAVIOURS[action].split(":", 1)[0]
                    instance.state_reason = StateReason(INTERRUPTION_BEHAVIOURS[action], code)
                for path in ("spot/instance-action", "spot/termination-time"):  # a new boot has no notice
                    metadata.pop(path, None)
                return
            protected = instance.disable_api_termination
            instance.disable_api_termination = False  # a Spot reclaim ignores termination protection
            try:
                instance.ec2_backend.terminate_instances([instance_id])
            finally:
                instance.disable_api_termination = protected
            instance.state_reason = StateReason(
                "Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination"
            )

        setattr(instance, RECLAIM_ATTRIBUTE, context.after(lead, reclaim, f"spot reclaim {instance_id}"))
        notice = {"instance_id": instance_id, "action": action, "time": when, "lead": lead}
        context.record("spot_interruptions", notice)
        return notice


def capacity_returns(instance_id, context=None):
    """EC2 starts a Spot instance it stopped (interruption behaviour stop or hibernate) when capacity returns."""
    context = _context(context)
    with context.lock:
        from moto.ec2.exceptions import InvalidInstanceIdError

        try:
            instance = context.backend("ec2").get_instance(instance_id)
        except InvalidInstanceIdError as exc:
            raise ValueError(f"The instance ID '{instance_id}' does not exist") from exc
        reason = getattr(instance.state_reason, "code", "") or ""
        if instance.state != "stopped" or reason not in ("Server.SpotInstanceShutdown", "Server.SpotInstanceHibernate"):
            raise ValueError(
                f"Instance '{instance_id}' was not stopped by a Spot interruption (only EC2 restarts those)"
            )
        instance.ec2_backend.start_instances([instance_id])
        return {"instance_id": instance_id, "state": instance.state}


def rebalance(instance_id, context=None):
    """Inject a rebalance recommendation: the event and the IMDS notice, no termination."""
    context = _context(context)
    with context.lock:
        instance = _running_instance(context, instance_id)
        notice_time = _iso(context.now())
        context.imds.setdefault(instance_id, {})["events/recommendations/rebalance"] = json.dumps(
            {"noticeTime": notice_time}
        )
        _emit(context, instance, REBALANCE, {"instance-id": instance_id})
        return {"instance_id": instance_id, "noticeTime": notice_time}


def imds_value(instance_id, path, context=None):
    """What the instance metadata service answers at ``path`` (``latest/meta-data/`` prefix optional)."""
    context = _context(context)
    path = (path or "").strip("/")
    for prefix in ("latest/meta-data/", "meta-data/"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
    with context.lock:
        metadata = context.imds.get(instance_id, {})
        if path not in metadata:
            raise ValueError(f"404 - Not Found: no metadata {path!r} for instance {instance_id!r}")
        return metadata[path]


def install(context):
    """Register with the instance lifecycle (creation, launch, start, stop, terminate); the ``instance-lifecycle``
    filter; the controls."""

    def created(instance):
        _STATE["born"].append(instance)
        # run_instances flushes at its end; this catches any other way moto creates an instance.
        _STATE["flush_entries"].append(
            context.after(0, lambda: flush_births(context), "ec2 launch state-change events")
        )

    def launched(unused_backend, unused_reservation):
        flush_births(context)

    def started(instance, before):
        if lifecycle.changed(lifecycle.INSTANCE_STARTED, instance, before):
            _states(context, instance, "pending", "running")

    def stopped(instance, before):
        if lifecycle.changed(lifecycle.INSTANCE_STOPPED, instance, before):
            _states(context, instance, "stopping", "stopped")

    def terminated(instance, before):
        if lifecycle.changed(lifecycle.INSTANCE_TERMINATED, instance, before):
            _states(context, instance, "shutting-down", "terminated")
            entry = getattr(instance, RECLAIM_ATTRIBUTE, None)
            if entry is not None:  # terminated before its notice time: nothing left to reclaim
                context.cancel(entry)
                setattr(instance, RECLAIM_ATTRIBUTE, None)

    lifecycle.register(
        "ec2_events",
        {
            lifecycle.INSTANCE_CREATED: created,
            lifecycle.INSTANCES_LAUNCHED: launched,
            lifecycle.INSTANCE_STARTED: started,
            lifecycle.INSTANCE_STOPPED: stopped,
            lifecycle.INSTANCE_TERMINATED: terminated,
        },
    )
    # DescribeInstances "instance-lifecycle": spot | scheduled | capacity-block (on-demand instances have none).
    from moto.ec2 import utils as ec2_utils

    ec2_utils.filter_dict_attribute_mapping["instance-lifecycle"] = "lifecycle"

    @context.control("spot/interrupt")
    def _spot_interrupt(payload):
        return interrupt(payload.get("instance_id"), payload.get("lead"), context, payload.get("action") or "terminate")

    @context.control("spot/capacity")
    def _spot_capacity(payload):
        return capacity_returns(payload.get("instance_id"), context)

    @context.control("spot/rebalance")
    def _spot_rebalance(payload):
        return rebalance(payload.get("instance_id"), context)

    @context.control("imds")
    def _imds(payload):
        return {"value": imds_value(payload.get("instance_id"), payload.get("path"), context)}
