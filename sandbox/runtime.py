"""The parts of EC2 that moto does not play: volumes with real bytes, instances that boot their user data.

moto keeps EC2's state but runs nothing: a volume has no bytes, an instance no operating system.
The runtime adds, on the sandbox's one modeled clock and only once enabled (``POST
/_sandbox/runtime/enable {"backing": "loop" | "directory", "volume_mib": 64}``, or
``EC2SPOT_SANDBOX_RUNTIME=loop|directory`` when the server starts):

* **EBS volumes with bytes** (EBS user guide, "Attach a volume", "Create snapshots", "Create a
  volume from a snapshot"): each volume's bytes live in ``<state_dir>/ebs/<volume>.img``, a
  sparse file of ``min(size, volume_mib)`` MiB made on first need (the modeled GiB are not
  allocated). When an attachment becomes ``attached`` (the EBS rule's modeled attach time, or at
  once for moto's own attachments at launch) a loop device is set up over it and the instance's
  stand-in gets the name udev gives the volume on a Nitro instance,
  ``<instance root>/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_<volume id without dash>``.
  When it is detached (``DetachVolume`` after the modeled detach time, or the instance's
  termination) the name goes, whatever is mounted from the device is lazily unmounted, as when a
  disk is pulled, and the loop device is released. The bytes stay with the volume and follow it
  to the next instance. ``CreateSnapshot(s)`` copy the volume's bytes when they are called
  (point in time: what the volume holds then, not what the filesystem has yet to write),
  ``CopySnapshot`` the snapshot's; a volume made from a snapshot starts as a copy of its bytes, an
  empty one as zeros. Root volumes have no bytes (the instance root directory stands in for the
  root filesystem), nor have ``CreateImage``'s snapshots (moto snapshots a new empty volume).
  With ``backing: directory`` (machines without loop devices) a volume is a directory and the
  agent's directory stand-ins (``allow_directory_devices``) take its place.
* **instances that boot their user data** (EC2 user guide, "Run commands at launch"; cloud-init
  ``write_files``): ``os_boot`` modeled seconds after a launch (or a start), the instance's user
  data (base64, optionally gzipped, a ``#cloud-config`` document) has its ``write_files`` written
  into the instance root (plain, ``b64`` or ``gz+b64``, ``permissions``, ``append``; once per
  instance, as cloud-init does). If they carry the instance agent
  (``/usr/local/sbin/ec2spot-agent`` and ``/etc/ec2spot-agent/config.json``), the runtime plays
  systemd: an IMDSv2 double for the instance (its id, zone, region, its instance profile's role
  credentials, its tags when its metadata options allow them, and the Spot and rebalance notices
  the EC2 events rule puts in ``CONTEXT.imds``), the agent's ``boot`` (the mount and app units),
  then its ``watch`` (the watcher unit, restarted when it exits). They run as subprocesses of the
  server with a configuration rewritten for the sandbox (``etc/ec2spot-agent/config.sandbox.json``:
  its paths under the instance root, the IMDS double, the sandbox endpoint; on the scaled clock
  its durations divided by the scale), dummy credentials and no other environment. Output goes to
  ``<instance root>/agent.log``, each boot's outcome to the ``boots`` record.
  ``<instance root>/usr/local/sbin/ec2spot-agent`` becomes a wrapper that runs the program
  (moved beside it as ``ec2spot-agent.py``) with that configuration, so that SSM commands (run
  in the instance root) can call ``ec2spot-agent stop --reason control-plane``. A fleet's user data
  carries the agent's bootstrap rather than the agent (EC2 takes 16 KB): run the same way, it fetches
  the agent from the sandbox's S3 (path-style at the sandbox endpoint) into the instance's state
  directory, checks its SHA-256 and runs it, as on EC2. The configuration's ``sys_block_dir`` is
  mapped under the instance root too: instances share this host's kernel, and an instance sees only
  its own devices (its by-id names), never the host's or another instance's.
* **termination and stop** are a power cut: the agent's processes are killed, the IMDS double
  stops, whatever is mounted under the instance root is lazily unmounted; at termination the
  non-root volumes are detached (moto detaches them) and their devices released.

The application's start and stop commands run on this host through ``/bin/sh`` with the instance
root as working directory (or ``app_directory`` under it) and ``EC2SPOT_INSTANCE_ROOT`` set:
they must be harmless (``echo started > app.state``); an absolute path reaches the real system.

Controls: ``runtime/enable``, ``runtime/instances`` (each instance's boots, mount, processes and
log tail), ``runtime/reset`` (kill, unmount, release every device, forget every byte, disable).
The server stops the runtime (the same clean-up) when it stops.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import gzip
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

from .imds import ImdsDouble

BACKINGS = ("loop", "directory")
DEFAULT_VOLUME_MIB = 64
MIB = 1024 * 1024
ENVIRONMENT_VARIABLE = "EC2SPOT_SANDBOX_RUNTIME"
BY_ID_PREFIX = "nvme-Amazon_Elastic_Block_Store_"
AGENT_PROGRAM = "/usr/local/sbin/ec2spot-agent"
AGENT_PROGRAM_MOVED = "/usr/local/sbin/ec2spot-agent.py"
AGENT_CONFIG = "/etc/ec2spot-agent/config.json"
SANDBOX_CONFIG = "/etc/ec2spot-agent/config.sandbox.json"
OS_BOOT_DEFAULT = 25.8           # context.LATENCY["os_boot"]: launch -> user data runs (FIGURES.md)
# The agent's path settings and its defaults (ec2spot_agent.DEFAULTS), mapped under the instance root.
# sys_block_dir too: the instances share the host's kernel, so each sees only its own by-id names, never the
# host's (or another instance's) block devices, as on EC2.
PATH_KEYS = {"mount_point": "/data", "run_dir": "/run/ec2spot-agent", "state_dir": "/var/lib/ec2spot-agent",
             "by_id_dir": "/dev/disk/by-id", "dev_dir": "/dev", "sys_block_dir": "/sys/class/block", "app_directory": "/"}
# Its durations (default, least real seconds): divided by the scale on the scaled clock.
DURATION_KEYS = {"poll_seconds": (5, 0.05), "drain_seconds": (30, 0.0), "stop_reserve_seconds": (30, 0.0),
                 "device_wait_seconds": (300, 5.0), "command_timeout_seconds": (90, 5.0)}
WATCH_RESTART_SECONDS = 1.0      # real seconds before a watcher that exited is started again (Restart=always)
LOG_TAIL_CHARS = 4000
DUMMY_CREDENTIALS = "sandbox"
EXIT_OUTCOMES = {0: "booted", 1: "failed", 2: "refused", 3: "timed-out"}
CONTROLS = ("runtime/enable", "runtime/instances", "runtime/reset")

_ACTIVE = {}         # id(context) -> the started Runtime
_INSTALLED = []


class UserDataError(ValueError):
    """The user data cannot be applied as cloud-init would."""
    outcome = "user-data-error"


class UserDataNotRun(UserDataError):
    """User data cloud-init would run but the sandbox does not (a script, a MIME multi-part document)."""
    outcome = "user-data-not-run"


def active(context):
    """The runtime started for ``context`` when it is enabled, else None."""
    found = _ACTIVE.get(id(context))
    return found if found is not None and found.enabled else None


def loop_devices_available():
    if os.geteuid() != 0 or not shutil.which("losetup"):
        return False
    return subprocess.run(["losetup", "--find"], capture_output=True, check=False).returncode == 0


def _run(argv, check=True):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[:300]}")
    return result


def _mounts():
    """(mount point, source) of every mount this process sees, in mount order."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            separator = fields.index("-")
            found.append((fields[4].encode().decode("unicode_escape"), fields[separator + 2]))
    return found


