# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A replacement is up and waiting for its data: the readiness the cut-over waits for.

The instance agent says so once per boot (``EC2Spot Replacement Ready``) when it has booted and no data volume of its
lineage is attached to it yet; the instance is then held by its launch lifecycle hook (``Pending:Wait``, where AWS
runs user data) or is a standalone replacement. The handler records the step ``ready`` on the instance at the event's
time: the boot report's timeline carries it, and the ``ready`` phase (from the old holder's warning to this) is
published as ``PhaseSeconds``: how long after a notice a replacement could take the data, the headroom a
make-before-break cut-over has within the two minutes.

For a make-before-break service, a ready replacement whose launch is held starts the cut-over (``cutover``).

The agent's event proves nothing by itself (any instance of the account may put events of this source), so only a
running instance of a managed lineage, named by the event, is recorded; a duplicate or a late one changes nothing.
"""

from __future__ import annotations

from .. import progress
from ..config import MAKE_BEFORE_BREAK
from . import cutover

READY = "ready"


def on_ready(handler, event, instance, service):
    """The agent of ``instance`` (of ``service``'s lineage) says it is up and waiting for its data."""
    state = instance["State"]["Name"]
    if state != "running":
        return f"ignored: {event.instance_id} is {state}, not waiting for data"
    done = progress.read(instance)
    if READY in done:
        outcome = f"duplicate: {event.instance_id} already ready since {progress.stamp_of(done[READY])}"
    else:
        progress.record(handler.clients["ec2"], event.instance_id, READY, event.time)
        handler.metric(service, "ReplacementsReady", 1, "Count")
        outcome = f"{event.instance_id} of {service.name} is ready for its data"
    if service.cutover != MAKE_BEFORE_BREAK:
        return outcome
    # A duplicate also looks again: the cut-over it would have started may have been cut short (a crash, a retry).
    return f"{outcome}; " + cutover.on_ready(handler, instance, service)
