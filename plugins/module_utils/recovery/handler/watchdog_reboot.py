# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CPU watchdog: a watched instance's CPU alarm in ``ALARM`` reboots it, within a cooldown and a cap.

For a service with a ``watchdog`` section: reboot the instance, wait for its status checks, restart the application
through SSM and report (``watchdog-reboot``, or ``watchdog-failed`` when the restart did not succeed). In
``alarm-reboot`` mode the alarm's own action rebooted it: count it and report. The reboots of the last hour are kept
on the instance's tags (``watchdog.history`` and ``watchdog.record``); within the cooldown nothing happens, and at
the cap of reboots per hour the operator is alerted (``watchdog-cap``) instead of a reboot loop (in ``alarm-reboot``
mode, the alarm's actions are disabled). The alarm event's id makes a redelivery do nothing twice.
"""

from __future__ import annotations

from .. import standby as standbys
from .. import watchdog as watchdogs
from ..aws import call


def on_watchdog(handler, event, instance, service):
    """The CPU alarm of a watched instance is in ALARM (see ``watchdog.py``)."""
    ec2, instance_id, settings = handler.clients["ec2"], event.instance_id, service.watchdog
    alarm = event.detail["alarmName"]
    if event.event_id and watchdogs.handled_event(instance) == event.event_id:
        return f"duplicate: alarm event {event.event_id} for {instance_id} already handled"
    if instance["State"]["Name"] != "running":
        return f"ignored: {instance_id} is {instance['State']['Name']}"
    now = handler.clock.now()
    past = watchdogs.history(instance, now)
    base = {
        "service": service.name,
        "lineage": service.lineage,
        "instance_id": instance_id,
        "alarm": alarm,
        "mode": settings.mode,
        "reboots_last_hour": len(past),
        "max_reboots_per_hour": settings.max_reboots_per_hour,
    }
    if settings.mode == "alarm-reboot":
        return _alarm_rebooted(handler, event, service, past, now, base)
    verdict = watchdogs.decide(past, now, settings)
    if verdict != watchdogs.REBOOT:
        watchdogs.record(ec2, instance_id, past, now, event.event_id, rebooted=False)
        if verdict == watchdogs.COOLDOWN:
            since = (now - past[-1]).total_seconds()
            return f"watchdog for {instance_id}: no reboot, {since:.0f}s since the last (cooldown {settings.cooldown}s)"
        _cap_alert(handler, service, base, "no reboot")
        return (
            f"watchdog for {instance_id}: cap of {settings.max_reboots_per_hour} reboots per hour reached, no reboot; "
            f"alert sent"
        )
    known, ssm_state = watchdogs.ssm_knows(handler.clients["ssm"], instance_id)
    watchdogs.reboot(ec2, instance_id)
    watchdogs.record(ec2, instance_id, past, now, event.event_id, rebooted=True)
    started = handler.clock.monotonic()
    try:
        ready = standbys.wait_status_ok(ec2, instance_id, settings.ready_timeout, handler.clock)
    except standbys.StandbyNotReady as exc:
        restart, ready = f"not attempted: {exc.message}", None
    else:
        restart = (
            watchdogs.run_commands(
                handler.clients["ssm"],
                instance_id,
                settings.commands,
                settings.command_timeout,
                f"ec2spot.autorecover: restart {service.name} after a watchdog reboot",
                handler.clock,
            )
            if known
            else f"skipped: {ssm_state}"
        )
    ok = restart == "ok"
    handler.publish(
        service,
        f"Watchdog rebooted {instance_id}" + ("" if ok else " (restart failed)"),
        {
            **base,
            "event": "watchdog-reboot" if ok else "watchdog-failed",
            "reboots_last_hour": len(past) + 1,
            "ready_seconds": ready,
            "restart": restart,
            "commands": list(settings.commands),
            "summary": f"{service.name}: alarm {alarm}: rebooted {instance_id} ({len(past) + 1} of "
            f"{settings.max_reboots_per_hour} this hour); restart: {restart}",
        },
    )
    handler.metric(service, "WatchdogReboots", 1, "Count")
    handler.metric(service, "WatchdogRecoverySeconds", handler.clock.monotonic() - started, "Seconds")
    if not ok:
        handler.metric(service, "WatchdogFailures", 1, "Count")
    return f"watchdog for {instance_id}: rebooted; restart {restart}"


def _alarm_rebooted(handler, event, service, past, now, base):
    """``alarm-reboot`` mode: the alarm's own action rebooted the instance; count it, and at the cap disable the
    alarm's actions (the only way to stop a loop the alarm drives) and alert."""
    instance_id, settings, alarm = event.instance_id, service.watchdog, event.detail["alarmName"]
    watchdogs.record(handler.clients["ec2"], instance_id, past, now, event.event_id, rebooted=True)
    count = len(past) + 1
    handler.metric(service, "WatchdogReboots", 1, "Count")
    if count >= settings.max_reboots_per_hour:
        call(handler.clients["cloudwatch"], "disable_alarm_actions", AlarmNames=[alarm])
        _cap_alert(
            handler,
            service,
            {**base, "reboots_last_hour": count},
            f"actions of alarm {alarm} disabled; "
            f"re-enable them (aws cloudwatch enable-alarm-actions) once the cause is fixed",
        )
        return f"watchdog for {instance_id}: alarm reboot {count}, cap reached: alarm actions disabled; alert sent"
    handler.publish(
        service,
        f"Watchdog alarm rebooted {instance_id}",
        {
            **base,
            "event": "watchdog-reboot",
            "reboots_last_hour": count,
            "restart": "by the instance's boot",
            "summary": f"{service.name}: alarm {alarm} rebooted {instance_id} ({count} of "
            f"{settings.max_reboots_per_hour} this hour); the application starts at boot",
        },
    )
    return f"watchdog for {instance_id}: alarm reboot {count} reported"


def _cap_alert(handler, service, base, consequence):
    handler.publish(
        service,
        f"Watchdog reboot cap reached for {base['instance_id']}",
        {
            **base,
            "event": "watchdog-cap",
            "summary": f"{service.name}: alarm {base['alarm']} on {base['instance_id']}: {base['reboots_last_hour']} "
            f"reboots in the last hour reached the cap of {base['max_reboots_per_hour']}; {consequence}. Look at the "
            f"instance: rebooting again would only loop",
        },
    )
    handler.metric(service, "WatchdogCapHits", 1, "Count")