def _unmount_lazily(mount_points):
    for mount_point in sorted(set(mount_points), key=len, reverse=True):
        _run(["umount", "-l", mount_point], check=False)


def mounted_at(path):
    target = os.path.realpath(path)
    return any(mount_point == target for mount_point, dummy_source in _mounts())


def inside(root, path):
    """``path`` on the instance as a path under its stand-in root (resolved as the instance does: nothing is above /)."""
    on_instance = os.path.normpath("/" + str(path)).lstrip("/")
    return os.path.join(root, on_instance) if on_instance else root


def _tail(path, chars=LOG_TAIL_CHARS):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - chars))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ---- user data (cloud-init) ---------------------------------------------------------------
def user_data_bytes(user_data):
    """The instance's user data as the instance reads it: base64 decoded, gunzipped if gzipped."""
    if user_data is None:
        return None
    if isinstance(user_data, (list, tuple)):
        user_data = user_data[0] if user_data else None
        if user_data is None:
            return None
    encoded = getattr(user_data, "_encoded_string", user_data)
    if isinstance(encoded, bytes):
        encoded = encoded.decode("ascii")
    try:
        raw = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise UserDataError(f"user data is not base64: {exc}") from exc
    if raw[:2] == b"\x1f\x8b":     # cloud-init unpacks gzipped user data
        raw = gzip.decompress(raw)
    return raw


