# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An instance going away without a handled warning: the terminate lifecycle action, EC2 state changes, protection.

AWS delivers Spot warnings best effort, so a holder may be terminated with none handled. Then the protective steps
still possible are taken once (``protect``): a crash-consistent snapshot while the instance still exists, and an
alert (``missed-warning``). A terminate lifecycle action is completed with CONTINUE once per token; a scale-in into
the group's warm pool keeps the instance with its volumes, so it is no loss. A state change of a standby service's
primary is its failover's trigger (``standby_failover``). ``protect`` also serves a warning that comes too late,
a planned interruption of an instance already away, and the sweep.
"""

from __future__ import annotations

import logging

from .. import events
from .. import progress
from .. import standby as standbys
from .. import tags as t
from ..backups import backup_instance
from ..errors import AwsApiError
from ..instances import GONE_STATES
from . import cutover, lifecycle, standby_failover
from .holder import holds_current_data

LOG = logging.getLogger("ec2spot.autorecover.handler")


def on_terminate(handler, event, instance, service):
    """A terminate lifecycle action: completed once per token (recorded on the instance: a redelivery makes no
    call). ``Destination: WarmPool`` is a scale-in into the group's warm pool: the instance is stopped, not
    terminated, and keeps its volumes, so it is no loss (no snapshot, no alert, no mark)."""
    hook = lifecycle.hook_of(event)
    if instance is None or instance["State"]["Name"] == "terminated":
        return f"terminate action for {event.instance_id}: instance gone, its lifecycle action with it"
    completed = progress.read_outcome(progress.read(instance), "terminate-completed")
    if completed is not None and completed.token == event.token:
        return f"duplicate: terminate action for {event.instance_id} already completed"
    steps = progress.read(instance)
    if "armed" in steps and "released" not in steps and event.detail.get("Destination") != events.WARM_POOL:
        # A make-before-break cut-over is under way: the instance serves until it, and completing the action now
        # would end the application without its stop. The cut-over completes it once the data is released.
        held = progress.HeldLaunch(event.hook, event.token)
        if progress.fits(held):
            progress.record(handler.clients["ec2"], event.instance_id, "terminate-held", handler.clock.now(), held)
            return f"terminate action for {event.instance_id}: held until its cut-over has released the data"
    if event.detail.get("Destination") == events.WARM_POOL:
        outcome = "scale-in to the warm pool: the instance is kept, stopped, with its volumes"
    else:
        outcome = protect(
            handler,
            event.instance_id,
            instance,
            service,
            reason="its Auto Scaling group is terminating it and no interruption of it was handled",
        )
    lifecycle.complete_and_record(
        handler, hook, "CONTINUE", event.instance_id, "terminate-completed", instance_may_be_gone=True
    )
    return f"terminate action for {event.instance_id}: {outcome}"


def on_state_change(handler, event, instance, service):
    """An EC2 state change: a standby service's primary stopping or going away fails over; any other holder going
    away gets the protective steps."""
    if service.standby is not None:
        if standbys.is_standby(service.standby, instance):
            return f"ignored: {event.instance_id} is the standby of {service.name} (state {event.state})"
        if standbys.is_primary(service.standby, instance):
            if event.state not in standbys.TRIGGER_STATES:
                return f"ignored: state {event.state}"
            return standby_failover.on_standby(handler, event, instance, service, f"the primary is {event.state}")
    if event.state not in ("shutting-down", "terminated"):
        return f"ignored: state {event.state}"
    steps = progress.read(instance) if instance else {}
    if "armed" in steps and "cutover" not in steps:
        # Reclaimed before any trigger of its make-before-break cut-over was handled: the deadline's path now (the
        # replacement held by then gets the data once the reclaim has let go of it; with none, the data waits).
        return f"state {event.state} of {event.instance_id} before its cut-over: " + cutover.on_deadline_of(
            handler, event.instance_id, service
        )
    return f"state {event.state} of {event.instance_id}: " + protect(
        handler,
        event.instance_id,
        instance,
        service,
        reason=f"EC2 reports it {event.state} and no interruption of it was handled",
    )


def protect(handler, instance_id, instance, service, reason=None):
    """The protective steps still possible when no warning was handled for the instance (its holder only)."""
    ec2 = handler.clients["ec2"]
    done = progress.read(instance)
    if "warned" in done or "protected" in done:
        return "already handled"
    if not holds_current_data(ec2, service, instance):
        return f"not the holder of the current generation of {service.lineage}: nothing to protect"
    outcome = "no snapshot possible (instance gone)"
    if instance["State"]["Name"] not in GONE_STATES:
        backup = backup_instance(
            ec2,
            instance_id,
            f"{service.name}-interruption",
            extra_tags={t.LINEAGE: service.lineage},
            clock=handler.clock,
        )
        outcome = f"crash-consistent snapshot {backup.backup_set}"
    try:
        progress.record(ec2, instance_id, "protected", handler.clock.now(), outcome)
    except AwsApiError:
        LOG.info("could not tag %s (gone): %s", instance_id, outcome)
    why = reason or "no interruption of it was handled"
    handler.publish(
        service,
        f"{instance_id} is going away and no interruption of it was handled",
        {
            "event": "missed-warning",
            "service": service.name,
            "instance_id": instance_id,
            "protection": outcome,
            "reason": why,
            "summary": f"{service.name}: {instance_id} is going away and {why}; {outcome}",
        },
    )
    handler.metric(service, "MissedWarnings", 1, "Count")
    return outcome
