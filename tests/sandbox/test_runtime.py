"""The runtime (sandbox/runtime.py): EBS volumes with real bytes, instances that boot the agent from their user data.

Loop devices over sparse files where this machine has them (root, ``losetup``), else directory stand-ins
(``EC2SPOT_TEST_DIRECTORY_DEVICES=1`` forces those). The clock is manual: the attach, the snapshot, the boot and
the Spot notice take their modeled times only when a test advances the clock; the agent's own processes run in
real time, so the tests wait (briefly, bounded) for what they do.
"""

import base64
import contextlib
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from sandbox import runtime as runtime_module
from sandbox import world as sandbox_world
from sandbox.clock import CONTEXT
from sandbox.control import Sandbox
from sandbox.scenario import eventually

from .conftest import unique

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT_PATH = os.path.join(REPO, "roles", "instance_agent", "files", "ec2spot_agent.py")
LOOP = runtime_module.loop_devices_available() and not os.environ.get("EC2SPOT_TEST_DIRECTORY_DEVICES")
BACKING = "loop" if LOOP else "directory"
ZONE = "us-east-1a"


@pytest.fixture(scope="module")
def runtime(endpoint):
    control = Sandbox(endpoint)
    control.call("runtime/enable", backing=BACKING, volume_mib=32)
    yield control
    control.call("runtime/reset")
    assert not our_loop_devices()


def our_loop_devices():
    if not LOOP:
        return []
    listed = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], capture_output=True, text=True, check=True
    ).stdout
    ebs = os.path.join(CONTEXT.state_dir, "ebs") + os.sep
    return [line.split()[0] for line in listed.splitlines() if ebs in line]


def link_of(instance_id, volume_id):
    return os.path.join(
        CONTEXT.instance_root(instance_id),
        "dev",
        "disk",
        "by-id",
        "nvme-Amazon_Elastic_Block_Store_" + volume_id.replace("-", ""),
    )


def attach(ec2, box, volume_id, instance_id, device="/dev/sdf"):
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)
    assert not os.path.lexists(link_of(instance_id, volume_id))  # attaching: no device yet
    box.advance(CONTEXT.latency["ebs_attach"])
    assert os.path.islink(link_of(instance_id, volume_id))
    return os.path.realpath(link_of(instance_id, volume_id))


def detach(ec2, box, volume_id, instance_id):
    ec2.detach_volume(VolumeId=volume_id)
    box.advance(CONTEXT.latency["ebs_detach"])
    assert not os.path.lexists(link_of(instance_id, volume_id))


