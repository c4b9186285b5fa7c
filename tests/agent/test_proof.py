"""The volume is proven the lineage's before a byte is written: every refusal leaves every device byte-identical.

Each case builds hostile disks on real loop devices, takes the SHA-256 of every byte of every device involved,
runs ``mount`` and checks the refusal's reason, that the digests did not change, that nothing is mounted at the
data directory or the agent's private probe point, and that the application did not start.
"""

import json
import os
import pathlib
import subprocess
import time

import pytest

from tests.agent.conftest import (
    FRESH,
    LOOP,
    agent_module,
    device_digest,
    lineage_tags,
    prepare_data_volume,
    require_tool,
    tag_list,
)

pytestmark = pytest.mark.skipif(not LOOP, reason="needs loop devices: the promise is about the bytes of a block device")

MIB = 1024 * 1024


def other_lineage_ext4(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 2))
    prepare_data_volume(
        ctx.agent, device, {"ledger": b"billing's rows"}, marker={"lineage": "billing", "generation": 2}
    )
    return [device], "its data belongs to lineage 'billing'"


def other_lineage_xfs(ctx):
    require_tool("mkfs.xfs")
    device = ctx.data_device(lineage_tags(ctx.lineage, 2), size_mib=320)  # mkfs.xfs needs 300 MiB
    prepare_data_volume(
        ctx.agent,
        device,
        {"ledger": b"billing's rows"},
        filesystem="xfs",
        marker={"lineage": "billing", "generation": 2},
    )
    return [device], "its data belongs to lineage 'billing'"


def no_marker(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 2))
    prepare_data_volume(ctx.agent, device, {"legacy": b"rows"}, marker=False)
    return [device], "no lineage marker .* mount --adopt"


def marker_newer_than_tags(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 2))
    prepare_data_volume(ctx.agent, device, {"rows": b"x"}, marker={"generation": 5})
    return [device], "tagged generation 2 but its data already reached generation 5"


def marker_older_without_reason(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 6))
    prepare_data_volume(ctx.agent, device, {"rows": b"x"}, marker={"generation": 5})
    return [device], "its data is generation 5 but it is tagged 6, and nothing on the volume explains"


def marker_behind_a_recorded_move(ctx, tagged, last_instance):
    """Tagged ``tagged`` after a move from i-0aaaaaaaaaaaaaaaa, with a marker of generation 5 that ``last_instance``
    wrote last."""
    device, volume_id = ctx.data_device_and_id(
        lineage_tags(ctx.lineage, tagged, **{"ec2spot:previous-holder": "i-0aaaaaaaaaaaaaaaa"})
    )
    prepare_data_volume(
        ctx.agent,
        device,
        {"rows": b"x"},
        marker={"generation": 5, "last_instance": last_instance, "last_volume": volume_id},
    )
    return [device], "nothing on the volume explains"


def marker_older_moved_from_someone_else(ctx):
    """The tags record a move, but from an instance that is not the one that last wrote the marker."""
    return marker_behind_a_recorded_move(ctx, 6, "i-0bbbbbbbbbbbbbbbb")


def marker_older_by_two_moves(ctx):
    return marker_behind_a_recorded_move(ctx, 7, "i-0aaaaaaaaaaaaaaaa")


def twin_mounted(ctx):
    device, twin = ctx.lineage_data_and_twin()
    elsewhere = ctx.mount_elsewhere(twin)
    return [device, twin], f"is also on {twin} \\(mounted at {elsewhere}\\)"


def twin_not_mounted(ctx):
    device, twin = ctx.lineage_data_and_twin()
    return [device, twin], f"is also on {twin} \\(not mounted\\)"


def twin_attached_as_a_volume(ctx):
    """A restore of the lineage's snapshot attached beside the original: both are tagged, both carry one UUID."""
    device, twin = ctx.lineage_data_and_twin()
    twin_id = ctx.volume({"Name": "restored-copy"}, device_name="/dev/sdg")
    ctx.devices.link(twin_id, twin)
    return [device, twin], f"is also on {twin} \\(not mounted\\)"


def mounted_elsewhere(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 1))
    prepare_data_volume(ctx.agent, device, {"rows": b"x"})
    elsewhere = ctx.mount_elsewhere(device)
    return [device], f"the device is already mounted at {elsewhere}"


def read_only_block_device(ctx):
    device = ctx.devices.create()
    prepare_data_volume(ctx.agent, device, {"rows": b"x"})
    image = subprocess.run(
        ["losetup", "--noheadings", "--output", "BACK-FILE", device], capture_output=True, text=True, check=True
    ).stdout.strip()
    read_only = ctx.devices.loop(image, read_only=True)
    subprocess.run(["losetup", "-d", device], check=True)
    ctx.devices.loops.remove(device)
    ctx.devices.link(ctx.volume(lineage_tags(ctx.lineage, 1)), read_only)
    return [read_only], "the device is read-only at the block layer"