def file_content(entry):
    """A ``write_files`` entry's bytes, decoded as cloud-init does."""
    content = entry.get("content", "")
    data = content if isinstance(content, bytes) else str(content).encode("utf-8")
    encoding = str(entry.get("encoding") or "text/plain").lower()
    try:
        if encoding in ("gz+b64", "gz+base64", "gzip+b64", "gzip+base64"):
            return gzip.decompress(base64.b64decode(data))
        if encoding in ("b64", "base64"):
            return base64.b64decode(data)
        if encoding in ("gz", "gzip"):
            return gzip.decompress(data)
    except (binascii.Error, OSError, EOFError) as exc:
        raise UserDataError(f"write_files {entry.get('path')}: cannot decode {encoding}: {exc}") from exc
    if encoding != "text/plain":
        raise UserDataError(f"write_files {entry.get('path')}: unknown encoding {encoding!r}")
    return data


def write_files(root, document):
    """Write a cloud-config document's ``write_files`` under ``root``. Returns the paths written."""
    written = []
    for entry in document.get("write_files") or []:
        if not isinstance(entry, dict) or not entry.get("path"):
            raise UserDataError(f"write_files entry without a path: {entry!r}")
        destination = inside(root, entry["path"])
        parent, real_root = os.path.dirname(destination), os.path.realpath(root)
        real_parent = os.path.realpath(parent)   # resolves the links among the parts that exist
        if (real_parent != real_root and not real_parent.startswith(real_root + os.sep)) or os.path.islink(destination):
            raise UserDataError(f"write_files {entry['path']}: leads through a link out of the instance")
        os.makedirs(parent, exist_ok=True)
        permissions = entry.get("permissions", "0644")
        try:
            mode = permissions if isinstance(permissions, int) else int(str(permissions), 8)
        except ValueError as exc:
            raise UserDataError(f"write_files {entry['path']}: permissions {permissions!r} are not octal") from exc
        with open(destination, "ab" if entry.get("append") else "wb") as handle:
            handle.write(file_content(entry))
        os.chmod(destination, mode)
        written.append(entry["path"])
    return written