@contextlib.contextmanager
def filesystem(device, where, fresh=False):
    """The volume's files: an ext4 filesystem mounted from the loop device (or the directory stand-in itself)."""
    if not LOOP:
        yield device
        return
    if fresh:
        subprocess.run(["mkfs.ext4", "-q", device], check=True)
    os.makedirs(where, exist_ok=True)
    subprocess.run(["mount", device, where], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def write(path, text):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.sync()


def test_a_volume_s_bytes_follow_it_to_another_instance(runtime, box, ec2, launch, tmp_path):
    first, second = launch(ZONE), launch(ZONE)
    volume_id = ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
    device = attach(ec2, box, volume_id, first)
    if LOOP:
        assert device.startswith("/dev/loop")
        with open(device, "rb") as handle:
            assert not handle.read(1024 * 1024).strip(b"\0")  # a new empty volume reads zeros
    else:
        assert os.path.isdir(device) and not os.listdir(device)

    # Written through a mount and still mounted when the volume goes: as with a pulled disk, the mount goes too.
    mount_point = str(tmp_path / "first")
    with contextlib.ExitStack() as stack:
        where = stack.enter_context(filesystem(device, mount_point, fresh=True))
        write(os.path.join(where, "note.txt"), "written on the first instance\n")
        detach(ec2, box, volume_id, first)
        if LOOP:
            assert not runtime_module.mounted_at(mount_point)
            assert device not in our_loop_devices()

    device = attach(ec2, box, volume_id, second)
    with filesystem(device, str(tmp_path / "second")) as where:
        assert read(os.path.join(where, "note.txt")) == "written on the first instance\n"
    devices = box.records("runtime_devices")
    assert [(d["action"], d["instance_id"]) for d in devices if d["volume_id"] == volume_id] == [
        ("attached", first),
        ("detached", first),
        ("attached", second),
    ]
    detach(ec2, box, volume_id, second)


def test_a_snapshot_is_the_volume_at_the_call(runtime, box, ec2, launch, tmp_path):
    instance_id = launch(ZONE)
    volume_id = ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
    device = attach(ec2, box, volume_id, instance_id)
    with filesystem(device, str(tmp_path / "original"), fresh=True) as where:
        write(os.path.join(where, "before.txt"), "before the snapshot\n")
        snapshot_id = ec2.create_snapshot(VolumeId=volume_id)["SnapshotId"]
        write(os.path.join(where, "after.txt"), "after the snapshot\n")
    box.advance(CONTEXT.latency["snapshot_base"] + CONTEXT.latency["snapshot_per_gib"])
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "completed"

    restored_id = ec2.create_volume(AvailabilityZone=ZONE, SnapshotId=snapshot_id)["VolumeId"]
    restored = attach(ec2, box, restored_id, instance_id, device="/dev/sdg")
    with filesystem(restored, str(tmp_path / "restored")) as where:
        assert read(os.path.join(where, "before.txt")) == "before the snapshot\n"
        assert not os.path.exists(os.path.join(where, "after.txt"))
    with filesystem(device, str(tmp_path / "original-again")) as where:
        assert os.path.exists(os.path.join(where, "after.txt"))
    detach(ec2, box, restored_id, instance_id)
    detach(ec2, box, volume_id, instance_id)


# ---- an instance that boots the agent from its user data ----------------------------------------------------
def cloud_config(lineage):
    """The instance_agent role's shape: the agent (gz+b64) and its configuration in write_files; the whole document
    gzipped for EC2 (the role's gzip_b64 filter, as its launch templates carry it)."""
    import yaml
    from ansible_collections.ec2spot.autorecover.plugins.filter.gzip_b64 import gzip_b64

    with open(AGENT_PATH, encoding="utf-8") as handle:
        program = handle.read()
    config = {
        "service": "pg",
        "lineage": lineage,
        "mount_point": "/data",
        "poll_seconds": 0.2,
        "device_wait_seconds": 60,
        "app_start_commands": ["echo started > app.state"],
        "app_stop_commands": ["echo stopped >> app.state"],
    }
    document = "#cloud-config\n" + yaml.safe_dump(
        {
            "write_files": [
                {
                    "path": "/usr/local/sbin/ec2spot-agent",
                    "permissions": "0755",
                    "encoding": "gz+b64",
                    "content": gzip_b64(program),
                },
                {
                    "path": "/etc/ec2spot-agent/config.json",
                    "permissions": "0644",
                    "content": json.dumps(config, indent=2) + "\n",
                },
            ],
            "runcmd": [
                ["systemctl", "daemon-reload"],
                ["systemctl", "enable", "--now", "ec2spot-app.service ec2spot-watcher.service"],
            ],
        }
    )
    return base64.b64decode(gzip_b64(document))


def instance_status(box, instance_id):
    return box.call("runtime/instances", instance_id=instance_id)["instances"][0]


def status_once(box, instance_id, condition, what):
    """The instance's runtime status once ``condition(status)`` holds (real time)."""

    def check():
        status = instance_status(box, instance_id)
        return status if condition(status) else None

    return eventually(what, check, timeout=30, interval=0.1)  # real time: the agent runs in real processes


def imds(endpoint, path):
    """GET from an instance's IMDS double as an IMDSv2 client does (None on 404)."""
    request = urllib.request.Request(
        endpoint + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        token = answer.read().decode()
    request = urllib.request.Request(endpoint + "/latest/" + path, headers={"X-aws-ec2-metadata-token": token})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


@pytest.fixture
def profile(aws):
    return sandbox_world.managed_instance_profile(aws("iam"), unique("runtime-agent"))


@pytest.fixture
def booted(runtime, box, ec2, launch, profile, catch):
    """A Spot instance launched with the agent in its user data, booted onto its brand-new lineage volume."""
    boot_reports = catch({"source": ["ec2spot.autorecover"]})  # the agent's boot reports, through EventBridge
    lineage = unique("pgdata")
    instance_id = launch(
        ZONE,
        UserData=cloud_config(lineage),
        IamInstanceProfile={"Name": profile},
        InstanceMarketOptions={"MarketType": "spot"},
        MetadataOptions={"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "pg-1"}]}],
    )
    volume_id = ec2.create_volume(
        AvailabilityZone=ZONE,
        Size=1,
        TagSpecifications=[
            {
                "ResourceType": "volume",
                "Tags": [
                    {"Key": "ec2spot:lineage", "Value": lineage},
                    {"Key": "ec2spot:generation", "Value": "1"},
                    {"Key": "ec2spot:fresh", "Value": "true"},
                ],
            }
        ],
    )["VolumeId"]
    os_boot = CONTEXT.latency["os_boot"]
    box.advance(os_boot - 0.5)
    assert instance_status(box, instance_id)["boots"] == 0  # still booting: no user data run yet
    box.advance(0.5)
    status = status_once(box, instance_id, lambda s: "boot" in s["running"], "the agent's boot to start")
    assert status["boots"] == 1 and status["imds"].startswith("http://127.0.0.1:")
    # The agent waits for the control plane to attach its volume; it is then attached for it.
    attach(ec2, box, volume_id, instance_id)
    status = status_once(box, instance_id, lambda s: s["last_boot"], "the boot to end")
    yield {
        "instance_id": instance_id,
        "volume_id": volume_id,
        "lineage": lineage,
        "status": status,
        "root": CONTEXT.instance_root(instance_id),
        "reports": boot_reports.drain,
        "profile": profile,
    }
    ec2.terminate_instances(InstanceIds=[instance_id])  # a power cut: its agent killed, its devices released


def test_an_instance_boots_the_agent_from_its_user_data(booted, box, aws):
    status, root = booted["status"], booted["root"]
    assert status["outcome"] == "booted" and status["exit_code"] == 0, status["log_tail"]
    assert status["mounted"] and status["mount_point"] == os.path.join(root, "data")
    assert runtime_module.mounted_at(os.path.join(root, "data"))
    assert read(os.path.join(root, "app.state")) == "started\n"  # the start command ran, in the root
    marker = json.loads(read(os.path.join(root, "data", ".ec2spot", "lineage.json")))  # on the volume
    assert marker["lineage"] == booted["lineage"] and marker["generation"] == 1
    state = json.loads(read(os.path.join(root, "run", "ec2spot-agent", "boot.json")))
    assert state["initialised"] is True and state["volume_id"] == booted["volume_id"]

    seen = []

    def boot_reports():
        seen.extend(booted["reports"]())
        return [r for r in seen if r["detail-type"] == "EC2Spot Recovery Boot Report"]

    reports = eventually("the boot report on the queue", boot_reports, timeout=10, interval=0.1)
    assert len(reports) == 1
    # Before it, the agent may have said it was ready for its data, once: whether its first look at its volumes came
    # before the attach the fixture makes for it is a race (both are what an agent does).
    assert [r["detail-type"] for r in seen if r not in reports] in ([], ["EC2Spot Replacement Ready"])
    detail = reports[0]["detail"]
    assert (detail["instance-id"], detail["volume-id"], detail["generation"], detail["initialised"]) == (
        booted["instance_id"],
        booted["volume_id"],
        1,
        True,
    )
    [boot] = [b for b in box.records("boots") if b["instance_id"] == booted["instance_id"]]
    assert boot["outcome"] == "booted" and boot["os_boot"] == CONTEXT.latency["os_boot"]
    assert "formatting brand-new volume" in read(os.path.join(root, "agent.log"))

    # The instance's metadata: identity, its profile's role, its tags (InstanceMetadataTags enabled).
    endpoint = status["imds"]
    assert imds(endpoint, "meta-data/instance-id") == booted["instance_id"]
    assert imds(endpoint, "meta-data/placement/availability-zone") == ZONE
    assert imds(endpoint, "meta-data/iam/security-credentials/") == booted["profile"]
    assert imds(endpoint, "meta-data/tags/instance/Name") == "pg-1"
    status_once(box, booted["instance_id"], lambda s: "watch" in s["running"], "the watcher")

    # SSM commands run in the instance root find the agent on its PATH, with the sandbox's configuration.
    ssm = aws("ssm")
    command_id = ssm.send_command(
        InstanceIds=[booted["instance_id"]],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["ec2spot-agent status"]},
    )["Command"]["CommandId"]
    box.advance(CONTEXT.latency["ssm_pending"] + CONTEXT.latency["ssm_command"])
    answer = ssm.get_command_invocation(CommandId=command_id, InstanceId=booted["instance_id"])
    assert answer["Status"] == "Success", answer["StandardErrorContent"]
    assert json.loads(answer["StandardOutputContent"])["boot"]["volume_id"] == booted["volume_id"]


def test_a_spot_notice_makes_the_watcher_stop_the_app_before_the_reclaim(booted, box, ec2):
    instance_id, volume_id, root = booted["instance_id"], booted["volume_id"], booted["root"]
    assert booted["status"]["outcome"] == "booted", booted["status"]["log_tail"]
    endpoint = status_once(box, instance_id, lambda s: "watch" in s["running"], "the watcher")["imds"]
    assert imds(endpoint, "meta-data/spot/instance-action") is None
    notice = box.call("spot/interrupt", instance_id=instance_id)
    assert json.loads(imds(endpoint, "meta-data/spot/instance-action"))["time"] == notice["time"]  # read through

    stop_path = os.path.join(root, "run", "ec2spot-agent", "stop.json")
    eventually(
        "the watcher's stop",
        lambda: os.path.exists(stop_path) and json.loads(read(stop_path))["outcome"] == "stopped",
        timeout=20,
        interval=0.1,
    )
    record = json.loads(read(stop_path))
    assert record["reason"].startswith("spot terminate at ") and "unmounted" in record and not record["errors"]
    assert read(os.path.join(root, "app.state")) == "started\nstopped\n"
    assert not runtime_module.mounted_at(os.path.join(root, "data"))
    state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"  # all of it before the reclaim

    box.advance(CONTEXT.latency["spot_notice_lead"])  # the notice time: reclaimed
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] == "terminated"
    assert instance["StateReason"]["Code"] == "Server.SpotInstanceTermination"
    status = status_once(box, instance_id, lambda s: not s["running"], "the agent's processes to end")
    assert status["imds"] is None and status["volumes"] == []
    assert not os.path.lexists(link_of(instance_id, volume_id))
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] == "available"
    [released] = [
        d for d in box.records("runtime_devices") if d["volume_id"] == volume_id and d["action"] == "detached"
    ]
    assert released["instance_id"] == instance_id and released["busy"] is False
    assert released["device"] not in our_loop_devices()


