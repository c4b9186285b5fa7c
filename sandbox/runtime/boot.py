"""Instances that boot their user data: each instance's power cycles, its IMDS double, and the agent's units.

AWS (EC2 user guide, "Run commands when you launch an instance", "Instance metadata categories", "Instance
lifecycle"):

* ``os_boot`` modeled seconds after a launch (or a start), the instance's user data has its ``write_files`` written
  into the instance root (``cloud_init.py``; once per instance, as cloud-init does). If they carry the instance agent
  (``/usr/local/sbin/ec2spot-agent`` and ``/etc/ec2spot-agent/config.json``), the runtime plays systemd: an IMDSv2
  double for the instance (its id, zone, region, its instance profile's role credentials, its tags when its
  metadata options allow them, and the Spot and rebalance notices the EC2 events rule puts in ``CONTEXT.imds``),
  the agent's ``boot`` (the mount and app units), then its ``watch`` (the watcher unit, restarted when it exits).
  They run as subprocesses of the server with a configuration rewritten for the sandbox
  (``etc/ec2spot-agent/config.sandbox.json``: its paths under the instance root, the IMDS double, the sandbox
  endpoint; on the scaled clock its durations divided by the scale), dummy credentials and no other environment.
  Output goes to ``<instance root>/agent.log``, each boot's outcome to the ``boots`` record.
  ``<instance root>/usr/local/sbin/ec2spot-agent`` becomes a wrapper that runs the program (moved beside it as
  ``ec2spot-agent.py``) with that configuration, so that SSM commands (run in the instance root) can call
  ``ec2spot-agent stop --reason control-plane``. A fleet's user data carries the agent's bootstrap rather than the
  agent (EC2 takes 16 KB): run the same way, it fetches the agent from the sandbox's S3 (path-style at the sandbox
  endpoint) into the instance's state directory, checks its SHA-256 and runs it, as on EC2. The configuration's
  ``sys_block_dir`` is mapped under the instance root too: instances share this host's kernel, and an instance sees
  only its own devices (its by-id names), never the host's or another instance's.
* **termination and stop** are a power cut: the agent's processes are killed, the IMDS double stops, whatever is
  mounted under the instance root is lazily unmounted; at termination the non-root volumes are detached (moto
  detaches them) and their devices released (``ebs_bytes.py``).

The application's start and stop commands run on this host through ``/bin/sh`` with the instance root as working
directory (or ``app_directory`` under it) and ``EC2SPOT_INSTANCE_ROOT`` set: they must be harmless (``echo started >
app.state``); an absolute path reaches the real system.

``InstanceBoot`` is the instance half of the ``Runtime`` (``sandbox/runtime/__init__.py``); ``install`` registers it
at the instance lifecycle's creation, start, stop and termination (``sandbox/instance_lifecycle.py``: after the EC2
events rule, so the state-change events come first).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

from .. import instance_lifecycle as lifecycle
from ..iam import enforce, principals
from ..imds import ImdsDouble
from .cloud_init import UserDataError, cloud_config, user_data_bytes, write_files
from .host import inside, mounted_at, tail, unmount_under

AGENT_PROGRAM = "/usr/local/sbin/ec2spot-agent"
AGENT_PROGRAM_MOVED = "/usr/local/sbin/ec2spot-agent.py"
AGENT_CONFIG = "/etc/ec2spot-agent/config.json"
SANDBOX_CONFIG = "/etc/ec2spot-agent/config.sandbox.json"
OS_BOOT_DEFAULT = 25.8  # context.LATENCY["os_boot"]: launch -> user data runs (FIGURES.md)
# The agent's path settings and its defaults (ec2spot_agent.DEFAULTS), mapped under the instance root.
# sys_block_dir too: the instances share the host's kernel, so each sees only its own by-id names, never the
# host's (or another instance's) block devices, as on EC2.
PATH_KEYS = {
    "mount_point": "/data",
    "run_dir": "/run/ec2spot-agent",
    "state_dir": "/var/lib/ec2spot-agent",
    "by_id_dir": "/dev/disk/by-id",
    "dev_dir": "/dev",
    "sys_block_dir": "/sys/class/block",
    "app_directory": "/",
}
# Its durations (default, least real seconds): divided by the scale on the scaled clock.
DURATION_KEYS = {
    "poll_seconds": (5, 0.05),
    "drain_seconds": (30, 0.0),
    "stop_reserve_seconds": (30, 0.0),
    "device_wait_seconds": (300, 5.0),
    "command_timeout_seconds": (90, 5.0),
}
WATCH_RESTART_SECONDS = 1.0  # real seconds before a watcher that exited is started again (Restart=always)
DUMMY_CREDENTIALS = "sandbox"
INSTANCE_SESSION_SECONDS = 43200  # EC2 rotates instance-profile credentials well before they expire
EXIT_OUTCOMES = {0: "booted", 1: "failed", 2: "refused", 3: "timed-out"}


class InstanceImds(ImdsDouble):
    """The IMDS double of one instance, reading notices through to ``context.imds[instance_id]``."""

    def __init__(self, context, instance_id, values):
        super().__init__(values)
        self.context = context
        self.instance_id = instance_id

    def lookup(self, path):
        notices = self.context.imds.get(self.instance_id) or {}
        with self._lock:
            values = dict(self.values)
        values.update({"meta-data/" + key: value for key, value in list(notices.items())})
        if path in values:
            return 200, values[path]
        if path.endswith("/") or path in ("meta-data", "dynamic"):
            prefix = path.rstrip("/") + "/"
            children = sorted(
                {
                    key[len(prefix) :].split("/")[0] + ("/" if "/" in key[len(prefix) :] else "")
                    for key in values
                    if key.startswith(prefix)
                }
            )
            if children:
                return 200, "\n".join(children)
        return 404, "Not Found"


# ---- one instance ---------------------------------------------------------------------------
class PowerCycle:
    """One run of an instance's operating system: from a launch or start to a stop or termination."""

    def __init__(self, number):
        self.number = number
        self.halted = threading.Event()
        self.guard = threading.Lock()
        self.processes = {}  # "boot" | "watch" -> Popen
        self.imds = None
        self.imds_endpoint = None

    def halt(self):
        with self.guard:
            self.halted.set()
            for process in list(self.processes.values()):
                if process.poll() is None:
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        if self.imds is not None:
            self.imds.stop()
            self.imds_endpoint = None