def wiped_head_with_data_deeper(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 1, **FRESH), size_mib=64)
    prepare_data_volume(ctx.agent, device, {"rows": os.urandom(4 * MIB)}, marker={"lineage": "billing"})
    with open(device, "r+b") as handle:  # an operator's `dd if=/dev/zero bs=1M count=8`
        handle.write(b"\0" * 8 * MIB)
    assert agent_module.disk_for(device).probe() == {}
    return [device], "has no recognisable signature but is not blank"


def fresh_tag_on_non_blank(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 1, **FRESH))
    with open(device, "r+b") as handle:
        handle.seek(20 * MIB + 17)
        handle.write(b"somebody's bytes")
    return [device], "not blank \\(a non-zero byte at offset 20971537\\)"


def fresh_tag_on_a_restored_volume(ctx):
    _source, snapshot = ctx.snapshot_of_a_blank_volume()
    device = ctx.data_device(lineage_tags(ctx.lineage, 1, **FRESH), snapshot_id=snapshot)
    return [device], f"EC2 made it from snapshot {snapshot}: a volume restored from a snapshot is never new"


def blank_not_fresh(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 3))
    return [device], "it is blank, but it is not tagged ec2spot:fresh=true"


def journal_needs_replay_on_another_lineage(ctx):
    device = ctx.data_device(lineage_tags(ctx.lineage, 2))
    prepare_data_volume(
        ctx.agent, device, {"ledger": b"billing's rows"}, marker={"lineage": "billing", "generation": 2}
    )
    crash_with_writes_in_the_journal(ctx, device)
    assert agent_module.disk_for(device).needs_recovery("ext4")
    return [device], "its data belongs to lineage 'billing'"


def hand_made_marker(ctx, make):
    """The lineage's data (generation 1) with a marker that ``make(path)`` put at the marker's path; its device."""
    device = ctx.data_device(lineage_tags(ctx.lineage, 1))
    prepare_data_volume(ctx.agent, device, {"rows": b"x"}, marker=False)
    mount_point = ctx.agent.config["mount_point"]
    subprocess.run(["mount", device, mount_point], check=True)
    os.makedirs(os.path.join(mount_point, ".ec2spot"))
    make(os.path.join(mount_point, agent_module.MARKER))
    subprocess.run(["umount", mount_point], check=True)
    return device


def marker_is_a_symlink(ctx):
    device = hand_made_marker(ctx, lambda marker: os.symlink("/etc/hostname", marker))
    return [device], "its lineage marker cannot be read safely: .* cannot be opened as a file"


def marker_with_duplicate_keys(ctx):
    duplicated = f'{{"lineage": "billing", "lineage": "{ctx.lineage}", "generation": 1}}'
    device = hand_made_marker(ctx, lambda marker: pathlib.Path(marker).write_text(duplicated, encoding="utf-8"))
    return [device], "is not a JSON document \\(duplicate keys lineage\\)"


def crash_with_writes_in_the_journal(ctx, device):
    """Mount, write, and stop the filesystem dead (the ext4 shutdown ioctl, no log flush): the journal needs replay."""
    require_tool("xfs_io")
    mount_point = ctx.agent.config["mount_point"]
    subprocess.run(["mount", device, mount_point], check=True)
    with open(os.path.join(mount_point, "late-write"), "wb") as handle:
        handle.write(b"written just before the crash")
    subprocess.run(["sync"], check=True)
    with open(os.path.join(mount_point, "later-write"), "wb") as handle:
        handle.write(b"in the journal only")
        handle.flush()
        os.fsync(handle.fileno())
    subprocess.run(["xfs_io", "-x", "-c", "shutdown", mount_point], check=True)
    subprocess.run(["umount", mount_point], check=True)


REFUSALS = [
    other_lineage_ext4,
    other_lineage_xfs,
    no_marker,
    marker_newer_than_tags,
    marker_older_without_reason,
    marker_older_moved_from_someone_else,
    marker_older_by_two_moves,
    twin_mounted,
    twin_not_mounted,
    twin_attached_as_a_volume,
    mounted_elsewhere,
    read_only_block_device,
    wiped_head_with_data_deeper,
    fresh_tag_on_non_blank,
    fresh_tag_on_a_restored_volume,
    blank_not_fresh,
    journal_needs_replay_on_another_lineage,
    marker_is_a_symlink,
    marker_with_duplicate_keys,
]


