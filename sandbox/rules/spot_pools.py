"""A Spot pool reclaimed: the co-interruptions of one instance type in one Availability Zone.

AWS (EC2 user guide "Spot Instance interruptions": "Amazon EC2 can interrupt your Spot Instance when it needs the
capacity back"; "How Spot Instances work": a Spot capacity pool is "a set of unused EC2 instances with the same
instance type ... and Availability Zone"; "Best practices for Amazon EC2 Spot": be flexible across instance types
and zones because capacity is reclaimed pool by pool). When EC2 needs a pool's capacity back it interrupts Spot
instances of that pool, each with its own two-minute notice, and a launch into the pool meanwhile finds no Spot
capacity (``InsufficientInstanceCapacity``, "There is no Spot capacity available that matches your request.").
Measured in the field (``../shared/FIGURES.md``, "co-interruptions"): more than 92 % of same-type, same-zone
interruptions fall within 3 minutes of each other.

Control ``spot/reclaim-pool``: ``{"zone": "us-east-1a", "instance_type": "m6i.large"}``, optional ``spread`` (modeled
seconds over which the pool's interruptions are spread, default ``CO_INTERRUPTION_SPREAD``, 180, the 3 minutes of the
figure), ``lead`` (each notice's lead, default the modeled ``spot_notice_lead``) and ``capacity_for`` (modeled seconds
until the pool's capacity returns; default: it stays away until the ``ec2/capacity`` control gives it back). At once
the pool's capacity is taken away (``capacity.set_capacity``); the pool's running Spot instances are interrupted in
instance-id order, the first at once and the others evenly over ``spread`` (an instance no longer running when its turn
comes is passed over). Each interruption is the ``spot/interrupt`` one (``ec2_events.interrupt``). Recorded as
``pool_reclaims`` (zone, type, instance ids with their offsets, time).

**Choices.** AWS publishes neither which instances of a pool go first nor the gaps between them; the even spread is
deterministic, so a benchmark that interrupts a pool measures the same run twice. The sandbox's capacity is per
(zone, type) for every market (``capacity.py``): in AWS an On-Demand launch of the type may still succeed where the
Spot pool is empty; here it is refused too. The project launches Spot replacements, so nothing it measures depends on
the difference.
"""

from __future__ import annotations

from . import capacity
from .ec2_events import interrupt

CO_INTERRUPTION_SPREAD = 180.0


def pool_members(context, zone, instance_type):
    """The running Spot instances of the pool (``zone``, ``instance_type``), by instance id."""
    backend = context.backend("ec2")
    return sorted(
        (
            instance
            for instance in backend.all_instances()
            if instance.lifecycle == "spot"
            and instance.state == "running"
            and instance.placement.zone == zone
            and instance.instance_type == instance_type
        ),
        key=lambda instance: instance.id,
    )


def reclaim_pool(context, zone, instance_type, spread=None, lead=None, capacity_for=None):
    """The ``spot/reclaim-pool`` control (see the module's docstring); answers what was scheduled."""
    if not zone or not instance_type:
        raise ValueError("zone and instance_type name the pool to reclaim")
    spread = CO_INTERRUPTION_SPREAD if spread is None else float(spread)
    if spread < 0 or (capacity_for is not None and float(capacity_for) < 0):
        raise ValueError("spread and capacity_for must not be negative")
    with context.lock:
        capacity.set_capacity(context, zone, instance_type, available=False)
        members = [instance.id for instance in pool_members(context, zone, instance_type)]
        offsets = [spread * index / (len(members) - 1) if len(members) > 1 else 0.0 for index in range(len(members))]

        def interrupt_if_running(instance_id):
            try:
                interrupt(instance_id, lead, context)
            except ValueError:  # gone, stopped or already noticed since: EC2 has nothing left to take back
                context.record("pool_reclaim_passed_over", {"instance_id": instance_id})

        for instance_id, offset in zip(members, offsets):
            if offset == 0.0:
                interrupt_if_running(instance_id)
            else:
                context.after(offset, lambda i=instance_id: interrupt_if_running(i), f"pool reclaim {instance_id}")
        if capacity_for is not None:
            context.after(
                float(capacity_for),
                lambda: capacity.set_capacity(context, zone, instance_type, available=True),
                f"pool {zone}/{instance_type} capacity returns",
            )
        reclaim = {
            "zone": zone,
            "instance_type": instance_type,
            "interruptions": [{"instance_id": i, "after": offset} for i, offset in zip(members, offsets)],
            "time": context.now().isoformat(),
        }
        context.record("pool_reclaims", reclaim)
        return reclaim


def install(context):
    """The ``spot/reclaim-pool`` control (after ``capacity`` and ``ec2_events``, whose rules it uses)."""

    @context.control("spot/reclaim-pool")
    def _reclaim_pool(payload):
        return reclaim_pool(
            context,
            payload.get("zone"),
            payload.get("instance_type"),
            payload.get("spread"),
            payload.get("lead"),
            payload.get("capacity_for"),
        )