class InstanceRun:
    """What the runtime knows of one instance across its power cycles: its root, boots, user data, agent."""

    def __init__(self, instance_id, root):
        self.instance_id = instance_id
        self.root = root
        self.log_path = os.path.join(root, "agent.log")
        self.cycles = 0
        self.cycle = None
        self.launched = None
        self.boots = 0
        self.provisioned = False
        self.user_data = {}
        self.config = None
        self.last_boot = None
        self.watch = {"starts": 0, "exit_codes": []}


class InstanceBoot:
    """The instance half of the ``Runtime``: launches and starts boot, stops and terminations cut the power.

    Uses the runtime's ``context``, ``endpoint``, ``backing``, ``instances`` (instance id -> ``InstanceRun``),
    ``plugged``, ``reconcile`` and ``safely``."""

    def _os_boot(self):
        return float(self.context.latency.get("os_boot", OS_BOOT_DEFAULT))

    def _instance(self, instance_id):
        from moto.ec2.exceptions import InvalidInstanceIdError

        try:
            return self.context.backend("ec2").get_instance(instance_id)
        except InvalidInstanceIdError:
            return None

    def _run_of(self, instance_id):
        if instance_id not in self.instances:
            self.instances[instance_id] = InstanceRun(instance_id, self.context.instance_root(instance_id))
        return self.instances[instance_id]

    def launched(self, instance):
        """A launch or a start: the operating system comes up and runs the user data after ``os_boot``."""
        run = self._run_of(instance.id)
        if run.cycle is not None:
            run.cycle.halt()
        run.cycles += 1
        cycle = run.cycle = PowerCycle(run.cycles)
        run.launched = self.context.now()
        self.context.after(
            self._os_boot(),
            lambda: self.safely(self.boot, instance.id, cycle),
            f"runtime: {instance.id} boots (os_boot)",
        )

    def powered_off(self, instance, terminated):
        run = self.instances.get(instance.id)
        if run is not None and run.cycle is not None:
            run.cycle.halt()
            with open(run.log_path, "a", encoding="utf-8") as log:
                log.write(
                    f"=== sandbox: {'terminated' if terminated else 'stopped'} at {self.context.now().isoformat()} (modeled): "
                    "the agent's processes killed\n"
                )
        unmount_under(self.context.instance_root(instance.id))
        if terminated:
            self.reconcile()

    def boot(self, instance_id, cycle):
        run = self.instances.get(instance_id)
        instance = self._instance(instance_id)
        if (
            run is None
            or run.cycle is not cycle
            or cycle.halted.is_set()
            or instance is None
            or instance.state != "running"
        ):
            return
        run.boots += 1
        record = {
            "instance_id": instance_id,
            "boot": run.boots,
            "launched": run.launched.isoformat(),
            "agent_started": self.context.now().isoformat(),
            "os_boot": self._os_boot(),
        }
        try:
            if not run.provisioned:
                run.provisioned = True
                raw = user_data_bytes(instance.user_data)
                run.user_data = {"written": write_files(run.root, cloud_config(raw)) if raw else []}
            shutil.rmtree(os.path.join(run.root, "run"), ignore_errors=True)  # /run is a tmpfs
            original = self._agent_config(run)
            if original is None:
                record.update(
                    outcome="no-agent", reason=f"the user data installed no {AGENT_PROGRAM} and {AGENT_CONFIG}"
                )
                self._finish(run, record)
                return
            cycle.imds = self._imds(instance).start()
            cycle.imds_endpoint = cycle.imds.endpoint
            run.config = self._sandbox_config(run, cycle, original)
            self._write_wrapper(run)
        except (UserDataError, OSError, ValueError) as exc:
            if cycle.imds is not None:
                cycle.imds.stop()
            record.update(outcome=getattr(exc, "outcome", "user-data-error"), reason=str(exc))
            run.user_data["error"] = str(exc)
            self._finish(run, record)
            return
        threading.Thread(
            target=self._supervise, args=(run, cycle, record), name=f"sandbox-runtime-{instance_id}", daemon=True
        ).start()

    def _finish(self, run, record):
        record.setdefault("finished", self.context.now().isoformat())
        run.last_boot = record
        self.context.record("boots", record)
        with open(run.log_path, "a", encoding="utf-8") as log:
            log.write(f"=== sandbox: boot {record['boot']}: {record.get('outcome')} {record.get('reason', '')}\n")

    def _agent_config(self, run):
        program, moved = inside(run.root, AGENT_PROGRAM), inside(run.root, AGENT_PROGRAM_MOVED)
        config_path = inside(run.root, AGENT_CONFIG)
        if not os.path.exists(config_path) or not (os.path.exists(program) or os.path.exists(moved)):
            return None
        if not os.path.exists(moved):
            os.replace(program, moved)
        with open(config_path, encoding="utf-8") as handle:
            try:
                config = json.load(handle)
            except ValueError as exc:
                raise UserDataError(f"{AGENT_CONFIG} is not JSON: {exc}") from exc
        if not isinstance(config, dict):
            raise UserDataError(f"{AGENT_CONFIG} is not a JSON object")
        return config

    def _imds(self, instance):
        from ..rules.ssm import Fleet

        zone = instance.placement.zone
        profile = Fleet(self.context.account_id, self.context.region).profile(instance)
        roles = [role.name for role in getattr(profile, "roles", [])] if profile is not None else []
        tags = {}
        if instance.metadata_options.instance_metadata_tags == "enabled":
            tags = {tag["key"]: tag["value"] for tag in instance.get_tags()}
        values = ImdsDouble.for_instance(instance.id, zone, role=roles[0] if roles else "none", tags=tags).values
        if not roles:  # no instance profile: no credentials, as on EC2
            values = {key: value for key, value in values.items() if not key.startswith("meta-data/iam/")}
        elif enforce.enforcing():
            # EC2 hands the instance its profile role's temporary credentials, session named after the instance
            # (EC2 user guide, "Retrieve security credentials from instance metadata"): the agent signs as that role.
            credentials = principals.assume_role(
                self.context.account_id,
                self.context.region,
                profile.roles[0].arn,
                instance.id,
                INSTANCE_SESSION_SECONDS,
            )
            values["meta-data/iam/security-credentials/" + roles[0]] = json.dumps(
                {"Code": "Success", "Type": "AWS-HMAC", **credentials}
            )
        return InstanceImds(self.context, instance.id, values)

    def _sandbox_config(self, run, cycle, original):
        config = dict(original)
        for key, default in PATH_KEYS.items():
            config[key] = inside(run.root, original.get(key) or default)
        os.makedirs(config["app_directory"], exist_ok=True)
        config["imds_endpoint"] = cycle.imds.endpoint
        config["aws_endpoint_url"] = self.endpoint
        if self.backing == "directory":
            config["allow_directory_devices"] = True
        if self.context.clock.scale:
            for key, (default, least) in DURATION_KEYS.items():
                value = original.get(key, default)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                    config[key] = max(least, self.context.clock.duration(value))
        path = inside(run.root, SANDBOX_CONFIG)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2, sort_keys=True)
        return config

    def agent_environment(self, run):
        """The agent's process environment. While IAM is enforced it has no credentials of its own: the agent takes
        its instance profile's from the IMDS double, as on EC2; otherwise the sandbox's dummy key."""
        credentials = {}
        if not enforce.enforcing():
            credentials = {"AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS, "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS}
        return credentials | {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": run.root,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.context.region,
            "AWS_DEFAULT_REGION": self.context.region,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "EC2SPOT_INSTANCE_ID": run.instance_id,
            "EC2SPOT_INSTANCE_ROOT": run.root,
        }

    def agent_command(self, run, *arguments):
        return [
            sys.executable,
            "-I",
            "-S",
            inside(run.root, AGENT_PROGRAM_MOVED),
            "--config",
            inside(run.root, SANDBOX_CONFIG),
            *arguments,
        ]

    def _write_wrapper(self, run):
        exports = " ".join(
            f"{key}={shlex.quote(value)}" for key, value in self.agent_environment(run).items() if key != "PATH"
        )
        script = (
            "#!/bin/sh\n"
            "# sandbox/runtime/boot.py: the instance agent the user data installed (ec2spot-agent.py beside this file)\n"
            "# with the sandbox's configuration: paths under the instance root, the IMDS double, the sandbox endpoint.\n"
            "unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN\n"
            f"export {exports}\n"
            f"exec {' '.join(shlex.quote(part) for part in self.agent_command(run))} \"$@\"\n"
        )
        path = inside(run.root, AGENT_PROGRAM)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(script)
        os.chmod(path, 0o755)

    # ---- the agent's processes (systemd's part) ----------------------------------------------
    def _spawn(self, run, cycle, role, arguments):
        """Start one agent process of this power cycle (None once it is halted)."""
        with cycle.guard:
            if cycle.halted.is_set():
                return None
            with open(run.log_path, "ab") as log:
                log.write(f"=== sandbox: {role} at {self.context.now().isoformat()} (modeled)\n".encode())
                log.flush()
                process = subprocess.Popen(
                    self.agent_command(run, *arguments),
                    cwd=run.root,
                    env=self.agent_environment(run),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            cycle.processes[role] = process
            return process

    def _supervise(self, run, cycle, record):
        started = time.monotonic()
        process = self._spawn(run, cycle, "boot", ["boot"])
        code = None if process is None else process.wait()
        with self.context.lock:
            record.update(exit_code=code, real_seconds=round(time.monotonic() - started, 3))
            if not isinstance(code, int) or cycle.halted.is_set():
                record["outcome"] = "powered-off"
            elif code < 0:
                record["outcome"] = f"killed (signal {abs(code)})"
            else:
                record["outcome"] = EXIT_OUTCOMES.get(code, "failed")
            self._finish(run, record)
        while not cycle.halted.is_set():  # the watcher unit: after the app unit, whatever its outcome; Restart=always
            process = self._spawn(run, cycle, "watch", ["watch"])
            if process is None:
                return
            run.watch["starts"] += 1
            run.watch["exit_codes"].append(process.wait())
            cycle.halted.wait(WATCH_RESTART_SECONDS)

    def describe(self, run):
        """One instance for the ``runtime/instances`` control: boots, outcome, mount, processes, devices, log tail."""
        instance = self._instance(run.instance_id)
        cycle = run.cycle
        processes = dict(cycle.processes) if cycle is not None else {}
        mount_point = (run.config or {}).get("mount_point")
        last = run.last_boot or {}
        return {
            "instance_id": run.instance_id,
            "state": instance.state if instance is not None else "unknown",
            "root": run.root,
            "boots": run.boots,
            "booted": last.get("exit_code") == 0,
            "exit_code": last.get("exit_code"),
            "outcome": last.get("outcome"),
            "last_boot": last,
            "user_data": run.user_data,
            "mount_point": mount_point,
            "mounted": bool(mount_point) and mounted_at(mount_point),
            "running": sorted(role for role, process in processes.items() if process.poll() is None),
            "watch": dict(run.watch),
            "imds": cycle.imds_endpoint if cycle is not None else None,
            "volumes": sorted(v for v, plug in self.plugged.items() if plug["instance_id"] == run.instance_id),
            "log": run.log_path,
            "log_tail": tail(run.log_path),
        }

    def halt_all(self):
        """Cut the power of every instance (their agents killed, their IMDS doubles stopped)."""
        for run in self.instances.values():
            if run.cycle is not None:
                run.cycle.halt()


def install(context, active):
    """Register at the instance lifecycle: ``active(context)``, the runtime when enabled, boots and powers off."""

    def created(instance):
        runtime = active(context)
        if runtime is not None:
            runtime.launched(instance)

    def started(instance, before):
        runtime = active(context)
        if runtime is not None and lifecycle.changed(lifecycle.INSTANCE_STARTED, instance, before):
            runtime.launched(instance)

    def stopped(instance, before):
        runtime = active(context)
        if runtime is not None and lifecycle.changed(lifecycle.INSTANCE_STOPPED, instance, before):
            runtime.powered_off(instance, terminated=False)

    def terminated(instance, before):
        runtime = active(context)
        if runtime is not None and lifecycle.changed(lifecycle.INSTANCE_TERMINATED, instance, before):
            runtime.powered_off(instance, terminated=True)

    lifecycle.register(
        "runtime",
        {
            lifecycle.INSTANCE_CREATED: created,
            lifecycle.INSTANCE_STARTED: started,
            lifecycle.INSTANCE_STOPPED: stopped,
            lifecycle.INSTANCE_TERMINATED: terminated,
        },
    )
