"""Target health over modeled time: what a load balancer's health checks make of a registered target.

moto 5.2.5 answers ``DescribeTargetHealth`` with ``healthy`` for every registered running instance the moment it is
registered, whatever answers on it, and ``unused`` the moment it is deregistered. AWS (Elastic Load Balancing,
Application Load Balancers user guide, "Health checks for Application Load Balancer target groups" and "Target
group health"; the API reference's ``TargetHealth``):

* "After your target is registered, it must pass one health check to be considered healthy": ``initial``
  (``Elb.RegistrationInProgress`` until the first check, then ``Elb.InitialHealthChecking``) until a check passes;
* the load balancer checks each target every ``HealthCheckIntervalSeconds`` (default 30);
  ``UnhealthyThresholdCount`` consecutive failures (default 2) make it ``unhealthy`` (``Target.FailedHealthChecks``),
  and an unhealthy target needs ``HealthyThresholdCount`` consecutive successes (default 5) to be ``healthy`` again;
* "If a target group contains only unhealthy registered targets, the load balancer routes requests to all those
  targets" (it fails open); otherwise only healthy targets get requests;
* a deregistered target is ``draining`` (``Target.DeregistrationInProgress``) for the group's deregistration delay
  (``deregistration_delay.timeout_seconds``, default 300) and gets no new requests, then ``unused``.

Choices, since AWS documents neither (sandbox/README.md, "Target health"):

* the first health check comes ``elb_registration`` modeled seconds after the registration (``REGISTRATION_LATENCY``,
  10 s: the time the load balancer's nodes take to learn of the target; AWS publishes no figure), then one every
  interval; the check's own timeout is not modeled (a check passes or fails at its time);
* a check passes when the target's application serves at that moment. The sandbox runs no application server, so
  "serving" is what the agent recorded: from the ``app_started`` phase of the instance's boot report (the agent puts
  it on EventBridge once its start commands succeeded) until the instance stops running; the ``elbv2/serving``
  control sets it for a test;
* registering a target that is registered (and not draining) changes nothing: its checks keep their schedule and its
  state (the API reference calls RegisterTargets on a registered target harmless and says nothing of a reset).

The functions up to ``install`` are the rules, on plain numbers (modeled seconds); the sandbox's patches and the
benchmarks (``benchmarks/recovery.py``) both call them, so that the rules have one source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

REGISTRATION_LATENCY = 10.0  # modeled seconds from RegisterTargets to the first health check (a choice; see above)
LATENCY_KEY = "elb_registration"
BOOT_REPORT = "EC2Spot Recovery Boot Report"


@dataclass(frozen=True)
class Settings:
    """A target group's health check settings (the API's defaults for HTTP/HTTPS)."""

    interval: float = 30.0
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    deregistration_delay: float = 300.0

    @classmethod
    def of(cls, target_group):
        """The settings of a moto ``FakeTargetGroup``."""
        return cls(
            interval=float(target_group.health_check_interval_seconds or 30),
            healthy_threshold=int(target_group.healthy_threshold_count or 5),
            unhealthy_threshold=int(target_group.unhealthy_threshold_count or 2),
            deregistration_delay=float(target_group.attributes.get("deregistration_delay.timeout_seconds", 300)),
        )


def serving_at(serving, moment):
    """Whether the application serves at ``moment``; ``serving``: ``[(since, until or None), ...]``."""
    return any(since <= moment and (until is None or moment < until) for since, until in serving)


def check_times(registered_at, settings, latency, until):
    """The health checks' times from a registration up to ``until`` (inclusive)."""
    times, moment = [], registered_at + latency
    while moment <= until:
        times.append(moment)
        moment += settings.interval
    return times


def state_at(moment, registered_at, settings, serving, latency=REGISTRATION_LATENCY, deregistered_at=None):
    """``(state, reason)`` of a target at ``moment``: ``initial``, ``healthy``, ``unhealthy``, ``draining``, ``unused``."""
    if deregistered_at is not None and moment >= deregistered_at:
        if moment < deregistered_at + settings.deregistration_delay:
            return "draining", "Target.DeregistrationInProgress"
        return "unused", "Target.NotRegistered"
    checks = check_times(registered_at, settings, latency, moment)
    if not checks:
        return "initial", "Elb.RegistrationInProgress"
    state, passes, failures = "initial", 0, 0
    for at in checks:
        if serving_at(serving, at):
            passes, failures = passes + 1, 0
            if state == "initial" or (state == "unhealthy" and passes >= settings.healthy_threshold):
                state = "healthy"
        else:
            passes, failures = 0, failures + 1
            if failures >= settings.unhealthy_threshold:
                state = "unhealthy"
    reasons = {"initial": "Elb.InitialHealthChecking", "unhealthy": "Target.FailedHealthChecks", "healthy": None}
    return state, reasons[state]


def routed(states):
    """The targets a load balancer sends requests to, given ``{target: state}``: the healthy ones; when every
    registered target (draining and unused ones are not) is unhealthy, all of them (fail open)."""
    healthy = {target for target, state in states.items() if state == "healthy"}
    if healthy:
        return healthy
    registered = {target: state for target, state in states.items() if state not in ("draining", "unused")}
    if registered and all(state == "unhealthy" for state in registered.values()):
        return set(registered)
    return set()


