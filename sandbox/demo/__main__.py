"""``make demo``: the Spot interruption drill end to end in the sandbox, with real data.

1. start a private sandbox with its runtime (volumes are loop devices with real filesystems that
   follow the EBS volume; instances boot the instance agent from their user data against an IMDS
   double) and a webhook on loopback that the control plane's SNS topic posts to;
2. ``ansible-playbook playbooks/deploy.yml``: control plane, fleet, agent; the group's first
   instance boots, its fresh volume is formatted, the "started" message arrives;
3. write canary files (SHA-256 recorded) onto the data volume of the running instance;
4. ``ansible-playbook playbooks/drill.yml``: FIS interrupts the instance (the sandbox plays FIS) and
   the real path runs: EventBridge rule -> queue -> the handler from the deployed zip -> the app
   stopped, snapshot, volume released -> the group's replacement -> launch hook -> volume moved or
   restored -> EIP moved -> agent mounts and reports -> success message to the webhook;
5. check the canaries on the replacement, the EIP on the replacement, both messages received.

Run twice: the replacement pinned to the interrupted instance's zone (the volume moves), then to
the other zone (restored from the interruption snapshot). The group's subnets are narrowed for
each case, because in AWS the group chooses the zone and the drill wants both.

The sandbox's clock runs ``--scale`` times faster than modeled AWS time (FIGURES.md's latencies:
launch, attach, boot, the two-minute notice); every figure reported is modeled seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import boto3

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import drill, progress
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.instances import describe_instance
from sandbox import __main__ as sandbox_cli
from sandbox import runtime, scenario
from sandbox.clock import LATENCY
from sandbox.control import Sandbox

from . import timeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT = os.path.join(REPO, ".build", "demo", "report.json")
SERVICE, LINEAGE = "demo-pg", "demo-pgdata"
CANARY_FILES, CANARY_BYTES = 8, 256 * 1024


class Demo:
    def __init__(self, scale, report_path, verbose):
        self.scale, self.report_path, self.verbose = scale, report_path, verbose
        self.started = time.monotonic()
        self.webhook = None  # the operator's webhook (scenario.Webhook), once the sandbox runs

    def say(self, text):
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def eventually(self, what, check, timeout=120.0):
        try:
            return scenario.eventually(what, check, timeout, interval=0.1)
        except scenario.TimedOut as timed_out:
            self.diagnose()
            raise SystemExit(f"demo failed: {timed_out}") from None

    def diagnose(self):
        """What the sandbox knows, printed when a step does not happen: the group, the agents, the handler."""
        try:
            group = self.aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[SERVICE])[
                "AutoScalingGroups"
            ]
            print("group:", [(i["InstanceId"], i["LifecycleState"]) for g in group for i in g["Instances"]])
            for instance in self.box.call("runtime/instances")["instances"]:
                print(
                    "instance",
                    instance["instance_id"],
                    instance["state"],
                    instance["outcome"],
                    "mounted:",
                    instance["mounted"],
                )
                print("   " + (instance.get("log_tail") or "").replace("\n", "\n   ")[-2500:])
            for run in self.box.call("lambda/runs", limit=8)["runs"]:
                print("handler run:", run.get("time"), run.get("error"), (run.get("log") or "")[-700:])
            for name in ("action_errors", "runtime_errors", "eventbridge_delivery_failures"):
                print(name, self.box.records(name)[-5:])
        except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the failure it explains
            print(f"(diagnosis failed: {exc!r})")

    # ---- the steps --------------------------------------------------------------------------
    def start(self, state_dir):
        backing = "loop" if runtime.loop_devices_available() else "directory"
        # The server takes the runtime from its environment; only this sandbox gets it.
        os.environ[runtime.ENVIRONMENT_VARIABLE] = backing
        try:
            record = sandbox_cli.start(state_dir, scale=self.scale)
        finally:
            os.environ.pop(runtime.ENVIRONMENT_VARIABLE)
        self.state_dir, self.endpoint = state_dir, record["endpoint"]
        self.env = sandbox_cli.apply_env(sandbox_cli.sandbox_env(record["endpoint"], state_dir))
        self.box = Sandbox(record["endpoint"])
        session = boto3.session.Session(
            aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name="us-east-1"
        )
        self.aws = lambda name: session.client(name, endpoint_url=record["endpoint"])
        with open(self.env["EC2SPOT_SANDBOX_WORLD"], encoding="utf-8") as handle:
            self.world = json.load(handle)
        self.webhook = scenario.Webhook()  # a new sandbox, a new webhook: an earlier run must not answer for it
        self.say(
            f"sandbox AWS at {record['endpoint']} (clock x{self.scale:g}, volumes on {backing} devices); "
            f"webhook at {self.webhook.url}"
        )

    def variables(self):
        zones = ("us-east-1a", "us-east-1b")
        return {
            "ec2spot_region": "us-east-1",
            "ec2spot_control_plane": {"name": "demo", "log_retention_days": 1, "webhook_endpoints": [self.webhook.url]},
            "ec2spot_services": [
                {
                    "name": SERVICE,
                    "lineage": LINEAGE,
                    "image_id": self.world["image_id"],
                    "instance_types": ["m6i.large", "m5.large", "m6a.large"],
                    "subnet_ids": [self.world["subnets"][zone] for zone in zones],
                    "data_volume": {"size": 20},
                    # The old instance serves until its replacement is up, then one cut-over moves the data.
                    "cutover": "make-before-break",
                    "agent": {
                        "mount_point": "/data",
                        # On an instance these are /data/...; in the sandbox the instance root stands in for /.
                        "app_start_commands": [
                            'echo "started $(date -u +%FT%TZ)" >> "$EC2SPOT_INSTANCE_ROOT/data/app.log"'
                        ],
                        "app_stop_commands": [
                            'echo "stopped $(date -u +%FT%TZ)" >> "$EC2SPOT_INSTANCE_ROOT/data/app.log"'
                        ],
                    },
                }
            ],
        }

    def playbook(self, name, *extra):
        done = subprocess.run(
            ["ansible-playbook", os.path.join(REPO, "playbooks", name), "-e", f"@{self.vars_path}", *extra],
            env=dict(self.env, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg")),
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if self.verbose or done.returncode:
            print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
        if done.returncode:
            raise SystemExit(f"demo failed: {name} exited {done.returncode}")
        self.last_output = done.stdout
        recap = [line for line in done.stdout.splitlines() if line.startswith("localhost")]
        return recap[-1].split(":", 1)[1].split() if recap else []

    def deploy(self):
        self.vars_path = os.path.join(self.state_dir, "deploy-vars.json")
        with open(self.vars_path, "w", encoding="utf-8") as handle:
            json.dump(self.variables(), handle, indent=2)
        self.say("ansible-playbook playbooks/deploy.yml (control plane, fleet, instance agent) ...")
        self.say("  " + " ".join(self.playbook("deploy.yml")))
        first = self.eventually(
            "the first instance's 'started' message", lambda: self.webhook.messages("started", lineage=LINEAGE), 40
        )[0]
        self.say(f"{SERVICE} is up on {first['instance_id']}: {first['summary']}")
        return first["instance_id"]

    def data_dir(self, instance_id):
        described = self.box.call("runtime/instances", instance_id=instance_id)["instances"]
        if not described or not described[0]["mounted"]:
            raise SystemExit(f"demo failed: the data volume is not mounted on {instance_id}")
        return described[0]["mount_point"]

    def write_canaries(self, instance_id, label):
        where = os.path.join(self.data_dir(instance_id), "canaries")
        os.makedirs(where, exist_ok=True)
        written = {}
        for index in range(CANARY_FILES):
            name = f"{label}-{index:02d}.bin"
            payload = os.urandom(CANARY_BYTES)
            with open(os.path.join(where, name), "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            written[name] = hashlib.sha256(payload).hexdigest()
        os.sync()
        return written

    def check_canaries(self, instance_id, expected):
        where = os.path.join(self.data_dir(instance_id), "canaries")
        found = {}
        for name in expected:
            try:
                with open(os.path.join(where, name), "rb") as handle:
                    found[name] = hashlib.sha256(handle.read()).hexdigest()
            except OSError:
                found[name] = None
        return found == expected, sorted(name for name in expected if found[name] != expected[name])

    def dry_run(self, holder):
        """drill.yml --check names the instance it would interrupt and interrupts nothing."""
        self.say("ansible-playbook playbooks/drill.yml --check (a dry run) ...")
        recap = self.playbook("drill.yml", "--check", "-e", f"drill_service={SERVICE}")
        warnings = self.box.events("EC2 Spot Instance Interruption Warning")
        state = self.aws("ec2").describe_instances(InstanceIds=[holder])["Reservations"][0]["Instances"][0]["State"][
            "Name"
        ]
        if holder not in self.last_output:
            raise SystemExit(f"demo failed: the dry run did not name {holder} as the instance it would interrupt")
        if warnings or state != "running" or self.aws("fis").list_experiment_templates()["experimentTemplates"]:
            raise SystemExit(f"demo failed: the dry run changed something ({len(warnings)} warnings, {holder} {state})")
        self.say(f"  {' '.join(recap)}; {holder} would be interrupted, nothing was")

    def pin_group(self, zone):
        self.aws("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=SERVICE, VPCZoneIdentifier=self.world["subnets"][zone]
        )

    def watch_progress(self, holder, stop):
        """Print each recovery step as the handler records it (modeled seconds since the warning)."""
        ec2, warned = self.aws("ec2"), None
        # The holder may itself be the previous drill's replacement: its earlier steps are not news.
        seen = {f"old.{step}" for step in progress.read(describe_instance(ec2, holder))}
        while not stop.is_set():
            try:
                _old, _new, steps = drill.recovery_steps(ec2, LINEAGE, holder)
            except Exception:  # noqa: BLE001 - progress display only
                time.sleep(0.2)
                continue
            warned = progress.time_of(steps["old.warned"]) if warned is None and "old.warned" in steps else warned
            for step in sorted(set(steps) - seen, key=lambda s: progress.stamp_of(steps[s])):
                at = (progress.time_of(steps[step]) - warned).total_seconds() * self.scale if warned else 0.0
                self.say(f"  +{at:6.1f} s  {step:22} {progress.outcome_of(steps[step])[:70]}")
            seen |= set(steps)
            time.sleep(0.2)

    def case(self, holder, zone_of_replacement, az_case, canaries):
        ec2 = self.aws("ec2")
        address = ec2.describe_addresses(Filters=[{"Name": "tag:ec2spot:lineage", "Values": [LINEAGE]}])["Addresses"][0]
        self.pin_group(zone_of_replacement)
        self.say(f"drill ({az_case}): interrupting {holder}; the group may only launch in {zone_of_replacement}")
        report_path = os.path.join(self.state_dir, f"drill-{az_case}.json")
        stop = threading.Event()
        watcher = threading.Thread(target=self.watch_progress, args=(holder, stop), daemon=True)
        watcher.start()
        began = time.monotonic()
        try:
            self.playbook(
                "drill.yml",
                "-e",
                f"drill_service={SERVICE}",
                "-e",
                f"drill_time_scale={self.scale}",
                "-e",
                f"drill_report_path={report_path}",
                "-e",
                "drill_wait_timeout=300",
            )
        finally:
            stop.set()
            watcher.join()
        wall = time.monotonic() - began
        with open(report_path, encoding="utf-8") as handle:
            [recovery] = json.load(handle)["recoveries"]
        replacement = recovery["replacement_instance_id"]
        intact, damaged = self.check_canaries(replacement, canaries)
        on_replacement = (
            ec2.describe_addresses(AllocationIds=[address["AllocationId"]])["Addresses"][0].get("InstanceId")
            == replacement
        )
        messages = {
            "interruption-warning": bool(self.webhook.messages("interruption-warning", instance_id=holder)),
            "recovered": bool(
                self.eventually(
                    "the success message", lambda: self.webhook.messages("recovered", instance_id=replacement), 30
                )
            ),
        }
        result = dict(
            recovery,
            az_case=az_case,
            canary_intact=intact,
            canaries_checked=len(canaries),
            canaries_damaged=damaged,
            eip_on_replacement=on_replacement,
            elastic_ip=address["PublicIp"],
            messages=messages,
            wall_seconds=round(wall, 2),
        )
        self.say(
            f"  {az_case}: replacement {replacement} in {recovery['zones']['replacement']}; {recovery['data']}; "
            f"canaries {'intact' if intact else 'DAMAGED ' + ', '.join(damaged)} ({len(canaries)} files); "
            f"EIP {address['PublicIp']} {'on the replacement' if on_replacement else 'NOT on the replacement'}; "
            f"messages {', '.join(k for k, v in messages.items() if v)}"
        )
        return result

    def run(self):
        state_dir = tempfile.mkdtemp(prefix="ec2spot-demo-")
        try:
            self.start(state_dir)
            holder = self.deploy()
            ec2 = self.aws("ec2")
            first_zone = ec2.describe_instances(InstanceIds=[holder])["Reservations"][0]["Instances"][0]["Placement"][
                "AvailabilityZone"
            ]
            other_zone = "us-east-1b" if first_zone == "us-east-1a" else "us-east-1a"
            self.dry_run(holder)
            canaries, cases = {}, []
            for zone, az_case in ((first_zone, "same-az"), (other_zone, "other-az")):
                canaries.update(self.write_canaries(holder, az_case))
                self.say(
                    f"wrote {CANARY_FILES} canary files ({CANARY_BYTES // 1024} KiB each) onto {holder}'s data volume"
                )
                result = self.case(holder, zone, az_case, dict(canaries))
                cases.append(result)
                holder = result["replacement_instance_id"]
            self.pin_group_both()
            return self.finish(cases)
        finally:
            self.stop(state_dir)

    def stop(self, state_dir):
        """Stop the webhook (if it runs) and the sandbox, and remove the sandbox's state."""
        if self.webhook is not None:
            self.webhook.close()
        sandbox_cli.stop(state_dir)
        time.sleep(0.5)  # the server releases its loop devices as it stops
        shutil.rmtree(state_dir, ignore_errors=True)

    def pin_group_both(self):
        self.aws("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=SERVICE,
            VPCZoneIdentifier=",".join(self.world["subnets"][z] for z in ("us-east-1a", "us-east-1b")),
        )

    def finish(self, cases):
        passed = all(c["canary_intact"] and c["eip_on_replacement"] and all(c["messages"].values()) for c in cases)
        runs = self.box.call("lambda/runs")["runs"]
        cold = [run for run in runs if run.get("environment") == "cold"]
        handler_runs = {
            "invocations": len(runs),
            "cold_starts": len(cold),
            "init_seconds": [run["init_duration"] for run in cold if run.get("init_duration") is not None],
            "errors": sum(1 for run in runs if run.get("error")),
        }
        report = {
            "passed": passed,
            "scale": self.scale,
            "latency_model": dict(LATENCY),
            "wall_seconds": round(time.monotonic() - self.started, 1),
            "handler_runs": handler_runs,
            "cases": cases,
        }
        # The first case's figures at the top level too, for readers that want one run.
        report.update(
            {
                key: cases[0][key]
                for key in ("rto_seconds", "rpo_seconds", "phases", "canary_intact", "eip_on_replacement", "az_case")
            }
        )
        os.makedirs(os.path.dirname(self.report_path), exist_ok=True)
        with open(self.report_path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        text = timeline.text(cases)
        base = os.path.splitext(self.report_path)[0]
        with open(base + ".txt", "w", encoding="utf-8") as handle:
            handle.write(text)
        picture = timeline.png(
            cases, base + ".png", f"ec2spot.autorecover drill in the sandbox (modeled seconds, clock x{self.scale:g})"
        )
        print("\n" + text)
        self.say(
            f"the handler ran {handler_runs['invocations']} times from the deployed zip, {handler_runs['cold_starts']} of them "
            f"cold starts (Lambda reuses a warm execution environment), {handler_runs['errors']} errors"
        )
        self.say(f"report: {self.report_path}; timeline: {base}.txt, {picture}")
        self.say(
            "PASSED: both cases recovered with every canary intact and the EIP on the replacement"
            if passed
            else "FAILED: see the report"
        )
        return 0 if passed else 1


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=10.0, help="modeled seconds per real second")
    parser.add_argument("--report", default=REPORT, help="where the JSON report goes (the .txt and .png beside it)")
    parser.add_argument("--verbose", action="store_true", help="print the playbooks' output")
    args = parser.parse_args(argv)
    return Demo(args.scale, args.report, args.verbose).run()


if __name__ == "__main__":
    sys.exit(main())
