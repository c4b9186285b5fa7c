# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Standby failover: a service with a ``standby`` section fails over from its primary to its standby.

Triggered by the primary stopping, stopped or going away (``termination.on_state_change``) or by one of its alarms
in ``ALARM`` (the dispatch): start the standby, wait for its status checks, move the Elastic IP and (fenced, same
zone) the data volume, report (``standby.fail_over`` does the moving). Once per primary until the explicit
failback (``roles/standby``, ``standby_failback``): a later or redelivered trigger moves nothing, never flapping.
Both instances record it (``standby.FAILOVER_STEP`` on the primary, ``standby.TOOK_OVER_STEP`` on the standby).
"""

from __future__ import annotations

import logging

from .. import progress
from .. import standby as standbys
from ..addresses import find_address
from ..errors import AwsApiError, RecoveryError
from .retries import TRANSIENT

LOG = logging.getLogger("ec2spot.autorecover.handler")


def on_standby(handler, event, instance, service, trigger):
    """Fail over from the primary ``event.instance_id`` to the standby, once (see ``standby.py``)."""
    ec2, primary_id, settings = handler.clients["ec2"], event.instance_id, service.standby
    done = progress.read(instance)
    if standbys.FAILOVER_STEP in done:
        return _already_failed_over(handler, service, primary_id, progress.outcome_of(done[standbys.FAILOVER_STEP]))
    started = handler.clock.monotonic()
    try:
        standby = standbys.find_standby(ec2, service.lineage, settings)
        took_over = progress.outcome_of(progress.read(standby).get(standbys.TOOK_OVER_STEP, ""))
        if took_over == primary_id:
            return _already_failed_over(handler, service, primary_id, standby["InstanceId"])
        result = standbys.fail_over(
            ec2,
            service.lineage,
            primary_id,
            settings,
            address=service.address,
            device_name=service.device_name,
            clock=handler.clock,
        )
    except TRANSIENT:
        raise
    except RecoveryError as exc:  # standby not ready or not found, address held elsewhere...: report, do not retry
        handler.publish(
            service,
            f"Standby failover failed for {service.name}",
            {
                "event": "standby-failover-failed",
                "service": service.name,
                "lineage": service.lineage,
                "primary_id": primary_id,
                "trigger": trigger,
                "error": exc.to_dict(),
                "summary": f"{service.name}: {trigger} on {primary_id}; failover NOT done (nothing moved): "
                f"{exc.message}",
            },
        )
        handler.metric(service, "StandbyFailoverFailures", 1, "Count")
        return f"standby failover for {primary_id} failed: {exc.message}"
    seconds = round(handler.clock.monotonic() - started, 3)
    try:
        progress.record(ec2, primary_id, standbys.FAILOVER_STEP, handler.clock.now(), result.standby_id)
    except AwsApiError as exc:  # the primary is gone: the standby's own mark below is enough
        LOG.info("could not mark %s as failed over: %s", primary_id, exc.message)
    progress.record(ec2, result.standby_id, standbys.TOOK_OVER_STEP, handler.clock.now(), primary_id)
    address = (
        f"address {result.address} {'moved' if result.address_moved else 'already there'}"
        if result.address
        else "no address configured"
    )
    handler.publish(
        service,
        f"{service.name} failed over to its standby {result.standby_id}",
        {
            "event": "standby-failover",
            "service": service.name,
            "lineage": service.lineage,
            "trigger": trigger,
            "seconds": seconds,
            **result.to_dict(),
            "summary": f"{service.name}: {trigger} on {primary_id}; standby {result.standby_id} "
            f"{'started and ' if result.standby_started else ''}passed its status checks; {address}; "
            f"volume: {result.volume}. Failing back is explicit (roles/standby, standby_failback)",
        },
    )
    handler.metric(service, "StandbyFailovers", 1, "Count")
    handler.metric(service, "StandbyFailoverSeconds", seconds, "Seconds")
    return f"failed over from {primary_id} to {result.standby_id}: {address}; volume: {result.volume}"


def _already_failed_over(handler, service, primary_id, standby_id):
    """A later or redelivered trigger for a primary already failed over: nothing moves (never flap). Says where
    the address is now when someone moved it since."""
    outcome = (
        f"duplicate: {primary_id} already failed over to {standby_id}; failing back is explicit (standby_failback)"
    )
    if service.address:
        try:
            address = find_address(
                handler.clients["ec2"],
                allocation_id=service.address.get("allocation_id"),
                public_ip=service.address.get("public_ip"),
                address_tags=service.address.get("tags"),
            )
        except RecoveryError as exc:
            return f"{outcome}; address not found: {exc.message}"
        if address.get("InstanceId") != standby_id:
            moved_to = address.get("InstanceId") or "no instance"
            outcome += f"; address {address['PublicIp']} was moved to {moved_to} since and stays there"
    return outcome
