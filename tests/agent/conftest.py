"""Instance agent tests: the real program, real filesystems on loop devices, an IMDSv2 double.

The agent talks to the sandbox server (in a thread, manual clock) through its own SigV4
client, exactly as it talks to AWS. Devices are loop devices holding real ext4
filesystems, named the way udev names EBS volumes on Nitro instances
(``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol...``) in a private by-id
directory. Where loop devices are unavailable, directory stand-ins take their place
(``allow_directory_devices``), as the issue allows; this machine has them.

Agent time is a ``FakeClock``: sleeping advances it at once, so device waits, drain delays
and deadlines are exercised without the test waiting for them.

A missing prerequisite (loop devices, a filesystem tool) fails the case that needs it, never skips it: a skip would
pass the suite without proving anything about bytes. Directory stand-ins are a choice
(``EC2SPOT_TEST_DIRECTORY_DEVICES=1``); then only the byte-level proofs are left out.
"""

import datetime
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from sandbox import world as sandbox_world
from sandbox.imds import ImdsDouble

from tests.sandbox import conftest as sandbox_suite

# The sandbox server in this process on the manual clock, its session and seeded world, and a queue behind a rule to
# read what the agent reports: the sandbox suite's own fixtures, bound to their names here so that pytest finds them.
aws, catch, ec2, endpoint, events, queue, rule, seeded, session, sqs = (
    sandbox_suite.aws,
    sandbox_suite.catch,
    sandbox_suite.ec2,
    sandbox_suite.endpoint,
    sandbox_suite.events,
    sandbox_suite.queue,
    sandbox_suite.rule,
    sandbox_suite.seeded,
    sandbox_suite.session,
    sandbox_suite.sqs,
)

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


@pytest.fixture(autouse=True, scope="session")
def loop_devices_unless_stand_ins_are_chosen():
    """The agent is proven on real block devices: without loop devices that is an error, never a quiet skip of every
    case that is about bytes. Directory stand-ins are used only when asked for (EC2SPOT_TEST_DIRECTORY_DEVICES)."""
    if not os.environ.get("EC2SPOT_TEST_DIRECTORY_DEVICES") and not LOOP:
        pytest.fail(
            "loop devices are needed (root, losetup): the agent is proven on real block devices "
            "(EC2SPOT_TEST_DIRECTORY_DEVICES=1 runs the cases that do not need them on directory stand-ins)"
        )


class FakeClock:
    """Agent time: ``sleep`` advances ``now`` at once and runs the hooks due (a device appearing late...)."""

    def __init__(self):
        self.moment = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.slept = []
        self.hooks = []  # (at, callable)

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

    def create(self, size_mib=32, read_only=False):
        if not LOOP:
            path = tempfile.mkdtemp(prefix="standin-", dir=self.workdir)
            return path
        descriptor, image = tempfile.mkstemp(prefix="volume-", suffix=".img", dir=self.workdir)
        os.ftruncate(descriptor, size_mib * 1024 * 1024)  # sparse: a 32 MiB volume costs no disk
        os.close(descriptor)
        return self.loop(image, read_only)

    def loop(self, image, read_only=False):
        """A loop device over ``image`` (``--read-only``: read-only at the block layer, as the kernel reports it)."""
        loop = subprocess.run(
            ["losetup", "--find", "--show", *(["--read-only"] if read_only else []), image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.loops.append(loop)
        return loop

    def copy(self, device):
        """A block-level copy of ``device`` on a loop device of its own (a clone, a snapshot restored beside it)."""
        descriptor, image = tempfile.mkstemp(prefix="copy-", suffix=".img", dir=self.workdir)
        os.close(descriptor)
        subprocess.run(["cp", "--sparse=always", device, image], check=True)
        return self.loop(image)

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


def device_digest(device):
    """SHA-256 of every byte of a block device: a refused device must come out exactly as it went in."""
    digest = hashlib.sha256()
    with open(device, "rb", buffering=0) as handle:
        while True:
            chunk = handle.read(8 * 1024 * 1024)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)


def require_tool(name):
    """The tools the agent's cases need (make agent-tools installs them): a missing one fails the case."""
    if not shutil.which(name):
        pytest.fail(f"{name} is not installed (make agent-tools installs it)")


LINEAGE_TAGS = {"ec2spot:lineage": "pgdata", "ec2spot:managed-by": "ec2spot.autorecover"}
FRESH = {"ec2spot:fresh": "true"}  # a brand-new volume: the only one the agent formats


def tag_list(tags):
    return [{"Key": key, "Value": str(value)} for key, value in tags.items()]


def running_instance(ec2, seeded, zone, tags=None):
    """A fixture's body (``yield from``): a running instance in ``zone`` (with ``tags``) and its IMDS double, as
    ``{"id", "imds"}``; terminated after."""
    instance_id = sandbox_world.launch(ec2, seeded, zone, tags)
    with ImdsDouble.for_instance(instance_id, zone) as imds:
        yield {"id": instance_id, "imds": imds}
    ec2.terminate_instances(InstanceIds=[instance_id])


@pytest.fixture
def instance(ec2, seeded):
    """A running instance of the lineage's tags in us-east-1a and its IMDS double."""
    yield from running_instance(ec2, seeded, "us-east-1a", LINEAGE_TAGS)


@pytest.fixture
def lineage(request):
    """A lineage name of its own for each test: volumes of other tests never count as rivals."""
    return "pg-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:10]


@pytest.fixture
def volume(ec2, box, instance):
    """``volume(tags, device_name, attach=True, snapshot_id=None)``: create a volume (blank, encrypted, 1 GiB, or
    restored from ``snapshot_id``), attach it to the instance, wait for ``attached``."""
    made = []

    def create(tags, device_name="/dev/sdf", attach=True, snapshot_id=None):
        source = {"SnapshotId": snapshot_id} if snapshot_id else {"Size": 1, "Encrypted": True}
        volume_id = ec2.create_volume(
            AvailabilityZone="us-east-1a",
            VolumeType="gp3",
            **source,
            TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list(tags)}],
        )["VolumeId"]
        box.settle()
        if attach:
            ec2.attach_volume(VolumeId=volume_id, InstanceId=instance["id"], Device=device_name)
            box.settle()
        made.append(volume_id)
        return volume_id

    return create


