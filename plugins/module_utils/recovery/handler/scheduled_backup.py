# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schedule's backup: a consistent snapshot set of the lineage's holder, then retention.

The EventBridge schedule names the lineage (and, optionally, an AMI and the retention rules). The set is named
after the schedule's time, so a redelivered message takes nothing twice. A lineage whose volume no instance holds
has nothing being written: its newest snapshot is still current, nothing to take. Retention is the one the
``spot_backup`` module applies (``retention.apply_retention``).
"""

from __future__ import annotations

from .. import tags as t
from ..backups import backup_instance
from ..lineage import current_volume
from ..retention import apply_retention


def on_scheduled_backup(handler, event, service):
    """The scheduled backup of ``service``'s lineage, and its retention."""
    ec2 = handler.clients["ec2"]
    volume = current_volume(ec2, service.lineage)
    holder = next(
        (a["InstanceId"] for a in (volume or {}).get("Attachments", []) if a.get("State") == "attached"), None
    )
    outcome = []
    if holder:
        backup = backup_instance(
            ec2,
            holder,
            f"{service.name}-scheduled-{event.time:%Y%m%d%H%M}",
            create_image=bool(event.detail.get("create_image", False)),
            extra_tags={t.LINEAGE: service.lineage},
            clock=handler.clock,
        )
        outcome.append(f"backup {backup.backup_set} of {holder} ({'new' if backup.changed else 'existing'})")
    else:
        outcome.append(f"no backup: no instance holds lineage {service.lineage}'s volume")
    keep_newest, max_age_days = event.detail.get("keep_newest"), event.detail.get("max_age_days")
    if keep_newest or max_age_days:
        # The same rules and code as spot_backup's retention (retention.apply_retention): any rule keeps a backup,
        # each kind's newest always stays, one call per deleted AMI.
        retained = apply_retention(
            ec2, [service.lineage], {"keep_newest": keep_newest, "max_age_days": max_age_days}, now=handler.clock.now()
        )
        outcome.append(retained.summary())
    handler.metric(service, "ScheduledBackups", 1, "Count")
    return "; ".join(outcome)
