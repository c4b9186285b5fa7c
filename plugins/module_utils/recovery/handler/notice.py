# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Spot notice's two minutes, and stopping the application within them.

The deadline of a Spot interruption is the warning's own time plus AWS's two minutes (``NOTICE_LEAD``), never 120 s
from whenever the handler runs. Within it, the application is stopped through SSM Run Command: the service's stop
commands, then ``sync`` and the data's unmount, bounded by what is left of the notice less what the steps after the
stop need (``RESERVE_AFTER_STOP``). The result is ``ok`` or why not (``skipped: ...``, ``failed: ...``), recorded as
the ``stopped`` step; only ``ok`` lets the data volume leave the instance (the fence). Retries of a warning are spread
over the notice less what the hand-off needs once one starts it (``HANDOFF_RESERVE``, read by ``retries``).
"""

from __future__ import annotations

import shlex
from datetime import timedelta

from ..commands import run_shell

NOTICE_LEAD = timedelta(seconds=120)  # AWS: the warning comes two minutes before the interruption
RESERVE_AFTER_STOP = 15  # seconds kept after the stop for the snapshot call and the detach
MIN_STOP_SECONDS = 5
# Of a notice's two minutes, what the hand-off itself needs once a retry starts it (the stop, then the snapshot call
# and the detach): retries inside a notice are spread over what is left before it.
HANDOFF_RESERVE = 45


def stop_application(handler, instance_id, service, deadline):
    """Stop the app through SSM within the notice; returns ``ok`` or why not."""
    if not service.stop_commands:
        return "skipped: no stop commands configured"
    remaining = (deadline - handler.clock.now()).total_seconds() - RESERVE_AFTER_STOP
    if remaining < MIN_STOP_SECONDS:
        return "failed: no time left before the interruption"
    timeout = int(min(service.stop_timeout, remaining))
    commands = (
        list(service.stop_commands)
        + ["sync"]
        + [
            # The instance agent's watcher may have unmounted it already (it stops on the same notice): not an error.
            f"if mountpoint -q {shlex.quote(mount)}; then umount {shlex.quote(mount)}; fi"
            for mount in service.data_mounts
        ]
    )
    return run_shell(
        handler.clients["ssm"],
        instance_id,
        commands,
        timeout,
        f"ec2spot.autorecover: stop {service.name}",
        handler.clock,
        late="failed: the stop did not finish before the interruption",
    )
