# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Intake: the Lambda entry point, the SQS batch, each message's checks, and the dispatch to one workflow.

``lambda_handler`` receives SQS batches from the control plane's queue and reports partial batch failures
(``process_batch``). Each message is one EventBridge event, parsed strictly against the function's own account
and region (``events.parse``: envelope, source, kind, detail). An invalid message is logged, counted and dropped
(never retried); a transient failure is reported as a batch item failure and retried with back-off (``retries``);
a recovery error no retry can fix is logged and counted; a bug is retried, then goes to the dead-letter queue.

``Handler.handle`` decides who an event is about (a lineage for a scheduled backup, a group for a lifecycle action,
an instance for the rest) and ignores what is not a managed service's; ``WORKFLOWS`` names the module each kind of
event goes to, and ``alarm_section`` which section of the service a CloudWatch alarm belongs to. The ``Handler``
carries what every workflow uses: the configuration, the clients, the clock, ``describe``, ``publish`` and
``metric``.
"""

from __future__ import annotations

import logging
import os

from .. import config as handler_config
from .. import events
from .. import standby as standbys
from .. import tags as t
from ..aws import SYSTEM_CLOCK, call, make_client
from ..errors import NotFound, RecoveryError
from ..instances import describe_instance
from . import (
    boot_report,
    cutover,
    launch,
    notify,
    planned,
    readiness,
    rebalance,
    retries,
    scheduled_backup,
    standby_failover,
)
from . import sweep, termination, warning, watchdog_reboot
from .retries import TRANSIENT

LOG = logging.getLogger("ec2spot.autorecover.handler")


class Clients:
    """boto3 clients built on first use, with the core's retry configuration."""

    def __init__(self, factory=make_client):
        self._factory = factory
        self._clients = {}

    def __getitem__(self, service):
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]


class Handler:
    """One configured handler: it turns a message body into one workflow's outcome (``handle``)."""

    def __init__(self, config, clients, clock=SYSTEM_CLOCK, move_timeout=600, account=None, region=None):
        """``account`` and ``region`` are the function's own (the Lambda entry point reads them from its context);
        unset, they are asked of STS and the EC2 client once: an event is never trusted by default."""
        self.config = config
        self.clients = clients
        self.clock = clock
        self.move_timeout = move_timeout
        self._identity = (account, region) if account and region else None

    @property
    def identity(self):
        """``(account, region)`` of the function: the only ones whose events are acted on."""
        if self._identity is None:
            account = call(self.clients["sts"], "get_caller_identity")["Account"]
            self._identity = (account, self.clients["ec2"].meta.region_name)
        return self._identity

    def handle(self, body):
        """Act on one message body; returns a short outcome for the log."""
        account, region = self.identity
        return dispatch(self, events.parse(body, account=account, region=region))

    def describe(self, instance_id):
        """The described instance, or None when EC2 no longer knows it."""
        try:
            return describe_instance(self.clients["ec2"], instance_id)
        except NotFound:
            return None

    def publish(self, service, subject, message):
        """Tell the operator (``notify.publish``)."""
        notify.publish(self.clients, self.config.topic_arn, service, subject, message)

    def metric(self, service, name, value, unit, phase=None):
        """Publish one metric data point (``notify.put_metric``); a lost metric is logged, never a failure."""
        notify.put_metric(self.clients, self.config.metric_namespace, service, name, value, unit, phase=phase)


def on_alarm(handler, event, instance, service):
    """A CloudWatch alarm of a managed instance: the standby's failover or the CPU watchdog, by ``alarm_section``."""
    name = event.detail["alarmName"]
    section = alarm_section(service, name, event.detail.get("metric"))
    if section is None:
        return f"ignored: alarm {name} is not a standby or watchdog alarm of {service.name}"
    if event.state != "ALARM":
        return f"ignored: alarm {name} is {event.state}"
    if section == "standby":
        if not standbys.is_primary(service.standby, instance):
            return f"ignored: alarm {name} watches {event.instance_id}, not the primary of {service.name}"
        return standby_failover.on_standby(handler, event, instance, service, f"alarm {name}")
    return watchdog_reboot.on_watchdog(handler, event, instance, service)


def alarm_section(service, name, metric):
    """Which section an alarm belongs to: the one whose ``alarm_prefix`` starts its name; without prefixes, a
    CPUUtilization alarm is the watchdog's (when configured) and any other the standby's."""
    sections = (("standby", service.standby), ("watchdog", service.watchdog))
    for key, settings in sections:
        if settings is not None and settings.alarm_prefix and name.startswith(settings.alarm_prefix):
            return key
    if service.watchdog is not None and not service.watchdog.alarm_prefix and metric == "CPUUtilization":
        return "watchdog"
    if service.standby is not None and not service.standby.alarm_prefix:
        return "standby"
    return None


