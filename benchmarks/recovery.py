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

IAM is enforced while the handler runs (``benchmarks/iam.py``): it signs as the control plane's function role, its
policy rendered for the service, as a Lambda environment would (the world's own set-up and the benchmark's reads
sign as the test double's key, with enforcement off between the handler's invocations). The service's address
carries the lineage's tag, as the fleet role tags it.
"""

from __future__ import annotations

import contextlib

import boto3
from moto import mock_aws

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance
from sandbox import rules as sandbox_rules, scenario as scenario_module, world
from sandbox.clock import CONTEXT, CoreClock
from sandbox.iam import enforce
from sandbox.rules import ec2_events
from sandbox.scenario import LINEAGE, SERVICES, World, warning

from . import iam as bench_iam

AGENT_START = 1.0  # modeled seconds for the agent's mount and application start
NIGHTLY_BACKUP_AGE = 12 * 3600.0


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


def handler_as_function_role(scenario, enforced):
    """The world's handler, signing as its control plane's function role; its clients (for the call log)."""
    control_plane = scenario.topic.rsplit(":", 1)[1]  # the control plane is called after its topic
    service = {"name": scenario.name, "lineage": scenario.lineage, "group": scenario.group}
    role = bench_iam.create_function_role(scenario.clients["iam"], control_plane, [service])
    with as_function_role(enforced):
        session = bench_iam.handler_session(role, control_plane)
    clients = {name: bench_iam.handler_client(session, name) for name in SERVICES}
    handler = scenario_module.handler(scenario.config, clients, scenario.handler.clock)
    return handler, clients


def one_recovery(strategy, az_case, enforced):
    with mock_aws():
        CONTEXT.reset()
        ec2 = boto3.client("ec2", region_name="us-east-1", config=RETRY_CONFIG)
        seeded = world.seed(ec2)
        scenario = World(seeded)
        ec2.create_tags(Resources=[scenario.address["AllocationId"]], Tags=[{"Key": t.LINEAGE, "Value": LINEAGE}])
        handler, handler_clients = handler_as_function_role(scenario, enforced)
        # The nightly backup (seed 001) both strategies have, twelve hours old.
        backup_instance(ec2, scenario.first, "pgdata-nightly", clock=CoreClock())
        CONTEXT.advance(NIGHTLY_BACKUP_AGE)
        if az_case == "other-az":
            scenario.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=scenario.group, VPCZoneIdentifier=seeded["subnets"]["us-east-1b"]
            )
        log = CallLog(handler_clients)
        warned = CONTEXT.clock.elapsed()
        ec2_events.interrupt(scenario.first)
        figures = {}
        if strategy == "ours":
            with as_function_role(enforced):
                handler.handle(warning(scenario.first))
            calls = log.since(warned)
            index, at = _progress_at(calls, "snapshot")
            figures["calls_before_snapshot"] = index
            figures["seconds_to_snapshot"] = round(at - warned, 2)
            down = _progress_at(calls, "stopped")[1]
        else:
            CONTEXT.advance(CONTEXT.latency["spot_notice_lead"])  # reclaimed at the notice time
            down = warned + CONTEXT.latency["spot_notice_lead"]
        actions = scenario.pending_launches()
        if not actions:
            raise RuntimeError(f"{strategy}/{az_case}: the group launched no replacement")
        launched = CONTEXT.clock.elapsed() if strategy != "ours" else warned  # ours: launched when marked unhealthy
        start = CONTEXT.clock.elapsed()
        with as_function_role(enforced):
            handler.handle(scenario.launch_event(actions[0]))
        calls = log.since(start)
        index, attached = _progress_at(calls, "attached")
        address = _progress_at(calls, "address")[1] or attached
        figures["calls_launch_to_attached"] = index
        figures["seconds_launch_to_attached"] = round(attached - start, 2)
        app_started = max(attached, launched + CONTEXT.latency["os_boot"]) + AGENT_START
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
            if strategy == "ours"
            else (0.0 if "same volume" in data else round(NIGHTLY_BACKUP_AGE + CONTEXT.latency["spot_notice_lead"], 1)),
        )


def run():
    sandbox_rules.install()
    enforce.install()
    enforced = bench_iam.enforced_by_default()
    CONTEXT.clock.set_scale(0.0)
    runs = [
        one_recovery(strategy, az_case, enforced)
        for az_case in ("same-az", "other-az")
        for strategy in ("ours", "wait-for-termination")
    ]
    by = {(r["strategy"], r["az_case"]): r for r in runs}
    ours, seed = by[("ours", "same-az")], by[("wait-for-termination", "same-az")]
    rto = {
        "ours_seconds": ours["rto_seconds"],
        "wait_for_termination_seconds": seed["rto_seconds"],
        "ratio": round(seed["rto_seconds"] / ours["rto_seconds"], 2),
        "other_az": {
            "ours_seconds": by[("ours", "other-az")]["rto_seconds"],
            "wait_for_termination_seconds": by[("wait-for-termination", "other-az")]["rto_seconds"],
            "ours_rpo_seconds": by[("ours", "other-az")]["rpo_seconds"],
            "wait_for_termination_rpo_seconds": by[("wait-for-termination", "other-az")]["rpo_seconds"],
        },
        "runs": runs,
    }
    handler = {
        "calls_before_snapshot": ours["calls_before_snapshot"],
        "seconds_to_snapshot": ours["seconds_to_snapshot"],
        "calls_launch_to_attached": ours["calls_launch_to_attached"],
        "seconds_launch_to_attached": ours["seconds_launch_to_attached"],
        "other_az_calls_launch_to_attached": by[("ours", "other-az")]["calls_launch_to_attached"],
        "other_az_seconds_launch_to_attached": by[("ours", "other-az")]["seconds_launch_to_attached"],
        "iam": {
            "enforced": enforced,
            "refusals": sum(r["iam"]["refusals"] for r in runs),
            "refused": [line for r in runs for line in r["iam"]["refused"]][:5],
            "unmodelled": sorted({action for r in runs for action in r["iam"]["unmodelled"]}),
        },
    }
    return rto, handler
