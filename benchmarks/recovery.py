"""RTO of two strategies, and the handler's critical path, in modeled AWS time (manual clock).

The handler runs in-process against moto with the sandbox's rules (the same world the handler's unit
tests use, ``sandbox/scenario.py``), on the manual clock: every wait the handler makes advances modeled
time by the latency model (SSM stop, detach, attach, snapshot completion), so the figures are
deterministic. What no process plays here is modeled from the same figures: the replacement's
operating system is up ``os_boot`` (25.8 s) after its launch, and the agent's mount and application
start take ``AGENT_START`` (the agent tests measure 0.1-0.3 s; 1 s is used).

* **ours**: the handler acts on the warning (unhealthy at once, so the group launches the replacement
  now; the app stopped through SSM; a snapshot; the volume detached early), then the replacement's
  launch hook gets the volume (moved, or restored from that snapshot in another zone) and the address.
* **wait for termination** (seed 003's shape): nothing happens on the warning; the instance is
  reclaimed at the notice time, the group replaces it, and the launch hook attaches what is left: the
  volume in the same zone, or in another zone the newest snapshot, the nightly backup (seed 001).

Downtime (RTO) is from the moment the service stops serving (ours: the app stopped; the seed's: the
reclaim) until the replacement's app started with the address moved.

Behind a target group (``target_group``, issue 20), the downtime seen through the load balancer is from the old target
leaving service (its agent deregisters it first thing in its stop: the stop sent plus SSM's delivery, ``ssm_pending``)
until requests reach the replacement's application. It is computed, not run: the recovery timeline above (the launch
hook completed, the application started) through the target-health model's own functions
(``sandbox/rules/target_health.py``: ``served_from``, one source of the rules), for Auto Scaling's registration at
InService when the launch hook is completed once the data is attached (before the application starts; the agent's
own registration then comes second), and as built (``launch.hold_for_start``: the hook of a group behind target
groups completed on the boot report, so the agent registers first, the moment the application has started), each
over application start times from the nominal ``AGENT_START`` to minutes (a database replaying its log).

IAM is enforced while the handler runs (``benchmarks/iam.py``): it signs as the control plane's function role, its
policy rendered for the service, as a Lambda environment would (the world's own set-up and the benchmark's reads
sign as the test double's key, with enforcement off between the handler's invocations). The service's address
carries the lineage's tag, as the fleet role tags it.
"""

from __future__ import annotations

import contextlib
import random

import boto3
from moto import mock_aws

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance
from sandbox import rules as sandbox_rules, scenario as scenario_module, world
from sandbox.clock import CONTEXT, LATENCY, CoreClock
from sandbox.iam import enforce
from sandbox.rules import capacity, ec2_events, target_health
from sandbox.scenario import LINEAGE, SERVICES, World, warning

from . import iam as bench_iam

AGENT_START = 1.0  # modeled seconds for the agent's mount and application start
# A ready agent looks for the device every 0.2 s (ec2spot_agent.py, READY_DEVICE_LOOK): at most that long to see it.
AGENT_DEVICE_LOOK = 0.2
WAIT_FOR_TERMINATION, BREAK_BEFORE_MAKE, MAKE_BEFORE_BREAK = (
    "wait-for-termination",
    "break-before-make",
    "make-before-break",
)
STRATEGIES = (WAIT_FOR_TERMINATION, BREAK_BEFORE_MAKE, MAKE_BEFORE_BREAK)
POLLS = ("GetCommandInvocation", "DescribeVolumes")  # what the cut-over's waits repeat
LATE_CAPACITY = 150.0  # seconds after the warning the late replacement's capacity returns: after the reclaim
SENSITIVITY = {
    "snapshots take twice as long": {"snapshot_base": 60.0, "snapshot_per_gib": 2.0},
    "twice the data changes": {"volume_write_mib_per_second": 10.0},
}
NIGHTLY_BACKUP_AGE = 12 * 3600.0
# Application start times (mount done to serving) the target-group figures are given for: the nominal AGENT_START, and
# services that take longer to answer (a cache warming, a database replaying its write-ahead log).
APP_STARTS = (AGENT_START, 20.0, 45.0, 120.0)


