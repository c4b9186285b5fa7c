"""Boot-time mount on real filesystems: format only the brand-new, refuse the doubtful, keep data intact."""

import hashlib
import json
import os
import subprocess

import pytest

from tests.agent.conftest import FRESH, LOOP, agent_module, lineage_tags, prepare_data_volume


def signature(device):
    """blkid's view of a device: {} when it finds nothing (or the stand-in's superblock)."""
    return agent_module.disk_for(device).probe()


def is_blank(device):
    return not signature(device) and agent_module.disk_for(device).first_non_zero()[0] is None


def checksums(root):
    found = {}
    for directory, unused_dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def test_brand_new_volume_is_formatted_marked_and_mounted(make_agent, attached_device, lineage):
    agent = make_agent(lineage)
    device, volume_id = attached_device(lineage_tags(lineage, 1, **FRESH))

    state = agent.mount()

    assert state["initialised"] is True and state["volume_id"] == volume_id and state["filesystem"] == "ext4"
    assert signature(device)["TYPE"] == "ext4" and signature(device)["LABEL"] == "ec2spot-data"
    assert agent_module.mounted_source(agent.config["mount_point"]) is not None
    with open(os.path.join(agent.config["mount_point"], agent_module.MARKER), encoding="utf-8") as handle:
        marker = json.load(handle)
    assert marker["lineage"] == lineage and marker["generation"] == 1 and marker["uuid"] == signature(device)["UUID"]
    assert list(state["phases"]) == ["identity", "volume_attached", "device_found", "formatted", "checked", "mounted"]


def test_blank_volume_not_marked_new_is_refused_and_left_blank(make_agent, attached_device, lineage, workdir):
    agent = make_agent(lineage)
    device, _volume_id = attached_device(lineage_tags(lineage, 4))

    with pytest.raises(agent_module.Refused, match="is blank, but it is not tagged ec2spot:fresh=true"):
        agent.mount()

    assert is_blank(device)
    assert agent_module.mounted_source(agent.config["mount_point"]) is None
    with pytest.raises(agent_module.Refused, match="not mounted"):
        agent.start_app()
    assert not os.path.exists(os.path.join(workdir, "app-started"))


def test_volume_with_data_is_mounted_untouched(make_agent, attached_device, lineage):
    agent = make_agent(lineage)
    device, _volume_id = attached_device(lineage_tags(lineage, 3))
    prepare_data_volume(
        agent,
        device,
        {"pg/base/1": os.urandom(200_000), "pg/PG_VERSION": b"16\n", "canary": b"alive"},
        marker={"generation": 3},
    )
    before_signature = signature(device)
    disk_mount = agent.config["mount_point"]
    subprocess.run(["mount", "-o", "ro", device, disk_mount], check=True) if LOOP else None
    before = checksums(disk_mount) if LOOP else None
    subprocess.run(["umount", disk_mount], check=True) if LOOP else None

    state = agent.mount()

    assert state["initialised"] is False and state["generation"] == 3
    after = checksums(disk_mount)
    marker = after.pop(agent_module.MARKER)
    if LOOP:
        before.pop(agent_module.MARKER)
        assert after == before
    assert marker  # the marker was rewritten with this boot's generation and instance, nothing else changed
    assert signature(device)["UUID"] == before_signature["UUID"]


@pytest.mark.parametrize(
    "files, marker, reason",
    [
        ({"ledger": b"other service's data"}, {"lineage": "billing"}, "belongs to lineage 'billing'"),
        ({"file": b"x"}, {"generation": 7}, "already reached generation 7"),
    ],
    ids=["another lineage's data", "data newer than its tags"],
)
def test_data_that_is_not_the_volumes_generation_of_the_lineage_is_refused_and_unmounted(
    make_agent, attached_device, lineage, files, marker, reason
):
    agent = make_agent(lineage)
    device, _volume_id = attached_device(lineage_tags(lineage, 2))
    prepare_data_volume(agent, device, files, marker=marker)

    with pytest.raises(agent_module.Refused, match=reason):
        agent.mount()
    assert agent_module.mounted_source(agent.config["mount_point"]) is None


def test_older_generation_is_refused_before_the_device_is_touched(make_agent, volume, attached_device, lineage):
    agent = make_agent(lineage)
    volume(lineage_tags(lineage, 5), attach=False)  # the current copy, somewhere else
    device, _stale = attached_device(lineage_tags(lineage, 4))

    with pytest.raises(agent_module.Refused, match="holds generation 4 .* holds the same or a newer one"):
        agent.mount()
    assert is_blank(device)


