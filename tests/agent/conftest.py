"""Instance agent tests: the real program, real filesystems on loop devices, an IMDSv2 double.

The agent talks to the sandbox server (in a thread, manual clock) through its own SigV4
client, exactly as it talks to AWS. Devices are loop devices holding real ext4
filesystems, named the way udev names EBS volumes on Nitro instances
(``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol...``) in a private by-id
directory. Where loop devices are unavailable, directory stand-ins take their place
(``allow_directory_devices``), as the issue allows; this machine has them.

Agent time is a ``FakeClock``: sleeping advances it at once, so device waits, drain delays
and deadlines are exercised without the test waiting for them.
"""

import datetime
import importlib.util
import os
import shutil
import subprocess
import tempfile

import pytest

# The sandbox server in this process on the manual clock, its session and seeded world: the sandbox suite's own fixtures.
from tests.sandbox.conftest import aws, ec2, endpoint, seeded, session  # noqa: F401 pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT_PATH = os.path.join(REPO, "roles", "instance_agent", "files", "ec2spot_agent.py")


def load_agent():
    spec = importlib.util.spec_from_file_location("ec2spot_agent", AGENT_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


agent_module = load_agent()


def loop_devices_work():
    if os.geteuid() != 0 or not shutil.which("losetup"):
        return False
    return subprocess.run(["losetup", "--find"], capture_output=True, check=False).returncode == 0


# EC2SPOT_TEST_DIRECTORY_DEVICES=1 exercises the stand-ins on a machine that has loop devices.
LOOP = loop_devices_work() and not os.environ.get("EC2SPOT_TEST_DIRECTORY_DEVICES")


class FakeClock:
    """Agent time: ``sleep`` advances ``now`` at once and runs the hooks due (a device appearing late...)."""

    def __init__(self):
        self.moment = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.slept = []
        self.hooks = []   # (at, callable)

    def now(self):
        return self.moment

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.moment += datetime.timedelta(seconds=max(0, seconds))
        due = [hook for hook in self.hooks if hook[0] <= self.moment]
        self.hooks = [hook for hook in self.hooks if hook[0] > self.moment]
        for hook in due:
            hook[1]()

    def at(self, seconds, action):
        self.hooks.append((self.moment + datetime.timedelta(seconds=seconds), action))


@pytest.fixture
def box(endpoint):
    from sandbox.control import Sandbox
    return Sandbox(endpoint)


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="ec2spot-agent-")
    yield path
    # Unmount whatever a failed test left mounted under it before removing it.
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        mounted = [line.split()[1] for line in handle if line.split()[1].startswith(path)]
    for mount_point in reversed(mounted):
        subprocess.run(["umount", "-l", mount_point], check=False)
    shutil.rmtree(path, ignore_errors=True)


class Devices:
    """Block devices for one test: loop devices over sparse files (or directory stand-ins), linked by volume id."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.by_id = os.path.join(workdir, "by-id")
        os.makedirs(self.by_id)
        self.loops = []

    def create(self, size_mib=32):
        if not LOOP:
            path = tempfile.mkdtemp(prefix="standin-", dir=self.workdir)
            return path
        descriptor, image = tempfile.mkstemp(prefix="volume-", suffix=".img", dir=self.workdir)
        os.ftruncate(descriptor, size_mib * 1024 * 1024)   # sparse: a 32 MiB volume costs no disk
        os.close(descriptor)
        loop = subprocess.run(["losetup", "--find", "--show", image], capture_output=True, text=True, check=True).stdout.strip()
        self.loops.append(loop)
        return loop

    def link(self, volume_id, device):
        link = os.path.join(self.by_id, "nvme-Amazon_Elastic_Block_Store_" + volume_id.replace("-", ""))
        os.symlink(device, link)
        return link

    def release(self):
        for loop in self.loops:
            subprocess.run(["losetup", "-d", loop], check=False)


@pytest.fixture
def devices(workdir):
    made = Devices(workdir)
    yield made
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        mounted = [line.split()[1] for line in handle if line.split()[0] in made.loops]
    for mount_point in mounted:
        subprocess.run(["umount", "-l", mount_point], check=False)
    made.release()


@pytest.fixture
def clock():
    return FakeClock()