class CallLog:
    """Every API call of the handler's clients, with the modeled time it was made."""

    def __init__(self, clients):
        self.calls = []
        for client in clients.values():
            client.meta.events.register("provide-client-params.*.*", self._record)

    def _record(self, params, model, **_kwargs):
        self.calls.append((CONTEXT.clock.elapsed(), model.name, params))

    def since(self, start):
        return [call for call in self.calls if call[0] >= start]


def _progress_at(calls, step):
    """Index and time of the call that recorded progress ``step``."""
    for index, (when, name, params) in enumerate(calls):
        if name == "CreateTags" and any(tag["Key"] == progress.PROGRESS + step for tag in params.get("Tags", [])):
            return index, when
    return None, None


@contextlib.contextmanager
def as_function_role(enforced):
    """IAM enforced (when ``enforced``) while the handler runs, off again for the world's own calls."""
    enforce.set_enforcing(enforced)
    try:
        yield
    finally:
        enforce.set_enforcing(False)


def handler_as_function_role(scenario, enforced, cutover=None):
    """The world's handler, signing as its control plane's function role; its clients (for the call log).
    ``cutover``: the service's ``cutover`` setting (the control plane's queue is then made, where its deadline goes)."""
    control_plane = scenario.topic.rsplit(":", 1)[1]  # the control plane is called after its topic
    if cutover:
        sqs = scenario.clients["sqs"]
        url = sqs.create_queue(QueueName=f"{control_plane}-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        scenario.configure(queue_arn=arn, cutover=cutover)
    service = {"name": scenario.name, "lineage": scenario.lineage, "group": scenario.group}
    role = bench_iam.create_function_role(scenario.clients["iam"], control_plane, [service])
    with as_function_role(enforced):
        session = bench_iam.handler_session(role, control_plane)
    clients = {name: bench_iam.handler_client(session, name) for name in SERVICES}
    handler = scenario_module.handler(scenario.config, clients, scenario.handler.clock)
    return handler, clients


def _call_at(calls, operation):
    """Index and time of the first call of ``operation`` in ``calls``."""
    for index, (when, name, unused_params) in enumerate(calls):
        if name == operation:
            return index, when
    return None, None


def ready_event(instance_id, lineage=LINEAGE, service="pg"):
    """What the replacement's agent puts on the bus when it has booted and no data volume is attached to it."""
    return scenario_module.envelope(
        "ec2spot.autorecover",
        "EC2Spot Replacement Ready",
        {
            "instance-id": instance_id,
            "lineage": lineage,
            "service": service,
            "waiting-since": CONTEXT.now().isoformat(),
        },
    )


def _deliver_deadline(scenario, handler, enforced):
    """The cut-over's deadline message, once its delay has passed, handled as the queue would hand it over."""
    sqs = scenario.clients["sqs"]
    url = sqs.get_queue_url(QueueName=f"{scenario.topic.rsplit(':', 1)[1]}-events")["QueueUrl"]
    for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        with as_function_role(enforced):
            handler.handle(message["Body"])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _first_launch(scenario, limit=900.0):
    """The group's first pending launch, advancing the modeled clock a second at a time (the launch's time is known
    to the second) until there is one."""
    waited = 0.0
    while not scenario.pending_launches():
        if waited >= limit:
            raise RuntimeError(f"the group launched no replacement within {limit:g} s")
        CONTEXT.advance(1.0)
        waited += 1.0
    return scenario.pending_launches()[0]


def one_recovery(strategy, az_case, enforced, late_capacity=None, latency=None):
    """One interruption recovered by ``strategy`` with the replacement in the data's zone or another (``az_case``);
    ``late_capacity``: the group's zone has no capacity from the warning until this many seconds after it;
    ``latency``: latency-model values changed for this run (a sensitivity)."""
    # The core's polls are jittered (aws.wait_until): seeded, so that every run of the bench gives the same figures.
    random.seed(f"{strategy}/{az_case}/{late_capacity}/{sorted((latency or {}).items())}")
    with mock_aws():
        CONTEXT.reset()
        CONTEXT.latency.update(latency or {})
        ec2 = boto3.client("ec2", region_name="us-east-1", config=RETRY_CONFIG)
        seeded = world.seed(ec2)
        scenario = World(seeded)
        ec2.create_tags(Resources=[scenario.address["AllocationId"]], Tags=[{"Key": t.LINEAGE, "Value": LINEAGE}])
        handler, handler_clients = handler_as_function_role(
            scenario, enforced, cutover="make-before-break" if strategy == MAKE_BEFORE_BREAK else None
        )
        # The nightly backup (seed 001) every strategy has, twelve hours old.
        backup_instance(ec2, scenario.first, "pgdata-nightly", clock=CoreClock())
        CONTEXT.advance(NIGHTLY_BACKUP_AGE)
        if az_case == "other-az":
            scenario.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=scenario.group, VPCZoneIdentifier=seeded["subnets"]["us-east-1b"]
            )
        log = CallLog(handler_clients)
        if late_capacity:
            zone = "us-east-1b" if az_case == "other-az" else "us-east-1a"
            CONTEXT.call_control("ec2/capacity", {"zone": zone, "available": False})
            CONTEXT.after(
                late_capacity,
                lambda: CONTEXT.call_control("ec2/capacity", {"zone": zone, "available": True}),
                "capacity returns",
            )
        warned = CONTEXT.clock.elapsed()
        ec2_events.interrupt(scenario.first)
        figures = {}
        if strategy in (BREAK_BEFORE_MAKE, MAKE_BEFORE_BREAK):
            with as_function_role(enforced):
                handler.handle(warning(scenario.first))
            calls = log.since(warned)
            index, at = _progress_at(calls, "presnapshot" if strategy == MAKE_BEFORE_BREAK else "snapshot")
            figures["calls_before_snapshot"] = index
            figures["seconds_to_snapshot"] = round(at - warned, 2)
        else:
            CONTEXT.advance(CONTEXT.latency["spot_notice_lead"])  # reclaimed at the notice time
        if strategy == MAKE_BEFORE_BREAK and late_capacity:
            # No replacement by the deadline: the fallback hand-off before the reclaim.
            armed = progress.read_outcome(progress.read(scenario.instance(scenario.first)), "armed")
            CONTEXT.advance((armed.cutover_by - CONTEXT.now()).total_seconds() + 1)
            _deliver_deadline(scenario, handler, enforced)
        action = _first_launch(scenario)
        # Ours: launched when marked unhealthy, at the warning (unless capacity was late); the seed's: when the reclaim
        # let the group replace it.
        launched = warned if strategy != WAIT_FOR_TERMINATION and not late_capacity else CONTEXT.clock.elapsed()
        actions = [action]
        start = CONTEXT.clock.elapsed()
        with as_function_role(enforced):
            handler.handle(scenario.launch_event(actions[0]))
        if strategy == MAKE_BEFORE_BREAK and not late_capacity:
            # Held until its agent, booted, says it is ready (the agent's first look is when user data runs).
            CONTEXT.advance(max(0.0, launched + CONTEXT.latency["os_boot"] - CONTEXT.clock.elapsed()))
            figures["ready_after_warning_seconds"] = round(CONTEXT.clock.elapsed() - warned, 1)
            start = CONTEXT.clock.elapsed()
            with as_function_role(enforced):
                handler.handle(ready_event(actions[0]["instance_id"]))
        calls = log.since(start)
        index, attached = _progress_at(calls, "attached")
        address = _progress_at(calls, "address")[1] or attached
        figures["calls_launch_to_attached"] = index
        figures["seconds_launch_to_attached"] = round(attached - start, 2)
        if strategy == MAKE_BEFORE_BREAK:
            # The cut-over's calls in sequence from the stop sent to the attach requested: in AWS each adds its round
            # trip (not modeled here), polls included.
            since_stop = log.since(_call_at(log.since(warned), "SendCommand")[1])
            attach_index = _call_at(since_stop, "AttachVolume")[0]
            figures["calls_stop_to_attach"] = attach_index
            figures["polls_stop_to_attach"] = sum(
                1 for _when, name, _params in since_stop[:attach_index] if name in POLLS
            )
        if strategy == WAIT_FOR_TERMINATION:
            down = warned + CONTEXT.latency["spot_notice_lead"]  # the reclaim
        else:
            # The service stops serving when the handler sends the application's stop, not when the stop is done.
            down = _call_at(log.since(warned), "SendCommand")[1]
        # The device appears on the replacement when EC2 has attached the volume (the AttachVolume call plus the
        # modeled attach), whenever the handler's own poll notices it.
        device_at = _call_at(calls, "AttachVolume")[1] + CONTEXT.latency["ebs_attach"]
        if strategy == MAKE_BEFORE_BREAK:
            # The agent, waiting since it said it was ready, sees the device within one look at /dev.
            app_started = device_at + AGENT_DEVICE_LOOK + AGENT_START
        else:
            app_started = max(device_at, launched + CONTEXT.latency["os_boot"]) + AGENT_START
        if strategy == MAKE_BEFORE_BREAK:
            # For the target-group figures: when Auto Scaling puts the replacement InService (and so registers it in
            # the group's target groups: the launch hook completed), when the agent's mount was done, and when the old
            # target left (its agent deregisters it first thing in the stop SSM delivers).
            figures["timeline"] = {
                "old_target_left": round(down + CONTEXT.latency["ssm_pending"] - down, 2),
                "in_service": round(_call_at(calls, "CompleteLifecycleAction")[1] - down, 2),
                "mounted": round(app_started - AGENT_START - down, 2),
            }
        replacement = scenario.instance(actions[0]["instance_id"])
        data = progress.outcome_of(progress.read(replacement).get("attached", ""))
        return dict(
            figures,
            iam=bench_iam.summary() | {"enforced": enforced},
            strategy=strategy,
            az_case=az_case,
            data=data,
            rto_seconds=round(max(app_started, address) - down, 1),
            warning_to_service_seconds=round(max(app_started, address) - warned, 1),
            rpo_seconds=0.0
            if strategy != WAIT_FOR_TERMINATION
            else (0.0 if "same volume" in data else round(NIGHTLY_BACKUP_AGE + CONTEXT.latency["spot_notice_lead"], 1)),
        )


