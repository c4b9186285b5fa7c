# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Spot ``stop`` or ``hibernate`` interruption: the instance is paused with its data, not replaced.

The instance is stopped, not terminated, and keeps its volumes; EC2 starts it again when capacity returns (EC2
user guide, "Interruption behavior for Spot Instances"). So no Unhealthy, no release, no replacement: for ``stop``
the application is stopped cleanly within the notice and a consistent snapshot taken; for ``hibernate`` nothing is
stopped (memory is kept) and a snapshot (crash-consistent) is taken only with the service's
``hibernate_snapshot``. When the instance runs again its agent mounts the same volume as on any boot. Once per
notice: the ``paused`` step keeps the notice (``progress.PausedNotice``).
"""

from __future__ import annotations

from .. import progress
from .. import tags as t
from ..backups import backup_instance
from .notice import stop_application


def on_pause_warning(handler, event, instance, service, action, deadline):
    """Handle a ``stop`` or ``hibernate`` warning for ``instance``, whose notice ends at ``deadline``."""
    ec2, instance_id = handler.clients["ec2"], event.instance_id
    recorded = progress.read_outcome(progress.read(instance), "paused")
    if recorded is not None and recorded.is_notice(action, event.time):
        return f"duplicate: {action} warning for {instance_id} at {event.time:%H:%M:%S}Z already handled"
    if action == "stop":
        stop = stop_application(handler, instance_id, service, deadline)
    else:
        stop = "not stopped: hibernation keeps memory"
    snapshot = "none"
    if action == "stop" or service.hibernate_snapshot:
        backup = backup_instance(
            ec2,
            instance_id,
            f"{service.name}-{action}-{event.time:%Y%m%d%H%M%S}",
            extra_tags={t.LINEAGE: service.lineage},
            clock=handler.clock,
        )
        snapshot = progress.SnapshotSet(backup.backup_set, consistent=stop == "ok").describe()
    # The tag keeps the stop's verdict (``failed``), the message its reason: a stop's result is ``ok`` or
    # ``<verdict>: <why>``.
    verdict = stop.split(":", maxsplit=1)[0]
    progress.record(ec2, instance_id, "paused", handler.clock.now(), progress.PausedNotice(action, event.time, verdict))
    handler.publish(
        service,
        f"Spot {action} interruption for {instance_id}",
        {
            "event": f"interruption-{action}",
            "service": service.name,
            "lineage": service.lineage,
            "instance_id": instance_id,
            "instance_action": action,
            "interruption_at": deadline.isoformat(),
            "stop": stop,
            "snapshot": snapshot,
            "summary": f"{service.name}: {instance_id} will be {'stopped' if action == 'stop' else 'hibernated'} at "
            f"{deadline:%H:%M:%S}Z and kept with its data volume (no replacement); application "
            f"{'stop: ' + stop if action == 'stop' else 'left running in memory'}; snapshot: {snapshot}. "
            f"EC2 starts it again when capacity returns",
        },
    )
    handler.metric(service, "SpotPauses", 1, "Count")
    return f"{action} warning handled for {instance_id}: the instance keeps its data; stop {stop}; snapshot {snapshot}"