class Context:
    def __init__(self, **parts):
        self.__dict__.update(parts)
        self.cleanup = []

    def data_device_and_id(self, tags, size_mib=32, **volume_options):
        return self.attached_device(tags, size_mib, **volume_options)

    def data_device(self, tags, size_mib=32, **volume_options):
        return self.data_device_and_id(tags, size_mib, **volume_options)[0]

    def lineage_data_and_twin(self):
        """The lineage's data (generation 1) on its attached device, and a block-level copy of it on another device."""
        device = self.data_device(lineage_tags(self.lineage, 1))
        prepare_data_volume(self.agent, device, {"rows": b"x"})
        return device, self.devices.copy(device)

    def mount_elsewhere(self, device):
        """Mount ``device`` read-only away from the data directory (unmounted after the case); returns where."""
        elsewhere = os.path.join(self.workdir, "elsewhere")
        os.makedirs(elsewhere)
        subprocess.run(["mount", "-o", "ro,noload", device, elsewhere], check=True)
        self.cleanup.append(lambda: subprocess.run(["umount", elsewhere], check=False))
        return elsewhere

    def snapshot_of_a_blank_volume(self, tags=None):
        """A completed snapshot (with ``tags``) of a fresh 1 GiB volume: ``(volume id, snapshot id)``."""
        source = self.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, VolumeType="gp3")["VolumeId"]
        snapshot = self.ec2.create_snapshot(
            VolumeId=source,
            **({"TagSpecifications": [{"ResourceType": "snapshot", "Tags": tag_list(tags)}]} if tags else {}),
        )["SnapshotId"]
        self.box.settle()
        return source, snapshot


@pytest.fixture
def context(make_agent, devices, volume, attached_device, lineage, workdir, instance, ec2, box):
    made = Context(
        agent=make_agent(lineage),
        devices=devices,
        volume=volume,
        attached_device=attached_device,
        lineage=lineage,
        workdir=workdir,
        instance=instance,
        ec2=ec2,
        box=box,
    )
    yield made
    for action in reversed(made.cleanup):
        action()


@pytest.mark.parametrize("case", REFUSALS, ids=[case.__name__ for case in REFUSALS])
def test_refused_device_comes_out_exactly_as_it_went_in(context, case, workdir):
    touched, reason = case(context)
    before = {device: device_digest(device) for device in touched}

    with pytest.raises(agent_module.Refused, match=reason) as refused:
        context.agent.mount()

    assert {device: device_digest(device) for device in touched} == before
    assert "application was not started" in str(refused.value)
    assert agent_module.mounted_source(context.agent.config["mount_point"]) is None
    assert agent_module.mounted_source(os.path.join(context.agent.config["run_dir"], "probe")) is None
    with pytest.raises(agent_module.Refused, match="not mounted"):
        context.agent.start_app()
    assert not os.path.exists(os.path.join(workdir, "app-started"))


def test_data_one_move_behind_its_tags_is_mounted_when_the_move_explains_it(context):
    """The very volume moved: tag one ahead, the move recorded the instance that last wrote the marker."""
    device, volume_id = context.data_device_and_id(
        lineage_tags(
            context.lineage,
            6,
            **{"ec2spot:previous-holder": "i-0aaaaaaaaaaaaaaaa", "ec2spot:holder": context.instance["id"]},
        )
    )
    canary = os.urandom(100_000)
    prepare_data_volume(
        context.agent,
        device,
        {"canary": canary},
        marker={"generation": 5, "last_instance": "i-0aaaaaaaaaaaaaaaa", "last_volume": volume_id},
    )

    state = context.agent.mount()

    assert state["proof"] == "moved" and state["generation"] == 6
    mount_point = context.agent.config["mount_point"]
    with open(os.path.join(mount_point, "canary"), "rb") as handle:
        assert handle.read() == canary
    with open(os.path.join(mount_point, agent_module.MARKER), encoding="utf-8") as handle:
        marker = json.load(handle)
    assert (marker["generation"], marker["last_instance"], marker["last_volume"]) == (
        6,
        context.instance["id"],
        volume_id,
    )


def test_data_restored_from_a_snapshot_of_its_generation_is_mounted(context):
    """A restore: the volume's tag is far ahead, EC2 made it from the snapshot its tags name, of the marker's generation."""
    source, snapshot = context.snapshot_of_a_blank_volume(lineage_tags(context.lineage, 3))
    device = context.data_device(
        lineage_tags(context.lineage, 9, **{"ec2spot:restored-from": snapshot}), snapshot_id=snapshot
    )
    prepare_data_volume(context.agent, device, {"rows": b"restored"}, marker={"generation": 3, "last_volume": source})

    state = context.agent.mount()

    assert state["proof"] == "restored" and state["generation"] == 9