def target_group_downtime(by, settings=None, latency=None):
    """Downtime through the load balancer, per zone case and application start time, for each registration order
    (see the module's docstring): the recovery runs' timelines through ``target_health.served_from``."""
    settings = settings or target_health.Settings()
    latency = target_health.REGISTRATION_LATENCY if latency is None else latency
    found = {}
    for az_case in ("same-az", "other-az"):
        timeline = by[(MAKE_BEFORE_BREAK, az_case)]["timeline"]
        left, in_service, mounted = timeline["old_target_left"], timeline["in_service"], timeline["mounted"]
        cases = {}
        for app_start in APP_STARTS:
            started = mounted + app_start
            # The launch action completed at the attach (before launch.hold_for_start): Auto Scaling registers the
            # replacement at InService, before its application starts, and the agent's registration is a no-op.
            # As built, the action of a group behind target groups waits for the boot report: the agent registers
            # first, the moment the application has started.
            orders = {
                "hook_completed_at_attach": min(in_service, started),
                "as_built_hook_completed_on_boot_report": started,
            }
            cases[f"app_start_{app_start:g}s"] = {
                "app_started": round(started, 2),
                **{
                    order: {
                        "registered": round(registered, 2),
                        "downtime_seconds": round(
                            target_health.served_from(registered, settings, started, latency) - left, 1
                        ),
                        "healthy_after_seconds": round(
                            target_health.served_from(registered, settings, started, latency, alone=False) - left, 1
                        ),
                    }
                    for order, registered in orders.items()
                },
            }
        found[az_case] = {"timeline": timeline, "cases": cases}
    found["modeled_durations"] = {
        "health_check_interval": settings.interval,
        "healthy_threshold": settings.healthy_threshold,
        "unhealthy_threshold": settings.unhealthy_threshold,
        "elb_registration": latency,
        "ssm_pending": LATENCY["ssm_pending"],
        "app_starts": list(APP_STARTS),
    }
    return found


