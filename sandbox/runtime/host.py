"""The host side of the runtime: the commands it runs, the mounts it sees, paths under an instance's stand-in root.

The instances share this host's kernel: their volumes are loop devices (or directories) of this host, their
filesystems mounts of this host, their root a directory of the sandbox's state. These helpers are what the EBS part
(``ebs_bytes.py``) and the boot part (``boot.py``) both need of the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess

LOG_TAIL_CHARS = 4000


def loop_devices_available():
    """Whether volumes can be loop devices here (root, ``losetup``, a free ``/dev/loop*``); else directory backing."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        return False
    return subprocess.run(["losetup", "--find"], capture_output=True, check=False).returncode == 0


def run(argv, check=True):
    """Run a host command (``losetup``, ``umount``, ``cp``); with ``check``, a failure is an ``OSError``."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[:300]}")
    return result


def mounts():
    """(mount point, source) of every mount this process sees, in mount order."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            separator = fields.index("-")
            found.append((fields[4].encode().decode("unicode_escape"), fields[separator + 2]))
    return found


def unmount_lazily(mount_points):
    """Detach the mounts as a pulled disk would go: at once, whoever still uses them (deepest first)."""
    for mount_point in sorted(set(mount_points), key=len, reverse=True):
        run(["umount", "-l", mount_point], check=False)


def unmount_under(directory):
    """Lazily unmount everything mounted below ``directory`` (an instance's root, or every instance's)."""
    directory = os.path.realpath(directory)
    unmount_lazily(
        [mount_point for mount_point, dummy_source in mounts() if mount_point.startswith(directory + os.sep)]
    )


def mounted_at(path):
    target = os.path.realpath(path)
    return any(mount_point == target for mount_point, dummy_source in mounts())


def inside(root, path):
    """``path`` on the instance as a path under its stand-in root (resolved as the instance does: nothing is above /)."""
    on_instance = os.path.normpath("/" + str(path)).lstrip("/")
    return os.path.join(root, on_instance) if on_instance else root


def tail(path, chars=LOG_TAIL_CHARS):
    """The last ``chars`` characters of a log ("" when there is none yet)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - chars))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