def test_filesystem_without_marker_is_refused_unless_adopted(make_agent, attached_device, lineage):
    agent = make_agent(lineage)
    device, _volume_id = attached_device(lineage_tags(lineage, 1))
    disk = agent_module.disk_for(device)
    disk.make_filesystem("ext4", "legacy")

    with pytest.raises(agent_module.Refused, match="no lineage marker"):
        agent.mount()
    assert agent_module.mounted_source(agent.config["mount_point"]) is None

    state = agent.mount(adopt=True)
    assert state["mounted"] and os.path.exists(os.path.join(agent.config["mount_point"], agent_module.MARKER))


def test_crash_between_format_and_marker_is_finished_on_the_next_boot(make_agent, attached_device, lineage):
    agent = make_agent(lineage)
    device, _volume_id = attached_device(lineage_tags(lineage, 1, **FRESH))
    disk = agent_module.disk_for(device)
    disk.make_filesystem("ext4", "ec2spot-data")  # formatted, then the instance died before the marker

    state = agent.mount()
    assert state["initialised"] is False and os.path.exists(
        os.path.join(agent.config["mount_point"], agent_module.MARKER)
    )


@pytest.mark.skipif(not LOOP, reason="needs loop devices: a directory stand-in has no bytes to scribble on")
def test_unknown_non_blank_content_is_refused(make_agent, attached_device, lineage):
    agent = make_agent(lineage)
    device, _volume_id = attached_device(lineage_tags(lineage, 1, **FRESH))  # even a fresh tag does not license it
    with open(device, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"somebody's bytes")

    with pytest.raises(agent_module.Refused, match="not blank"):
        agent.mount()
    with open(device, "rb") as handle:
        handle.seek(4096)
        assert handle.read(16) == b"somebody's bytes"


def test_device_that_appears_late_is_waited_for(make_agent, devices, volume, clock, lineage):
    agent = make_agent(lineage, device_wait_seconds=60)
    volume_id = volume(lineage_tags(lineage, 1, **FRESH))
    device = devices.create()
    clock.at(7, lambda: devices.link(volume_id, device))  # udev names it 7 s after the attachment

    state = agent.mount()
    assert state["mounted"] and sum(clock.slept) >= 7


def test_missing_device_times_out_clearly_and_the_app_is_not_started(make_agent, volume, clock, workdir, lineage):
    agent = make_agent(lineage, device_wait_seconds=20)
    volume_id = volume(lineage_tags(lineage, 1, **FRESH))

    with pytest.raises(
        agent_module.TimedOut, match=f"{volume_id} is attached but no device for it appeared .* not started"
    ):
        agent.mount()
    assert 20 <= sum(clock.slept) < 25
    with pytest.raises(agent_module.Refused):
        agent.start_app()
    assert not os.path.exists(os.path.join(workdir, "app-started"))


def test_volume_never_attached_times_out(make_agent, clock, lineage):
    agent = make_agent(lineage, device_wait_seconds=15)
    with pytest.raises(agent_module.TimedOut, match="no volume of lineage .* was attached"):
        agent.mount()


def test_lineage_volume_mounts_intact_beside_a_blank_unmarked_device(make_agent, attached_device, lineage, workdir):
    """The issue's "done when": files intact on the lineage volume; the blank device next to it stays blank."""
    agent = make_agent(lineage)
    data_device, data_id = attached_device(lineage_tags(lineage, 1))
    blank_device, _blank_id = attached_device({"Name": "scratch"}, device_name="/dev/sdg")  # blank, of no lineage
    canary = os.urandom(65536)
    prepare_data_volume(agent, data_device, {"canary.bin": canary})

    agent.mount()
    state = agent.start_app()

    with open(os.path.join(agent.config["mount_point"], "canary.bin"), "rb") as handle:
        assert handle.read() == canary
    assert state["volume_id"] == data_id and os.path.exists(os.path.join(workdir, "app-started"))
    assert is_blank(blank_device)


def test_second_mount_in_the_same_boot_changes_nothing(make_agent, attached_device, lineage):
    agent = make_agent(lineage)
    attached_device(lineage_tags(lineage, 1, **FRESH))
    first = agent.mount()
    second = agent.mount()
    assert first == second