def run():
    sandbox_rules.install()
    enforce.install()
    enforced = bench_iam.enforced_by_default()
    CONTEXT.clock.set_scale(0.0)
    runs = [one_recovery(strategy, az_case, enforced) for az_case in ("same-az", "other-az") for strategy in STRATEGIES]
    by = {(r["strategy"], r["az_case"]): r for r in runs}
    waiting = by[(WAIT_FOR_TERMINATION, "same-az")]["rto_seconds"]
    rto = {
        "strategies": {
            strategy: {
                az_case: {
                    "rto_seconds": by[(strategy, az_case)]["rto_seconds"],
                    "rpo_seconds": by[(strategy, az_case)]["rpo_seconds"],
                    "warning_to_service_seconds": by[(strategy, az_case)]["warning_to_service_seconds"],
                }
                for az_case in ("same-az", "other-az")
            }
            | {"same_az_times_better_than_waiting": round(waiting / by[(strategy, "same-az")]["rto_seconds"], 2)}
            for strategy in STRATEGIES
        },
        "runs": runs,
    }
    # The replacement late: its zone has no capacity until after the reclaim (LATE_CAPACITY after the warning).
    late = {
        strategy: one_recovery(strategy, "same-az", enforced, late_capacity=LATE_CAPACITY) for strategy in STRATEGIES
    }
    rto["late_replacement"] = {
        "capacity_back_after_warning_seconds": LATE_CAPACITY,
        **{
            strategy: {
                "rto_seconds": found["rto_seconds"],
                "rpo_seconds": found["rpo_seconds"],
                "warning_to_service_seconds": found["warning_to_service_seconds"],
                "data": found["data"],
            }
            for strategy, found in late.items()
        },
    }
    # How the other zone's figure moves when snapshots take twice as long, or twice as much data changes.
    rto["other_az_sensitivity"] = {
        name: one_recovery(MAKE_BEFORE_BREAK, "other-az", enforced, latency=changed)["rto_seconds"]
        for name, changed in SENSITIVITY.items()
    } | {"nominal": by[(MAKE_BEFORE_BREAK, "other-az")]["rto_seconds"]}
    rto["target_group"] = target_group_downtime(by)
    # Every modeled duration these figures depend on (sandbox/clock.py LATENCY, and this module's own).
    rto["modeled_durations"] = {
        key: LATENCY.get(key, capacity.RETRY_SECONDS)  # the group's retry: the capacity rule's default
        for key in (
            "spot_notice_lead",
            "os_boot",
            "ssm_pending",
            "ssm_command",
            "ebs_detach",
            "ebs_attach",
            "snapshot_base",
            "snapshot_per_gib",
            "volume_write_mib_per_second",
            "asg_launch_retry",
        )
    } | {
        "agent_start": AGENT_START,
        "agent_device_look": AGENT_DEVICE_LOOK,
        "cutover_reserve": 40,
        "data_volume_gib": 20,
        "nightly_backup_age": NIGHTLY_BACKUP_AGE,
    }
    bbm, mbb = by[(BREAK_BEFORE_MAKE, "same-az")], by[(MAKE_BEFORE_BREAK, "same-az")]
    handler = {
        "calls_before_snapshot": bbm["calls_before_snapshot"],
        "seconds_to_snapshot": bbm["seconds_to_snapshot"],
        "calls_launch_to_attached": bbm["calls_launch_to_attached"],
        "seconds_launch_to_attached": bbm["seconds_launch_to_attached"],
        "other_az_calls_launch_to_attached": by[(BREAK_BEFORE_MAKE, "other-az")]["calls_launch_to_attached"],
        "other_az_seconds_launch_to_attached": by[(BREAK_BEFORE_MAKE, "other-az")]["seconds_launch_to_attached"],
        "cutover_calls_ready_to_attached": mbb["calls_launch_to_attached"],
        "cutover_seconds_ready_to_attached": mbb["seconds_launch_to_attached"],
        "cutover_ready_after_warning_seconds": mbb["ready_after_warning_seconds"],
        "cutover_calls_stop_to_attach": mbb["calls_stop_to_attach"],
        "cutover_polls_stop_to_attach": mbb["polls_stop_to_attach"],
        "iam": {
            "enforced": enforced,
            "refusals": sum(r["iam"]["refusals"] for r in runs),
            "refused": [line for r in runs for line in r["iam"]["refused"]][:5],
            "unmodelled": sorted({action for r in runs for action in r["iam"]["unmodelled"]}),
        },
    }
    return rto, handler
