# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The interruption handler: EventBridge -> SQS -> this function (Lambda), on the recovery core.

The function's handler, ``recovery.handler.lambda_handler``, receives SQS batches; each message is one EventBridge
event about a configured service (``config.py``), validated (``events.py``) and handed to one workflow. Every step
is recorded in a progress tag (``progress.py``) and skipped when present, so duplicate, late, out-of-order and
redelivered events do nothing twice, and a crash resumes. Invalid messages are logged, counted and dropped (never
retried); transient failures come back after a back-off, then go to the dead-letter queue.

Read it by event. The modules of this package (``tests/unit/test_package_map.py`` keeps this list complete):

``intake``            the Lambda entry point, the SQS batch, each message's checks, the dispatch to a workflow
``warning``           Spot interruption warning: publish, Unhealthy, stop the application, snapshot, early release
``cutover``           make-before-break: serve until the replacement is ready or the deadline, then one cut-over
``steering``          make-before-break: the group narrowed to the data's zone until the data has moved
``pause``             Spot ``stop`` or ``hibernate`` warning: the instance keeps its data, no replacement
``launch``            the replacement's launch lifecycle action: the data and the address move to it; or ABANDON
``termination``       terminate lifecycle action and state changes without a handled warning: protection
``rebalance``         rebalance recommendation: a fresh snapshot, nothing moved
``scheduled_backup``  the schedule's backup of a lineage, and its retention
``readiness``         a replacement up and waiting for its data: recorded, the ``ready`` phase of the boot report
``boot_report``       the replacement's boot report: recovered, recovered with loss, or a failed boot
``planned``           planned interruptions (AWS Health, the agent's scheduled events): snapshot now, hand off when due
``sweep``             the backstop: unannounced losses, scheduled events, overdue recoveries, a second writer
``standby_failover``  failing a primary over to its standby, once
``watchdog_reboot``   the CPU watchdog's alarm: reboot within a cooldown and a cap, restart the application
``holder``            whether an instance holds a lineage's current data
``notice``            a Spot notice's two minutes, and stopping the application within them
``lifecycle``         Auto Scaling lifecycle actions: heartbeat, complete, suspend the group's launches
``notify``            what the operator hears: SNS messages and CloudWatch metrics
``retries``           transient failures: back-off within a notice, the last receive before the dead-letter queue

What the package exports (its ``__all__``) is the handler's interface: the Lambda runtime, the sandbox, the
benchmarks, the molecule scenarios and the tests use it.
"""

from __future__ import annotations

from datetime import timedelta

from .. import events
from .boot_report import PHASES
from .holder import AWAY_STATES
from .intake import WORKFLOWS, Clients, Handler, dispatch, lambda_handler, process_batch
from .launch import HEARTBEAT_EVERY, LAUNCH_STEPS, SNAPSHOT_WAIT
from .notice import HANDOFF_RESERVE, MIN_STOP_SECONDS, NOTICE_LEAD, RESERVE_AFTER_STOP
from .retries import RETRY_AFTER, RETRY_CAP, TRANSIENT, Retry, retry_delay

__all__ = [
    # The entry points, and what builds a handler.
    "lambda_handler",
    "process_batch",
    "Handler",
    "Clients",
    "dispatch",
    "WORKFLOWS",
    # Retries, and the durations the workflows keep to.
    "Retry",
    "TRANSIENT",
    "retry_delay",
    "RETRY_AFTER",
    "RETRY_CAP",
    "NOTICE_LEAD",
    "HANDOFF_RESERVE",
    "RESERVE_AFTER_STOP",
    "MIN_STOP_SECONDS",
    "SNAPSHOT_WAIT",
    "HEARTBEAT_EVERY",
    "AWAY_STATES",
    "LAUNCH_STEPS",
    "PHASES",
    # Names the tests read on the package, as they did on the one module it was.
    "events",
    "timedelta",
]