def test_reset_releases_every_device_and_mount(runtime, box, ec2, launch, tmp_path):
    instance_id = launch(ZONE)
    volume_id = ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
    device = attach(ec2, box, volume_id, instance_id)
    mount_point = os.path.join(CONTEXT.instance_root(instance_id), "data")
    with filesystem(device, mount_point, fresh=True):
        assert not LOOP or our_loop_devices()
        answer = runtime.call("runtime/reset")
        assert answer["enabled"] is False and volume_id in answer["released"]
        assert not our_loop_devices()
        assert not runtime_module.mounted_at(mount_point)
        assert not os.path.lexists(link_of(instance_id, volume_id))
    runtime.call("runtime/enable", backing=BACKING, volume_mib=32)


def test_write_files_are_decoded_as_cloud_init_decodes_them(tmp_path):
    from ansible_collections.ec2spot.autorecover.plugins.filter.gzip_b64 import gzip_b64

    root = str(tmp_path)
    written = runtime_module.write_files(
        root,
        {
            "write_files": [
                {"path": "/etc/plain.txt", "content": "plain\n"},
                {
                    "path": "/etc/b64.txt",
                    "encoding": "b64",
                    "content": base64.b64encode(b"b64\n").decode(),
                    "permissions": "0600",
                },
                {
                    "path": "/usr/local/sbin/tool",
                    "encoding": "gz+b64",
                    "content": gzip_b64("#!/bin/sh\n"),
                    "permissions": "0755",
                },
                {"path": "/etc/plain.txt", "content": "more\n", "append": True},
            ]
        },
    )
    assert written == ["/etc/plain.txt", "/etc/b64.txt", "/usr/local/sbin/tool", "/etc/plain.txt"]
    assert read(os.path.join(root, "etc", "plain.txt")) == "plain\nmore\n"
    assert read(os.path.join(root, "etc", "b64.txt")) == "b64\n"
    assert os.stat(os.path.join(root, "etc", "b64.txt")).st_mode & 0o777 == 0o600
    assert read(os.path.join(root, "usr", "local", "sbin", "tool")) == "#!/bin/sh\n"
    assert os.stat(os.path.join(root, "usr", "local", "sbin", "tool")).st_mode & 0o777 == 0o755
    # Paths are the instance's: nothing is above its /, and a link does not lead out of it.
    runtime_module.write_files(root, {"write_files": [{"path": "/../../top.txt", "content": "at the top\n"}]})
    assert read(os.path.join(root, "top.txt")) == "at the top\n"
    outside = tmp_path.parent / unique("outside")
    outside.mkdir()
    os.symlink(outside, os.path.join(root, "etc", "link"))
    with pytest.raises(runtime_module.UserDataError, match="through a link"):
        runtime_module.write_files(root, {"write_files": [{"path": "/etc/link/escaped.txt", "content": "no"}]})
    assert not os.listdir(outside)


def test_user_data_other_than_cloud_config_is_not_run(runtime, box, launch):
    instance_id = launch(ZONE, UserData="#!/bin/sh\necho ran > ran.txt\n")
    box.advance(CONTEXT.latency["os_boot"])
    status = instance_status(box, instance_id)
    assert status["outcome"] == "user-data-not-run" and status["running"] == []
    assert not os.path.exists(os.path.join(CONTEXT.instance_root(instance_id), "ran.txt"))