def served_from(registered_at, settings, app_started, latency=REGISTRATION_LATENCY, alone=True, horizon=3600.0):
    """When requests through the load balancer first reach the target's application: the first moment from
    ``app_started`` on at which the target is routed to (healthy; or unhealthy and ``alone``, the only target of its
    group, which then fails open). The answer is one of the health checks' times or ``app_started`` itself."""
    serving = [(app_started, None)]
    end = max(registered_at, app_started) + latency + horizon
    for moment in sorted({app_started, *check_times(registered_at, settings, latency, end)}):
        if moment < app_started:
            continue
        state = state_at(moment, registered_at, settings, serving, latency)[0]
        others = {} if alone else {"another": "healthy"}
        if "target" in routed({"target": state, **others}):
            return moment
    return None


# ---- the sandbox: moto's target groups answer with the modeled health -------------------------------------------
def _elapsed_of(context, stamp):
    """Modeled elapsed seconds of an ISO 8601 stamp (the agent's wall-clock phases)."""
    moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return context.clock.elapsed() - (context.now() - moment).total_seconds()


def install(context):
    """Patch moto's ``FakeTargetGroup`` (register, deregister, health) and ``EventsBackend.put_events`` (the agent's
    boot report: its application serves from ``app_started``); add the ``elb_registration`` latency and the
    ``elbv2/serving`` control."""
    from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup
    from moto.events.models import EventsBackend

    from .. import clock

    clock.LATENCY.setdefault(LATENCY_KEY, REGISTRATION_LATENCY)  # reset() copies LATENCY: the key survives it
    context.latency.setdefault(LATENCY_KEY, REGISTRATION_LATENCY)

    def serving_of(instance_id):
        return context.controls_state.setdefault("target_serving", {}).setdefault(instance_id, [])

    def times_of(group):
        if not hasattr(group, "_sandbox_registered"):
            group._sandbox_registered, group._sandbox_deregistered = {}, {}
        return group._sandbox_registered, group._sandbox_deregistered

    moto_register, moto_deregister, moto_health_for = (
        FakeTargetGroup.register,
        FakeTargetGroup.deregister,
        FakeTargetGroup.health_for,
    )

    def register(self, targets):
        moto_register(self, targets)
        registered, deregistered = times_of(self)
        now = context.clock.elapsed()
        for target in targets:
            if target["Id"] not in registered or target["Id"] in deregistered:
                registered[target["Id"]] = now
                deregistered.pop(target["Id"], None)
                context.record("target_registrations", {"target_group": self.arn, "target": target["Id"], "at": now})

    def deregister(self, targets):
        registered, deregistered = times_of(self)
        # AWS: "If the specified target does not exist, the action returns successfully" (DeregisterTargets);
        # moto raises InvalidTarget.
        known = [target for target in targets if target["Id"] in self.targets]
        if known:
            moto_deregister(self, known)
        for target in known:
            deregistered[target["Id"]] = context.clock.elapsed()

    def health_for(self, target, ec2_backend):
        found = moto_health_for(self, target, ec2_backend)
        registered, deregistered = times_of(self)
        if target["Id"] not in registered or found.status not in ("healthy", "unused"):
            return found  # moto's answer for what it knows better: a stopped instance, a terminated one
        if found.status == "unused" and target["Id"] not in deregistered:
            return found
        settings = Settings.of(self)
        now = context.clock.elapsed()
        serving = list(serving_of(target["Id"]))
        instance = ec2_backend.get_instance_by_id(target["Id"]) if target["Id"].startswith("i-") else None
        if instance is not None and instance.state != "running":
            serving = []
        state, reason = state_at(
            now,
            registered[target["Id"]],
            settings,
            serving,
            context.latency.get(LATENCY_KEY, REGISTRATION_LATENCY),
            deregistered.get(target["Id"]),
        )
        descriptions = {
            "Elb.RegistrationInProgress": "Target registration is in progress",
            "Elb.InitialHealthChecking": "Initial health checks in progress",
            "Target.FailedHealthChecks": "Health checks failed",
            "Target.DeregistrationInProgress": "Target deregistration is in progress",
            "Target.NotRegistered": "Target is not registered to the target group",
        }
        return FakeHealthStatus(
            found.instance_id, found.port, found.health_check_port, state, reason, descriptions.get(reason)
        )

    moto_put_events = EventsBackend.put_events

    def put_events(self, events):
        for event in events:
            if event.get("DetailType") != BOOT_REPORT:
                continue
            try:
                detail = json.loads(event.get("Detail") or "{}")
                started = _elapsed_of(context, detail["phases"]["app_started"])
                serving_of(detail["instance-id"]).append((started, None))
            except (KeyError, TypeError, ValueError):
                continue  # a report without a started application: nothing serves
        return moto_put_events(self, events)

    FakeTargetGroup.register, FakeTargetGroup.deregister, FakeTargetGroup.health_for = register, deregister, health_for
    EventsBackend.put_events = put_events

    @context.control("elbv2/serving")
    def _serving(payload):
        """``{"instance_id": i-..., "serving": true|false}``: the instance's application serves from now on, or no
        longer; ``{}`` lists what serves."""
        if payload.get("instance_id"):
            intervals, now = serving_of(payload["instance_id"]), context.clock.elapsed()
            if payload.get("serving", True):
                if not serving_at(intervals, now):
                    intervals.append((now, None))
            else:
                intervals[:] = [(since, now if until is None else until) for since, until in intervals]
        return {"serving": context.controls_state.get("target_serving", {})}
