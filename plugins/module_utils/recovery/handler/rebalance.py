# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EC2 instance rebalance recommendation: prepare, don't churn.

A rebalance recommendation says the instance's Spot pool is at elevated risk; it is no interruption. The holder of
a lineage gets a fresh snapshot set when the service asks for it (``rebalance_snapshot``), named after the minute,
so a redelivery takes nothing twice; nothing is stopped or moved. An instance already being interrupted is left to
its warning.
"""

from __future__ import annotations

from .. import progress
from .. import tags as t
from ..backups import backup_instance
from .holder import holds_current_data, not_holder


def on_rebalance(handler, event, instance, service):
    """A rebalance recommendation for an instance of ``service``."""
    if "warned" in progress.read(instance):
        return f"ignored: rebalance for {event.instance_id}, which is already being interrupted"
    if not service.rebalance_snapshot or instance["State"]["Name"] != "running":
        return f"rebalance for {event.instance_id}: nothing to do"
    if not holds_current_data(handler.clients["ec2"], service, instance):
        return not_holder(event, service)
    backup = backup_instance(
        handler.clients["ec2"],
        event.instance_id,
        f"{service.name}-rebalance-{event.time:%Y%m%d%H%M}",
        extra_tags={t.LINEAGE: service.lineage},
        clock=handler.clock,
    )
    return (
        f"rebalance for {event.instance_id}: snapshot {backup.backup_set} ({'new' if backup.changed else 'existing'})"
    )