# The workflow of each kind of event about an instance: ``(handler, event, instance, service)``.
WORKFLOWS = {
    events.SPOT_WARNING: warning.on_warning,
    events.REBALANCE: rebalance.on_rebalance,
    events.LAUNCH_ACTION: launch.on_launch,
    events.TERMINATE_ACTION: termination.on_terminate,
    events.STATE_CHANGE: termination.on_state_change,
    events.BOOT_REPORT: boot_report.on_boot_report,
    events.REPLACEMENT_READY: readiness.on_ready,
    events.CUTOVER_DEADLINE: cutover.on_deadline,
    events.ALARM: on_alarm,
    events.MAINTENANCE: planned.on_maintenance,
}


def dispatch(handler, event):
    """The outcome of the workflow ``event`` (parsed) goes to, or why it is ignored."""
    if event.kind == events.SCHEDULED_BACKUP:
        service = handler.config.service_for(event.detail["lineage"])
        if service is None:
            return f"ignored: lineage {event.detail['lineage']} is not managed"
        return scheduled_backup.on_scheduled_backup(handler, event, service)
    if event.kind == events.HEALTH:
        return planned.on_health(handler, event)
    if event.kind == events.SWEEP:
        return sweep.on_sweep(handler, event)
    if event.kind in (events.LAUNCH_ACTION, events.TERMINATE_ACTION):
        service = next((s for s in handler.config.services if s.group and s.group == event.group), None)
        if service is None:
            instance = handler.describe(event.instance_id)
            owner = handler.config.service_for(t.as_dict((instance or {}).get("Tags")).get(t.LINEAGE))
            if owner is None:
                return f"ignored: group {event.group} is not managed"
            # Not ours to complete: its default result applies. But a second writer must be named.
            return sweep.report_misconfiguration(handler, owner, {event.group: [event.instance_id]})
    instance = handler.describe(event.instance_id)
    if event.kind not in (events.LAUNCH_ACTION, events.TERMINATE_ACTION):
        service = handler.config.service_for(t.as_dict(instance.get("Tags")).get(t.LINEAGE)) if instance else None
        if service is None:
            return f"ignored: {event.instance_id} is not a managed instance"
    return WORKFLOWS[event.kind](handler, event, instance, service)


# The service the handler's own failures are counted under (InvalidEvents, HandlerErrors): no service's.
_HANDLER_ITSELF = handler_config.Service(name="handler", lineage="handler")


def process_batch(sqs_event, handler):
    """Handle an SQS batch; returns the partial batch response Lambda expects."""
    failures = []
    records = sqs_event.get("Records") if isinstance(sqs_event, dict) else None
    if not isinstance(records, list):
        LOG.error("not an SQS batch: %s", str(sqs_event)[:200])
        return {"batchItemFailures": []}
    for record in records:
        message_id = record.get("messageId") if isinstance(record, dict) else None
        try:
            outcome = handler.handle(record.get("body") if isinstance(record, dict) else None)
            LOG.info("%s: %s", events.printable(message_id, 100), events.printable(outcome))
        except events.InvalidEvent as exc:
            LOG.warning(
                "%s: dropped invalid event: %s", events.printable(message_id, 100), events.printable(exc.message)
            )
            handler.metric(_HANDLER_ITSELF, "InvalidEvents", 1, "Count")
        except TRANSIENT as exc:
            LOG.warning(
                "%s: will retry: %s", events.printable(message_id, 100), events.printable(getattr(exc, "message", exc))
            )
            if message_id:
                failures.append({"itemIdentifier": message_id})
                retries.retry_later(handler, record, exc)
        except RecoveryError as exc:
            LOG.error("%s: not recoverable: %s", events.printable(message_id, 100), events.printable(exc.message))
            handler.metric(_HANDLER_ITSELF, "HandlerErrors", 1, "Count")
        except Exception:  # pylint: disable=broad-exception-caught  # a bug must not lose the message: retry, then DLQ
            LOG.exception("%s: handler error", events.printable(message_id, 100))
            if message_id:
                failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


_CONFIG = None


def lambda_handler(event, context):  # pylint: disable=unused-argument
    """The Lambda entry point (``recovery.handler.lambda_handler``)."""
    global _CONFIG  # pylint: disable=global-statement  # parsed once per execution environment
    logging.getLogger().setLevel(logging.INFO)
    if _CONFIG is None:
        # recovery/handler_config.json, beside recovery/config.py in the package (config.load)
        _CONFIG, source = handler_config.load(os.environ, os.path.dirname(os.path.abspath(handler_config.__file__)))
        if source != handler_config.ENV_VAR and os.environ.get(handler_config.ENV_VAR):
            LOG.warning("%s is set but ignored: the package's own configuration is used", handler_config.ENV_VAR)
    # The function's own account and region, from its ARN (arn:aws:lambda:<region>:<account>:function:<name>).
    arn = str(getattr(context, "invoked_function_arn", "") or "").split(":")
    account, region = (arn[4], arn[3]) if len(arn) >= 7 else (None, None)
    return process_batch(event, Handler(_CONFIG, Clients(), account=account, region=region))