def test_own_volume_with_a_journal_to_replay_is_checked_then_mounted_with_every_write(context):
    """An unclean stop of the lineage's own data: the proof reads the marker without replay, e2fsck then replays."""
    device = context.data_device(lineage_tags(context.lineage, 2))
    prepare_data_volume(context.agent, device, {"rows": b"x"}, marker={"generation": 2})
    crash_with_writes_in_the_journal(context, device)

    state = context.agent.mount()

    assert state["proof"] == "current" and state["check"].startswith("e2fsck -p: exit")
    with open(os.path.join(context.agent.config["mount_point"], "later-write"), "rb") as handle:
        assert handle.read() == b"in the journal only"


def test_xfs_volume_of_the_lineage_is_proven_and_mounted(context):
    require_tool("mkfs.xfs")
    device = context.data_device(lineage_tags(context.lineage, 4), size_mib=320)
    prepare_data_volume(context.agent, device, {"rows": b"xfs rows"}, filesystem="xfs", marker={"generation": 4})

    state = context.agent.mount()

    assert state["filesystem"] == "xfs" and state["proof"] == "current" and state["check"] == "xfs_repair -n: clean"


def test_blank_check_of_a_20_gib_device_reads_at_most_192_mib(context, capsys):
    """The blank check's cost, measured: bytes read on a 20 GiB device, the time that is on gp3's baseline
    throughput (125 MiB/s, the EBS user guide's figure) and the wall time here (a sparse file: the page cache)."""
    device = context.devices.create(size_mib=20 * 1024)
    disk = agent_module.disk_for(device)
    started = time.monotonic()
    offset, read = disk.first_non_zero()
    elapsed = time.monotonic() - started
    modeled = read / (125 * MIB)
    with capsys.disabled():
        print(
            f"\nblank check, 20 GiB device: {read / MIB:.1f} MiB read, {modeled:.2f} s at gp3's 125 MiB/s "
            f"(modeled), {elapsed:.2f} s here"
        )
    assert offset is None
    assert 160 * MIB < read <= agent_module.BLANK_CHECK_BUDGET + 64 * 4096 and modeled < 2.0
    regions = agent_module.blank_check_regions(20 * 1024 * MIB)
    starts = [region[0] for region in regions]
    assert starts[0] == 0 and regions[-1][0] + regions[-1][1] == 20 * 1024 * MIB  # the head and the tail
    assert all(any(o <= index * 80 * MIB < o + n for o, n in regions) for index in range(256))  # every 1/256th
    assert any(o <= 128 * MIB and 128 * MIB + 4096 <= o + n for o, n in regions)  # ext4's first backup superblock


def test_ext4_whose_first_100_mib_were_wiped_is_refused_on_a_device_the_check_samples(context):
    """384 MiB: more than the check reads whole, so it samples; ext4's backup superblock at 128 MiB is one sample."""
    device = context.data_device(lineage_tags(context.lineage, 1, **FRESH), size_mib=384)
    prepare_data_volume(context.agent, device, {"rows": b"x"}, marker={"lineage": "billing"})
    with open(device, "r+b") as handle:
        handle.write(b"\0" * 100 * MIB)
    assert any(o <= 128 * MIB and 128 * MIB + 4096 <= o + n for o, n in agent_module.blank_check_regions(384 * MIB))
    before = device_digest(device)

    with pytest.raises(agent_module.Refused, match="not blank"):
        context.agent.mount()
    assert device_digest(device) == before


def test_a_refusal_is_told_to_the_control_plane_once_with_what_the_agent_saw(context, make_agent, catch):
    """The operator hears why the replacement has no data, at once, instead of nothing."""
    reports = catch(
        {"source": ["ec2spot.autorecover"], "detail": {"lineage": [context.lineage], "status": ["refused"]}}
    )
    agent = make_agent(context.lineage, report_boot=True)
    device, volume_id = context.data_device_and_id(lineage_tags(context.lineage, 2))
    prepare_data_volume(agent, device, {"ledger": b"rows"}, marker={"lineage": "billing", "generation": 2})

    for unused_attempt in range(2):  # the mount unit may be restarted: one report
        with pytest.raises(agent_module.Refused):
            agent.mount_or_report()

    [envelope] = reports.drain()
    assert envelope["detail-type"] == "EC2Spot Recovery Boot Report"
    detail = envelope["detail"]
    assert (detail["status"], detail["volume-id"], detail["device"]) == ("refused", volume_id, device)
    assert "its data belongs to lineage 'billing'" in detail["reason"] and "Nothing was written" in detail["reason"]
