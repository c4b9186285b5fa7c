"""The parts of EC2 that moto does not play: volumes with real bytes, instances that boot their user data.

moto keeps EC2's state but runs nothing: a volume has no bytes, an instance no operating system. The runtime adds
them, on the sandbox's one modeled clock and only once enabled (``POST /_sandbox/runtime/enable {"backing": "loop" |
"directory", "volume_mib": 64}``, or ``EC2SPOT_SANDBOX_RUNTIME=loop|directory`` when the server starts). By concern:

* ``ebs_bytes.py``: EBS volumes with bytes, the files and loop devices (or directories) behind them, following
  moto's attachments and snapshots;
* ``cloud_init.py``: user data as cloud-init reads it, ``write_files`` of a ``#cloud-config`` document;
* ``boot.py``: instances that boot their user data, their IMDS doubles and the agent's units, and the power cut of
  a stop or a termination, registered at the instance lifecycle (``sandbox/instance_lifecycle.py``);
* ``host.py``: the host side both need (commands, mounts, paths under an instance's stand-in root);
* here: the ``Runtime`` that joins the two halves (``EbsBytes``, ``InstanceBoot``), its life cycle with the server,
  its controls, and ``install``.

Controls: ``runtime/enable``, ``runtime/instances`` (each instance's boots, mount, processes and log tail),
``runtime/reset`` (kill, unmount, release every device, forget every byte, disable). The server stops the runtime
(the same clean-up) when it stops.
"""

from __future__ import annotations

import atexit
import os
import subprocess

from . import boot, ebs_bytes
from .boot import InstanceBoot, InstanceImds, InstanceRun, PowerCycle
from .cloud_init import UserDataError, UserDataNotRun, cloud_config, file_content, user_data_bytes, write_files
from .ebs_bytes import EbsBytes
from .host import inside, loop_devices_available, mounted_at, unmount_under

__all__ = [
    "BACKINGS",
    "DEFAULT_VOLUME_MIB",
    "ENVIRONMENT_VARIABLE",
    "InstanceImds",
    "InstanceRun",
    "PowerCycle",
    "Runtime",
    "UserDataError",
    "UserDataNotRun",
    "active",
    "cloud_config",
    "file_content",
    "inside",
    "install",
    "loop_devices_available",
    "mounted_at",
    "user_data_bytes",
    "write_files",
]

BACKINGS = ("loop", "directory")
DEFAULT_VOLUME_MIB = 64
ENVIRONMENT_VARIABLE = "EC2SPOT_SANDBOX_RUNTIME"
CONTROLS = ("runtime/enable", "runtime/instances", "runtime/reset")

_ACTIVE = {}  # id(context) -> the started Runtime
_INSTALLED = []


def active(context):
    """The runtime started for ``context`` when it is enabled, else None."""
    found = _ACTIVE.get(id(context))
    return found if found is not None and found.enabled else None


class Runtime(EbsBytes, InstanceBoot):
    """Volumes with bytes and instances running their agent; see the package's documentation."""

    def __init__(self, context, endpoint):
        self.context = context
        self.endpoint = endpoint.rstrip("/")
        self.enabled = False
        self.backing = None
        self.volume_mib = DEFAULT_VOLUME_MIB
        self.plugged = {}  # volume id -> {"instance_id", "device", "link", "image"}
        self.instances = {}  # instance id -> InstanceRun
        self._used = False  # enabled at least once: there may be something to clean up
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
            raise ValueError(
                "loop devices are not available here (root and a free /dev/loop* are needed); use backing 'directory'"
            )
        self.enabled, self.backing, self.volume_mib, self._used = True, backing, volume_mib, True
        os.makedirs(self.ebs_dir, exist_ok=True)
        self.reconcile()
        return self.settings()

    def settings(self):
        return {
            "enabled": self.enabled,
            "backing": self.backing,
            "volume_mib": self.volume_mib,
            "ebs_dir": self.ebs_dir,
            "os_boot": self._os_boot(),
        }

    def teardown(self):
        """Power every instance off, release every device, forget every byte; disabled afterwards."""
        self.enabled = False
        if not self._used:
            return
        self.halt_all()
        self.unplug_all()
        unmount_under(os.path.join(self.context.state_dir, "instances"))
        self.release_left_behind()
        self.instances.clear()

    def safely(self, action, *args):
        try:
            return action(*args)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.context.record(
                "runtime_errors",
                {
                    "action": action.__name__,
                    "args": [str(a) for a in args],
                    "error": str(exc),
                    "at": self.context.now().isoformat(),
                },
            )
            return None

    # ---- controls ----------------------------------------------------------------------------
    def _enable_control(self, payload):
        """``{"backing": "loop" | "directory", "volume_mib": 64}``: turn the runtime on."""
        return self.enable(payload.get("backing", "loop"), payload.get("volume_mib", DEFAULT_VOLUME_MIB))

    def _instances_control(self, payload):
        """``{"instance_id": ...}`` (optional): what each instance's agent did and does."""
        wanted = payload.get("instance_id")
        runs = [run for run in self.instances.values() if not wanted or run.instance_id == wanted]
        return dict(
            self.settings(),
            instances=[self.describe(run) for run in runs],
            devices={volume_id: dict(plug) for volume_id, plug in self.plugged.items()},
        )

    def _reset_control(self, payload):
        """Kill every agent, unmount, release every device, forget every byte, and disable the runtime."""
        released = sorted(self.plugged)
        self.teardown()
        return dict(self.settings(), released=released)


def install(context):
    """Make moto's attachments, snapshots and instance lifecycle tell the runtime started for ``context`` (once)."""
    if _INSTALLED:
        return
    ebs_bytes.install(context, active)
    boot.install(context, active)
    _INSTALLED.append(True)