def test_boot_report_reaches_eventbridge_with_the_phases(make_agent, attached_device, lineage, catch):
    reports = catch({"source": ["ec2spot.autorecover"], "detail": {"lineage": [lineage]}})
    agent = make_agent(lineage, report_boot=True)
    _device, volume_id = attached_device(lineage_tags(lineage, 1, **FRESH))

    agent.mount()
    state = agent.start_app()

    [envelope] = reports.drain()
    assert envelope["detail-type"] == "EC2Spot Recovery Boot Report"
    detail = envelope["detail"]
    assert detail["volume-id"] == volume_id and detail["initialised"] is True and detail["lineage"] == lineage
    assert {"identity", "formatted", "mounted", "app_started", "reported"} <= set(detail["phases"])
    assert detail["phases"]["mounted"] <= detail["phases"]["app_started"] <= detail["phases"]["reported"]
    assert "reported" in state["phases"]
    agent.start_app()  # a second start-app neither restarts the app nor reports again
    assert reports.drain() == []


def test_a_replacement_waiting_for_its_data_says_it_is_ready_once_then_reports_its_boot(
    make_agent, volume, devices, instance, ec2, box, clock, lineage, catch, workdir
):
    """Up with no data volume attached yet: the agent tells the control plane once, on the first look, that it is
    ready for its data (the cut-over moves it then), keeps waiting, and reports the boot once the data comes."""
    reports = catch({"source": ["ec2spot.autorecover"], "detail": {"lineage": [lineage]}})
    agent = make_agent(lineage, report_boot=True, device_wait_seconds=60)
    volume_id = volume(lineage_tags(lineage, 1, **FRESH), attach=False)
    device = devices.create()

    def the_data_arrives():
        ec2.attach_volume(VolumeId=volume_id, InstanceId=instance["id"], Device="/dev/sdf")
        box.settle()
        devices.link(volume_id, device)

    clock.at(12, the_data_arrives)
    began = clock.now()
    agent.mount()
    agent.start_app()

    # Once it has said it is ready it looks at its own devices every READY_DEVICE_LOOK (0.2 s) and asks EC2 when
    # one appears: the data that arrives at 12 s is seen within one look.
    looks = int(12 / agent_module.READY_DEVICE_LOOK) - 1
    assert clock.slept[:looks] == [agent_module.READY_DEVICE_LOOK] * looks
    ready, boot = reports.drain()
    seen = agent_module.parse_time(boot["detail"]["phases"]["volume_attached"]) - began
    assert 12 <= seen.total_seconds() <= 12 + agent_module.READY_DEVICE_LOOK + 1e-6
    assert ready["detail-type"] == "EC2Spot Replacement Ready"
    assert ready["detail"] == {
        "instance-id": instance["id"],
        "lineage": lineage,
        "service": "pg",
        "waiting-since": ready["detail"]["waiting-since"],
    }
    assert ready["detail"]["waiting-since"] < boot["detail"]["phases"]["volume_attached"]
    assert boot["detail-type"] == "EC2Spot Recovery Boot Report" and boot["detail"]["volume-id"] == volume_id
    assert os.path.exists(os.path.join(workdir, "run", "ready.json"))
    assert not make_agent(lineage, report_boot=True).announce_ready(instance["id"])  # once per boot
    assert reports.drain() == []


def test_seed_002_option_the_instance_takes_its_tagged_address_itself(
    make_agent, attached_device, lineage, ec2, instance
):
    address = ec2.allocate_address(
        Domain="vpc",
        TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "ec2spot:service", "Value": lineage}]}],
    )
    agent = make_agent(lineage, address_tags={"ec2spot:service": lineage})
    attached_device(lineage_tags(lineage, 1, **FRESH))

    agent.mount()
    state = agent.start_app()

    assert state["address"] == address["PublicIp"] and "address" in state["phases"]
    described = ec2.describe_addresses(AllocationIds=[address["AllocationId"]])["Addresses"][0]
    assert described["InstanceId"] == instance["id"]


def test_seed_002_option_refuses_an_ambiguous_address(make_agent, attached_device, lineage, ec2):
    for index in range(2):
        ec2.allocate_address(
            Domain="vpc",
            TagSpecifications=[
                {
                    "ResourceType": "elastic-ip",
                    "Tags": [{"Key": "ec2spot:service", "Value": lineage}, {"Key": "n", "Value": str(index)}],
                }
            ],
        )
    agent = make_agent(lineage, address_tags={"ec2spot:service": lineage})
    attached_device(lineage_tags(lineage, 1, **FRESH))
    agent.mount()
    with pytest.raises(agent_module.AgentError, match="2 Elastic IPs carry tags"):
        agent.start_app()
