"""``make bench``: every comparison in one run, on the same sandbox; results as JSON and a markdown table.

1. RTO (modeled): our strategy (unhealthy at once, app stopped, early detach) against the seed's (the
   replacement waits for the old instance to terminate, then attaches), same zone and another zone;
2. the handler's critical path: AWS calls and modeled time from the warning to the snapshot request, and
   from the launch action to the volume attached;
3. a fleet: 100 simultaneous interruptions across 10 groups with EC2 throttling;
4. retention over 1,000 AMIs: ``spot_backup`` (retention alone) against the amazon.aws peer playbook and seed
   001's script: API calls per deleted AMI, wall time;
5. the recovery core's moves (``benchmarks/foundation.py``);
6. which zone the replacements come from, over a fleet of reclaimed Spot pools, with and without zone steering
   (``benchmarks/zones.py``).

    python -m benchmarks [--amis 1000] [--only rto|fleet|retention|zones] [--out .build/bench]

A benchmark reports; nothing here fails on a slow machine. Each module's docstring says what it measures.

IAM is enforced, as in every server ``python -m sandbox`` starts (``EC2SPOT_SANDBOX_IAM=off`` turns it off): the
handler signs as its function role wherever a benchmark runs it (``benchmarks/iam.py``), and the report states
whether IAM was enforced and how many calls it refused (0 when the policies hold).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time

from sandbox import server, world

from . import fleet, iam as bench_iam, recovery, retention, zones

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, ".build", "bench")


def markdown(results):
    lines = [
        "# ec2spot.autorecover benchmarks",
        "",
        f"{results['machine']}; sandbox latency model from FIGURES.md; {results['date']}.",
        "",
        _iam_line(results),
        "",
    ]
    if "rto" in results:
        lines += _rto_lines(results["rto"], results["handler"])
    if "fleet" in results:
        lines += _fleet_lines(results["fleet"])
    if "retention" in results:
        lines += _retention_lines(results["retention"])
    if "zones" in results:
        lines += _zones_lines(results["zones"])
    return "\n".join(lines)


def _iam_line(results):
    """What IAM did: enforced or not, and the refusals of each part (the handler as its function role)."""
    parts = [(name, results[key]["iam"]) for name, key in (("RTO and critical path", "handler"),
             ("fleet", "fleet"), ("zones", "zones"), ("sandbox server overall", "server")) if key in results]  # fmt: skip
    enforced = all(found["enforced"] for _name, found in parts)
    refusals = sum(found["refusals"] for _name, found in parts)
    return (
        f"IAM {'enforced' if enforced else 'NOT enforced (EC2SPOT_SANDBOX_IAM=off)'}: the handler signs as its "
        f"function role; {refusals} call(s) refused ("
        + ", ".join(f"{name} {found['refusals']}" for name, found in parts)
        + ")."
    )


def _target_group_lines(target_group):
    """Make-before-break behind a target group: downtime through the load balancer (and first healthy)."""
    rows = []
    for az_case in ("same-az", "other-az"):
        for case, found in target_group[az_case]["cases"].items():
            before, built = found["hook_completed_at_attach"], found["as_built_hook_completed_on_boot_report"]
            rows.append(
                f"| {az_case} | {case.removeprefix('app_start_')} | {before['downtime_seconds']} "
                f"({before['healthy_after_seconds']}) | {built['downtime_seconds']} ({built['healthy_after_seconds']}) |"
            )
    return [
        "Behind a target group (make-before-break; modeled seconds from the old target's deregistration until "
        "requests reach the replacement, in brackets until it is healthy):",
        "",
        "| zone | application start | launch hook completed at the attach | as built (completed on the boot report) |",
        "|---|---|---|---|",
        *rows,
        "",
        "Target-health durations: "
        + ", ".join(f"{name} {value}" for name, value in target_group["modeled_durations"].items())
        + ".",
        "",
    ]


def _rto_lines(rto, handler):
    strategies, late = rto["strategies"], rto["late_replacement"]
    names = {
        "wait-for-termination": "wait for termination (seed 003)",
        "break-before-make": "break-before-make (stop at the warning, early release)",
        "make-before-break": "make-before-break (serve until the replacement is ready, then cut over)",
    }
    rows = [
        f"| {names[name]} | {found['same-az']['rto_seconds']} | {found['same_az_times_better_than_waiting']} | "
        f"{found['other-az']['rto_seconds']} | {found['other-az']['rpo_seconds']} |"
        for name, found in strategies.items()
    ]
    return [
        "## 1. Downtime (modeled seconds: the service stops serving until it is back at its address)",
        "",
        "Ours stop serving when the handler sends the application's stop; waiting stops at the reclaim.",
        "",
        "| strategy | same AZ | x better than waiting (same AZ) | other AZ | RPO other AZ (s) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "From the warning until the service is back: "
        + ", ".join(f"{r['strategy']} {r['az_case']} {r['warning_to_service_seconds']} s" for r in rto["runs"])
        + ".",
        "",
        f"Replacement late (its zone without capacity until {late['capacity_back_after_warning_seconds']:g} s after "
        "the warning, after the reclaim): "
        + ", ".join(
            f"{name} downtime {late[name]['rto_seconds']} s, back {late[name]['warning_to_service_seconds']} s after "
            f"the warning, RPO {late[name]['rpo_seconds']:g} s ({late[name]['data']})"
            for name in strategies
        )
        + ".",
        "",
        "Modeled durations (seconds unless named): "
        + ", ".join(f"{name} {value:g}" for name, value in rto["modeled_durations"].items())
        + ".",
        "",
        "Other AZ, make-before-break, if the modeled snapshot durations change: "
        + ", ".join(f"{name} {seconds} s" for name, seconds in rto["other_az_sensitivity"].items())
        + ".",
        "",
        *_target_group_lines(rto["target_group"]),
        "## 2. The handler's critical path (modeled)",
        "",
        "| path | AWS calls | modeled seconds |",
        "|---|---|---|",
        f"| warning to snapshot requested | {handler['calls_before_snapshot']} | {handler['seconds_to_snapshot']} |",
        f"| launch action to volume attached (same AZ) | {handler['calls_launch_to_attached']} | {handler['seconds_launch_to_attached']} |",
        f"| launch action to volume attached (other AZ, restore) | {handler['other_az_calls_launch_to_attached']} | "
        f"{handler['other_az_seconds_launch_to_attached']} |",
        f"| cut-over: replacement ready to volume attached (same AZ) | {handler['cutover_calls_ready_to_attached']} | "
        f"{handler['cutover_seconds_ready_to_attached']} |",
        "",
        f"The make-before-break replacement was ready {handler['cutover_ready_after_warning_seconds']} s after the "
        "warning (launched at the warning, user data at os_boot). From the stop sent to the attach requested the "
        f"cut-over makes {handler['cutover_calls_stop_to_attach']} AWS calls in sequence "
        f"({handler['cutover_polls_stop_to_attach']} of them polls of the stop and the detach); the model gives a call "
        "no time of its own, so in AWS each adds its round trip to the downtime.",
        "",
    ]


def _fleet_lines(fleet_result):
    return [
        "## 3. Fleet: simultaneous interruptions",
        "",
        "| interruptions | groups | concurrency | handled | stopped cleanly | throttled (retried) | p50 s | p99 s | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {fleet_result['interruptions']} | {fleet_result['groups']} | {fleet_result['concurrency']} | {fleet_result['handled']} | "
        f"{fleet_result['stopped_cleanly']} | {fleet_result['throttled_requests']} | {fleet_result['p50_seconds']} | "
        f"{fleet_result['p99_seconds']} | {fleet_result['wall_seconds']} |",
        "",
        f"The sandbox served {fleet_result['sandbox_requests_per_second']} requests/s here: handler times are bounded by it.",
        "",
    ]


def _retention_lines(kept):
    return [
        f"## 4. Retention over {kept['amis']} daily AMIs (keep {kept['keep_days']} days)",
        "",
        "Each backup is an AMI and a volume snapshot set. The peer and the seed delete the AMIs with their snapshots and leave "
        "the volume sets; ours deletes those too (one `DeleteSnapshot` each), so its calls per deleted AMI are given for all "
        "its calls and for the AMIs alone.",
        "",
        "| tool | API calls | AMIs deleted | calls per deleted AMI | wall seconds | AMIs left | snapshots left | "
        "backups younger than the period deleted |",
        "|---|---|---|---|---|---|---|---|",
        f"| ours (`spot_backup backup: false`, one task) | {kept['ours_api_calls']} | {kept['ours_images_deleted']} | "
        f"{kept['ours_calls_per_deleted_ami']} (AMIs alone: {kept['ours_ami_calls_per_deleted_ami']}) | {kept['ours_seconds']} | "
        f"{kept['ours_images_left']} | {kept['ours_snapshots_left']} | {kept['ours_recent_deleted']} |",
        f"| peer (`ec2_ami_info` + `ec2_ami state=absent` loop) | {kept['peer_api_calls']} | {kept['peer_images_deleted']} | "
        f"{kept['peer_calls_per_deleted_ami']} | {kept['peer_seconds']} | {kept['peer_images_left']} | {kept['peer_snapshots_left']} | "
        f"{kept['peer_recent_deleted']} |",
        f"| seed 001 script (AWS CLI) | {kept['seed_script_api_calls']} | {kept['seed_images_deleted']} | "
        f"{kept['seed_script_calls_per_deleted_ami']} | {kept['seed_script_seconds']} | {kept['seed_images_left']} | "
        f"{kept['seed_snapshots_left']} | {kept['seed_recent_deleted']} |",
        "",
        "Ours by operation: "
        + ", ".join(f"{name} {count}" for name, count in sorted(kept["ours_calls_by_operation"].items()))
        + ".",
        "",
    ]


def _zones_lines(found):
    rows = [
        f"| {name} | {run['interruptions']} | {run['data_zone_kept']} ({run['data_zone_kept_percent']} %) | "
        f"{run['very_volume_moved']} | {run['restored_from_snapshot']} | {run['not_recovered']} | "
        f"{run['replacement_in_the_interrupted_pool']} |"
        for name, run in found["runs"].items()
    ]
    return [
        "## 6. The data's zone kept (make-before-break, Spot pools reclaimed one after another)",
        "",
        f"{found['groups']} groups of one over {len(found['zones'])} zones x {len(found['types'])} Spot types "
        f"({', '.join(found['types'])}), the data spread over the zones; {found['rounds']} pools reclaimed in turn "
        f"(seeded), each without capacity for {found['avoid_seconds']:g} s. Two readings of Auto Scaling's balance "
        "while it replaces an instance launch-first (does the instance being replaced still count in its zone?): "
        "AWS documents neither, steering depends on neither.",
        "",
        "| run | interruptions | replacement in the data's zone | very volume moved | restored from a snapshot | "
        "not recovered | replacement in the interrupted pool |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--amis", type=int, default=1000, help="daily AMIs per retention tool")
    parser.add_argument("--out", default=OUT, help="directory for results.json and results.md")
    parser.add_argument(
        "--only",
        choices=("rto", "fleet", "retention", "zones"),
        help="run one comparison (RTO includes the handler's path)",
    )
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }

    if args.only in (None, "rto"):
        print("1-2. RTO and the handler's critical path (in-process, manual clock) ...", flush=True)
        results["rto"], results["handler"] = recovery.run()

    if args.only in (None, "zones"):
        print("6. the data's zone over a fleet of reclaimed Spot pools, steered and not (in-process) ...", flush=True)
        results["zones"] = zones.run()

    state_dir = tempfile.mkdtemp(prefix="ec2spot-bench-")
    endpoint, stop = server.start_in_thread(scale=1.0, iam_default="enforce")
    try:
        from sandbox import __main__ as sandbox_cli

        env = sandbox_cli.sandbox_env(endpoint, state_dir)
        import boto3

        seeded = world.seed(
            boto3.client(
                "ec2",
                region_name="us-east-1",
                endpoint_url=endpoint,
                aws_access_key_id="sandbox",
                aws_secret_access_key="sandbox",
            )
        )
        with open(env["EC2SPOT_SANDBOX_WORLD"], "w", encoding="utf-8") as handle:
            json.dump(seeded, handle)
        if args.only in (None, "fleet"):
            print("3. 100 interruptions across 10 groups, EC2 throttled ...", flush=True)
            results["fleet"] = fleet.run(endpoint, scale=1.0)
        if args.only in (None, "retention"):
            print(f"4. retention over {args.amis} AMIs: ours, the amazon.aws peer, seed 001's script ...", flush=True)
            results["retention"] = retention.run(endpoint, state_dir, args.amis)
        # Every call the server authorised, the fleet's handlers' and the retention tools' (the administrator).
        results["server"] = {"iam": bench_iam.summary()}
    finally:
        stop()
        shutil.rmtree(state_dir, ignore_errors=True)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2, default=str)
    table = markdown(results)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table)
    print(f"results: {os.path.join(args.out, 'results.json')}, {os.path.join(args.out, 'results.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