def cloud_config(raw):
    text = raw.decode("utf-8", "replace")
    if not text.startswith("#cloud-config"):
        first = text.splitlines()[0][:60] if text else ""
        raise UserDataNotRun(f"user data is not a #cloud-config document (it starts {first!r}); the sandbox applies "
                             "only cloud-config write_files and runs no scripts")
    import yaml
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserDataError(f"the cloud-config document is not YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise UserDataError("the cloud-config document is not a mapping")
    return document


# ---- the instance metadata service --------------------------------------------------------
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
            children = sorted({key[len(prefix):].split("/")[0] + ("/" if "/" in key[len(prefix):] else "")
                               for key in values if key.startswith(prefix)})
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
        self.processes = {}     # "boot" | "watch" -> Popen
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


class Runtime:
    """Volumes with bytes and instances running their agent; see the module's documentation."""

    def __init__(self, context, endpoint):
        self.context = context
        self.endpoint = endpoint.rstrip("/")
        self.enabled = False
        self.backing = None
        self.volume_mib = DEFAULT_VOLUME_MIB
        self.plugged = {}          # volume id -> {"instance_id", "device", "link", "image"}
        self.instances = {}        # instance id -> InstanceRun
        self._used = False         # enabled at least once: there may be something to clean up
        self._stopped = False

    # ---- life cycle ------------------------------------------------------------------------
    def start(self):
        install(self.context)
        with self.context.lock:
            _ACTIVE[id(self.context)] = self
            for name, control in zip(CONTROLS, (self._enable_control, self._instances_control, self._reset_control)):
                self.context.control(name)(control)
            wanted = os.environ.get(ENVIRONMENT_VARIABLE)
            if wanted:
                self.enable(wanted)
        atexit.register(self.stop)
        return self

    def stop(self):
        """Kill, unmount, release and forget everything (the server is going away)."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        locked = self.context.lock.acquire(timeout=30)
        try:
            self.teardown()
            if _ACTIVE.get(id(self.context)) is self:
                del _ACTIVE[id(self.context)]
                for name in CONTROLS:
                    self.context.controls.pop(name, None)
        finally:
            if locked:
                self.context.lock.release()

    def enable(self, backing="loop", volume_mib=DEFAULT_VOLUME_MIB):
        if backing not in BACKINGS:
            raise ValueError(f"backing must be one of {', '.join(BACKINGS)}, not {backing!r}")
        volume_mib = int(volume_mib)
        if volume_mib < 1:
            raise ValueError("volume_mib must be at least 1")
        if self.enabled and backing != self.backing and (self.plugged or self.instances):
            raise ValueError(f"the runtime runs with {self.backing} backing; reset it (runtime/reset) first")
        if backing == "loop" and not loop_devices_available():
            raise ValueError("loop devices are not available here (root and a free /dev/loop* are needed); "
                             "use backing 'directory'")
        self.enabled, self.backing, self.volume_mib, self._used = True, backing, volume_mib, True
        os.makedirs(self.ebs_dir, exist_ok=True)
        self.reconcile()
        return self.settings()

    def settings(self):
        return {"enabled": self.enabled, "backing": self.backing, "volume_mib": self.volume_mib,
                "ebs_dir": self.ebs_dir, "os_boot": self._os_boot()}

    def teardown(self):
        """Power every instance off, release every device, forget every byte; disabled afterwards."""
        self.enabled = False
        if not self._used:
            return
        for run in self.instances.values():
            if run.cycle is not None:
                run.cycle.halt()
        for volume_id in list(self.plugged):
            self.safely(self.unplug, volume_id)
        self._unmount_under(os.path.join(self.context.state_dir, "instances"))
        ebs_dir = self.ebs_dir
        if shutil.which("losetup") and os.path.isdir(ebs_dir):   # loop devices a crash left behind
            listed = _run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], check=False).stdout
            for line in listed.splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2 and parts[1].startswith(ebs_dir + os.sep):
                    _run(["losetup", "-d", parts[0]], check=False)
        shutil.rmtree(ebs_dir, ignore_errors=True)
        self.instances.clear()
        self.plugged.clear()

    @property
    def ebs_dir(self):
        return os.path.join(self.context.state_dir, "ebs")

    def _os_boot(self):
        return float(self.context.latency.get("os_boot", OS_BOOT_DEFAULT))

    def safely(self, action, *args):
        try:
            return action(*args)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.context.record("runtime_errors", {"action": action.__name__, "args": [str(a) for a in args],
                                                   "error": str(exc), "at": self.context.now().isoformat()})
            return None

    # ---- volumes -----------------------------------------------------------------------------
    def image_path(self, resource_id):
        return os.path.join(self.ebs_dir, resource_id + (".img" if self.backing == "loop" else ""))

    def volume_bytes(self, volume_id):
        return min(self.volume_mib, max(1, int(self._volume(volume_id).size or 1)) * 1024) * MIB

    def _volume(self, volume_id):
        return self.context.backend("ec2").volumes[volume_id]

    def bytes_of(self, volume):
        """Where a volume's bytes are now: its own image, else the snapshot it was made from; None: zeros."""
        own = self.image_path(volume.id)
        if os.path.exists(own):
            return own
        if getattr(volume, "snapshot_id", None) and os.path.exists(self.image_path(volume.snapshot_id)):
            return self.image_path(volume.snapshot_id)
        return None

    def _copy(self, source, destination):
        staging = destination + ".copying"
        if self.backing == "loop":
            _run(["cp", "--sparse=always", source, staging])
        else:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging, symlinks=True)
        os.replace(staging, destination)

    def ensure_image(self, volume):
        path = self.image_path(volume.id)
        if os.path.exists(path):
            return path
        os.makedirs(self.ebs_dir, exist_ok=True)
        source = self.bytes_of(volume)
        if source is not None:
            self._copy(source, path)
        elif self.backing == "directory":
            os.makedirs(path)
        else:
            with open(path, "wb"):
                pass
        if self.backing == "loop" and os.path.getsize(path) < self.volume_bytes(volume.id):
            os.truncate(path, self.volume_bytes(volume.id))   # sparse: zeros cost nothing
        return path

    def snapshot_taken(self, snapshot):
        """CreateSnapshot(s): the volume's bytes as they are at the call."""
        source = self.bytes_of(snapshot.volume) if snapshot.volume is not None else None
        if source is not None:
            self._copy(source, self.image_path(snapshot.id))
        self.context.record("runtime_snapshots", {"snapshot_id": snapshot.id, "volume_id": getattr(snapshot.volume, "id", None),
                                                  "bytes": source is not None, "at": self.context.now().isoformat()})

    def snapshot_copied(self, source_id, snapshot):
        if os.path.exists(self.image_path(source_id)):
            self._copy(self.image_path(source_id), self.image_path(snapshot.id))

    def changed(self):
        """An attachment changed state: bring the devices in line at the next tick (after the change's request or
        scheduled action has finished: moto sets ``attached`` at once, then the EBS rule ``attaching``)."""
        self.context.after(0, self.reconcile, "runtime: devices follow attachments")

    def attached_volumes(self):
        """volume id -> (volume, instance) for every non-root volume moto shows ``attached``."""
        wanted = {}
        for volume in list(self.context.backend("ec2").volumes.values()):
            attachment = volume.attachment
            if attachment is None or attachment.status != "attached":
                continue
            instance = attachment.instance
            if attachment.device == getattr(instance, "root_device_name", None):
                continue
            if instance.state in ("shutting-down", "terminated"):
                continue
            wanted[volume.id] = (volume, instance)
        return wanted

    def reconcile(self):
        if not self.enabled:
            return
        wanted = self.attached_volumes()
        for volume_id, plug in list(self.plugged.items()):
            if volume_id not in wanted or wanted[volume_id][1].id != plug["instance_id"]:
                self.safely(self.unplug, volume_id)
        for volume_id, (volume, instance) in wanted.items():
            if volume_id not in self.plugged:
                self.safely(self.plug, volume, instance)

    def plug(self, volume, instance):
        image = self.ensure_image(volume)
        by_id = os.path.join(self.context.instance_root(instance.id), "dev", "disk", "by-id")
        os.makedirs(by_id, exist_ok=True)
        link = os.path.join(by_id, BY_ID_PREFIX + volume.id.replace("-", ""))
        device = _run(["losetup", "--find", "--show", image]).stdout.strip() if self.backing == "loop" else image
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(device, link)
        self.plugged[volume.id] = {"instance_id": instance.id, "device": device, "link": link, "image": image}
        self.context.record("runtime_devices", {"action": "attached", "volume_id": volume.id, "instance_id": instance.id,
                                                "device": device, "link": link, "at": self.context.now().isoformat()})

    def unplug(self, volume_id):
        plug = self.plugged.pop(volume_id)
        if os.path.lexists(plug["link"]):
            os.remove(plug["link"])
        device, busy = plug["device"], False
        _unmount_lazily(self._mounts_of(device))
        if self.backing == "loop":
            _run(["losetup", "-d", device], check=False)
            name = os.path.basename(device)
            if os.path.exists(f"/sys/block/{name}/loop/backing_file"):
                # Still held open (a lazily unmounted filesystem in use): it keeps writing to the old file, not to
                # the volume, as a pulled disk would take no more writes. The volume keeps its bytes as of now.
                busy = True
                self._copy(plug["image"], plug["image"])
        self.context.record("runtime_devices", {"action": "detached", "volume_id": volume_id, "instance_id": plug["instance_id"],
                                                "device": device, "busy": busy, "at": self.context.now().isoformat()})

    def _mounts_of(self, device):
        if self.backing == "loop":
            return [mount_point for mount_point, source in _mounts() if source == device]
        identities = set()
        for path in [device] + [os.path.join(device, name) for name in os.listdir(device) if os.path.isdir(os.path.join(device, name))]:
            status = os.stat(path)
            identities.add((status.st_dev, status.st_ino))
        found = []
        for mount_point, dummy_source in _mounts():
            try:
                status = os.stat(mount_point)
            except OSError:
                continue
            if (status.st_dev, status.st_ino) in identities:
                found.append(mount_point)
        return found

    @staticmethod
    def _unmount_under(directory):
        directory = os.path.realpath(directory)
        _unmount_lazily([mount_point for mount_point, dummy_source in _mounts() if mount_point.startswith(directory + os.sep)])

    # ---- instances ---------------------------------------------------------------------------
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
        self.context.after(self._os_boot(), lambda: self.safely(self.boot, instance.id, cycle),
                           f"runtime: {instance.id} boots (os_boot)")

    def powered_off(self, instance, terminated):
        run = self.instances.get(instance.id)
        if run is not None and run.cycle is not None:
            run.cycle.halt()
            with open(run.log_path, "a", encoding="utf-8") as log:
                log.write(f"=== sandbox: {'terminated' if terminated else 'stopped'} at {self.context.now().isoformat()} (modeled): "
                          "the agent's processes killed\n")
        self._unmount_under(self.context.instance_root(instance.id))
        if terminated:
            self.reconcile()

    def boot(self, instance_id, cycle):
        run = self.instances.get(instance_id)
        instance = self._instance(instance_id)
        if run is None or run.cycle is not cycle or cycle.halted.is_set() or instance is None or instance.state != "running":
            return
        run.boots += 1
        record = {"instance_id": instance_id, "boot": run.boots, "launched": run.launched.isoformat(),
                  "agent_started": self.context.now().isoformat(), "os_boot": self._os_boot()}
        try:
            if not run.provisioned:
                run.provisioned = True
                raw = user_data_bytes(instance.user_data)
                run.user_data = {"written": write_files(run.root, cloud_config(raw)) if raw else []}
            shutil.rmtree(os.path.join(run.root, "run"), ignore_errors=True)   # /run is a tmpfs
            original = self._agent_config(run)
            if original is None:
                record.update(outcome="no-agent", reason=f"the user data installed no {AGENT_PROGRAM} and {AGENT_CONFIG}")
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
        threading.Thread(target=self._supervise, args=(run, cycle, record), name=f"sandbox-runtime-{instance_id}",
                         daemon=True).start()

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
        from .rules.ssm import Fleet
        zone = instance.placement.zone
        profile = Fleet(self.context.account_id, self.context.region).profile(instance)
        roles = [role.name for role in getattr(profile, "roles", [])] if profile is not None else []
        tags = {}
        if instance.metadata_options.instance_metadata_tags == "enabled":
            tags = {tag["key"]: tag["value"] for tag in instance.get_tags()}
        values = ImdsDouble.for_instance(instance.id, zone, role=roles[0] if roles else "none", tags=tags).values
        if not roles:   # no instance profile: no credentials, as on EC2
            values = {key: value for key, value in values.items() if not key.startswith("meta-data/iam/")}
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
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": run.root,
                "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS, "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.context.region, "AWS_DEFAULT_REGION": self.context.region,
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
                "EC2SPOT_INSTANCE_ID": run.instance_id, "EC2SPOT_INSTANCE_ROOT": run.root}

    def agent_command(self, run, *arguments):
        return [sys.executable, "-I", "-S", inside(run.root, AGENT_PROGRAM_MOVED), "--config", inside(run.root, SANDBOX_CONFIG),
                *arguments]

    def _write_wrapper(self, run):
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in self.agent_environment(run).items() if key != "PATH")
        script = ("#!/bin/sh\n"
                  "# sandbox/runtime.py: the instance agent the user data installed (ec2spot-agent.py beside this file)\n"
                  "# with the sandbox's configuration: paths under the instance root, the IMDS double, the sandbox endpoint.\n"
                  "unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN\n"
                  f"export {exports}\n"
                  f"exec {' '.join(shlex.quote(part) for part in self.agent_command(run))} \"$@\"\n")
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
                process = subprocess.Popen(self.agent_command(run, *arguments), cwd=run.root, env=self.agent_environment(run),
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        while not cycle.halted.is_set():       # the watcher unit: after the app unit, whatever its outcome; Restart=always
            process = self._spawn(run, cycle, "watch", ["watch"])
            if process is None:
                return
            run.watch["starts"] += 1
            run.watch["exit_codes"].append(process.wait())
            cycle.halted.wait(WATCH_RESTART_SECONDS)

    def describe(self, run):
        instance = self._instance(run.instance_id)
        cycle = run.cycle
        processes = dict(cycle.processes) if cycle is not None else {}
        mount_point = (run.config or {}).get("mount_point")
        last = run.last_boot or {}
        return {"instance_id": run.instance_id, "state": instance.state if instance is not None else "unknown", "root": run.root,
                "boots": run.boots, "booted": last.get("exit_code") == 0, "exit_code": last.get("exit_code"),
                "outcome": last.get("outcome"), "last_boot": last, "user_data": run.user_data,
                "mount_point": mount_point, "mounted": bool(mount_point) and mounted_at(mount_point),
                "running": sorted(role for role, process in processes.items() if process.poll() is None),
                "watch": dict(run.watch), "imds": cycle.imds_endpoint if cycle is not None else None,
                "volumes": sorted(v for v, plug in self.plugged.items() if plug["instance_id"] == run.instance_id),
                "log": run.log_path, "log_tail": _tail(run.log_path)}

    # ---- controls ----------------------------------------------------------------------------
    def _enable_control(self, payload):
        """``{"backing": "loop" | "directory", "volume_mib": 64}``: turn the runtime on."""
        return self.enable(payload.get("backing", "loop"), payload.get("volume_mib", DEFAULT_VOLUME_MIB))

    def _instances_control(self, payload):
        """``{"instance_id": ...}`` (optional): what each instance's agent did and does."""
        wanted = payload.get("instance_id")
        runs = [run for run in self.instances.values() if not wanted or run.instance_id == wanted]
        return dict(self.settings(), instances=[self.describe(run) for run in runs],
                    devices={volume_id: dict(plug) for volume_id, plug in self.plugged.items()})

    def _reset_control(self, payload):
        """Kill every agent, unmount, release every device, forget every byte, and disable the runtime."""
        released = sorted(self.plugged)
        self.teardown()
        return dict(self.settings(), released=released)


def install(context):
    """Patch moto's models (once): attachments, snapshots and instances tell the active runtime."""
    if _INSTALLED:
        return
    from moto.ec2.models.elastic_block_store import EBSBackend, VolumeAttachment
    from moto.ec2.models.instances import Instance

    def status_of(self):
        return self.__dict__.get("_sandbox_status", self.__dict__.get("status"))

    def set_status(self, value):
        self.__dict__["_sandbox_status"] = value
        runtime = active(context)
        if runtime is not None:
            runtime.changed()

    VolumeAttachment.status = property(status_of, set_status)

    moto_create_snapshot = EBSBackend.create_snapshot
    moto_copy_snapshot = EBSBackend.copy_snapshot

    def create_snapshot(self, *args, **kwargs):
        snapshot = moto_create_snapshot(self, *args, **kwargs)
        runtime = active(context)
        if runtime is not None:
            runtime.safely(runtime.snapshot_taken, snapshot)
        return snapshot

    def copy_snapshot(self, source_snapshot_id, *args, **kwargs):
        snapshot = moto_copy_snapshot(self, source_snapshot_id, *args, **kwargs)
        runtime = active(context)
        if runtime is not None:
            runtime.safely(runtime.snapshot_copied, source_snapshot_id, snapshot)
        return snapshot

    EBSBackend.create_snapshot = create_snapshot
    EBSBackend.copy_snapshot = copy_snapshot

    moto_init, moto_start, moto_stop, moto_terminate = Instance.__init__, Instance.start, Instance.stop, Instance.terminate

    def init(self, *args, **kwargs):
        moto_init(self, *args, **kwargs)
        runtime = active(context)
        if runtime is not None:
            runtime.launched(self)

    def start(self):
        before = self.state
        previous = moto_start(self)
        runtime = active(context)
        if runtime is not None and before in ("stopped", "stopping") and self.state == "running":
            runtime.launched(self)
        return previous

    def stop(self):
        before = self.state
        previous = moto_stop(self)
        runtime = active(context)
        if runtime is not None and before in ("pending", "running") and self.state == "stopped":
            runtime.powered_off(self, terminated=False)
        return previous

    def terminate(self):
        before = self.state
        previous = moto_terminate(self)
        runtime = active(context)
        if runtime is not None and before != "terminated" and self.state == "terminated":
            runtime.powered_off(self, terminated=True)
        return previous

    Instance.__init__ = init
    Instance.start = start
    Instance.stop = stop
    Instance.terminate = terminate
    _INSTALLED.append(True)
