"""Benchmark of the recovery core's moves against the strict sandbox, in modeled AWS time.

Runs the sandbox server in this process on the manual clock with the latency model of
../shared/FIGURES.md (sandbox/clock.py LATENCY), so every figure is deterministic up to
the poll jitter: how long each move takes in AWS time, how much of that is our polling
overhead (time between AWS finishing and the core noticing), and how many API calls it
makes. Run with ``make bench``.
"""

from __future__ import annotations

import statistics
import sys

import boto3

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.addresses import find_address, move_address
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.volumes import move_lineage_volume
from sandbox import server, world
from sandbox.clock import CONTEXT, CoreClock

from . import iam as bench_iam

RUNS = 5


class CallCounter:
    def __init__(self, client):
        self.calls = []
        client.meta.events.register("before-call.*.*", lambda model, **_kw: self.calls.append(model.name))

    def take(self):
        taken, self.calls = self.calls, []
        return taken


def main():
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # IAM enforced, as in every server python -m sandbox starts (the core's moves sign as the administrator here).
    endpoint, stop = server.start_in_thread(scale=0.0, iam_default="enforce")
    session = boto3.session.Session(
        aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name="us-east-1"
    )
    ec2 = session.client("ec2", endpoint_url=endpoint)
    seeded = world.seed(ec2)
    counter = CallCounter(ec2)
    clock = CoreClock()
    results = {}

    def launch(zone, lineage):
        return world.launch(ec2, seeded, zone, {t.LINEAGE: lineage})

    def lineage_on(zone, lineage):
        holder = launch(zone, lineage)
        volume = world.lineage_volume(ec2, lineage, zone, 50)
        ec2.attach_volume(VolumeId=volume, InstanceId=holder, Device="/dev/sdf")
        CONTEXT.advance(10)
        return holder, volume

    def measure(name, action, aws_floor):
        counter.take()
        start = CONTEXT.clock.elapsed()
        action()
        elapsed = CONTEXT.clock.elapsed() - start
        results.setdefault(name, []).append((elapsed, elapsed - aws_floor, len(counter.take())))

    for run in range(RUNS):
        lineage_on("us-east-1a", f"bench-same-{run}")
        target = launch("us-east-1a", f"bench-same-{run}")
        measure(
            "same-AZ move (app stopped)",
            lambda: move_lineage_volume(ec2, f"bench-same-{run}", target, app_stopped=True, clock=clock),
            CONTEXT.latency["ebs_detach"] + CONTEXT.latency["ebs_attach"],
        )

        holder = lineage_on("us-east-1a", f"bench-cross-{run}")[0]
        measure(
            "backup, snapshots only (no wait)", lambda: backup_instance(ec2, holder, f"bench-{run}", clock=clock), 0.0
        )
        CONTEXT.settle()
        ec2.stop_instances(InstanceIds=[holder])
        target = launch("us-east-1b", f"bench-cross-{run}")
        measure(
            "cross-AZ restore from snapshot",
            lambda: move_lineage_volume(ec2, f"bench-cross-{run}", target, clock=clock),
            CONTEXT.latency["ebs_detach"] + CONTEXT.latency["ebs_attach"],
        )

        address = ec2.allocate_address(Domain="vpc")["AllocationId"]
        measure("Elastic IP move", lambda: move_address(ec2, find_address(ec2, allocation_id=address), target), 0.0)
    iam = bench_iam.summary()
    stop()

    print(
        f"Recovery core on the strict sandbox, modeled AWS time (latency model: attach "
        f"{CONTEXT.latency['ebs_attach']:g} s, detach {CONTEXT.latency['ebs_detach']:g} s; {RUNS} runs, median)"
    )
    print(f"{'operation':36} {'AWS time s':>10} {'poll overhead s':>16} {'API calls':>10}")
    for name, samples in results.items():
        elapsed, overhead, calls = (statistics.median(column) for column in zip(*samples))
        print(f"{name:36} {elapsed:10.2f} {overhead:16.2f} {calls:10.0f}")
    print(f"IAM {'enforced' if iam['enforced'] else 'NOT enforced'}: {iam['refusals']} call(s) refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