@pytest.fixture
def attached_device(volume, devices):
    """``attached_device(tags, size_mib=32, **volume options)``: a volume with ``tags`` attached to the instance and a
    fresh device that udev names for it, as ``(device, volume id)``."""

    def create(tags, size_mib=32, **volume_options):
        volume_id = volume(tags, **volume_options)
        device = devices.create(size_mib=size_mib)
        devices.link(volume_id, device)
        return device, volume_id

    return create


@pytest.fixture
def make_agent(workdir, devices, instance, endpoint, clock):
    def make(lineage, **overrides):
        config = agent_module.validate_config(
            dict(
                {
                    "service": "pg",
                    "lineage": lineage,
                    "mount_point": os.path.join(workdir, "data"),
                    "run_dir": os.path.join(workdir, "run"),
                    "state_dir": os.path.join(workdir, "state"),
                    "by_id_dir": devices.by_id,
                    "dev_dir": os.path.join(workdir, "dev"),
                    "device_wait_seconds": 30,
                    "imds_endpoint": instance["imds"].endpoint,
                    "aws_endpoint_url": endpoint,
                    "report_boot": False,
                    "allow_directory_devices": not LOOP,
                    "app_start_commands": [f"touch {workdir}/app-started"],
                },
                **overrides,
            )
        )
        return agent_module.Agent(config, clock=clock)

    return make


def lineage_tags(lineage, generation, **extra):
    return dict({"ec2spot:lineage": lineage, "ec2spot:generation": str(generation)}, **extra)


def prepare_data_volume(agent, device, files, filesystem="ext4", marker=None):
    """A volume that already holds a lineage's data: a filesystem with the marker (this lineage at generation 1
    unless ``marker`` says otherwise; ``marker=False``: none) and ``files``, unmounted."""
    disk = agent_module.disk_for(device)
    disk.make_filesystem(filesystem, "ec2spot-data")
    mount_point = agent.config["mount_point"]
    os.makedirs(mount_point, exist_ok=True)
    disk.mount(mount_point, filesystem, "defaults")
    uuid = disk.probe().get("UUID")
    if marker is not False:
        os.makedirs(os.path.join(mount_point, ".ec2spot"))
        with open(os.path.join(mount_point, agent_module.MARKER), "w", encoding="utf-8") as handle:
            json.dump(
                dict({"lineage": agent.config["lineage"], "generation": 1, "uuid": uuid}, **(marker or {})), handle
            )
    for name, content in files.items():
        path = os.path.join(mount_point, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    subprocess.run(["umount", mount_point], check=True)
    return uuid
