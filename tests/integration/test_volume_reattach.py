"""volume_reattach through ansible-playbook: idempotence, check mode, diff, and refusals."""

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t

from .conftest import refusals, task
from .helpers import Fixtures


def test_same_zone_move_twice_then_unchanged(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    # The lineage's instances carry its tag, as the fleet's launch template gives it: the operator's policy moves a
    # lineage volume only between lineage instances.
    mine = {t.LINEAGE: "it-same"}
    old, new = world.instance("us-east-1a", state="stopped", tags=mine), world.instance("us-east-1a", tags=mine)
    vol = world.volume("us-east-1a", "it-same", attach_to=old)

    checked = playbook([task("volume_reattach", lineage="it-same", instance_id=new)], check=True, diff=True)
    assert checked.returncode == 0 and checked.last["changed"]
    assert checked.last["diff"]["before"]["instance_id"] == old and checked.last["diff"]["after"]["instance_id"] == new
    assert [a["InstanceId"] for a in world.describe_volume(vol)["Attachments"]] == [old]  # check mode changed nothing

    first = playbook([task("volume_reattach", lineage="it-same", instance_id=new)])
    assert first.returncode == 0 and first.last["changed"], first.last
    assert (
        first.last["volume_id"] == vol and first.last["from_snapshot"] is False and first.last["device"] == "/dev/sdf"
    )
    attached = world.describe_volume(vol)
    assert [(a["InstanceId"], a["State"]) for a in attached["Attachments"]] == [(new, "attached")]
    assert world.tags(attached)[t.GENERATION] == "2"

    second = playbook([task("volume_reattach", lineage="it-same", instance_id=new)])
    assert second.returncode == 0 and not second.last["changed"]
    assert world.tags(world.describe_volume(vol))[t.GENERATION] == "2"


def test_cross_zone_restore_twice_then_unchanged(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    mine = {t.LINEAGE: "it-cross"}
    old, target = world.instance("us-east-1a", state="stopped", tags=mine), world.instance("us-east-1b", tags=mine)
    vol = world.volume("us-east-1a", "it-cross", attach_to=old)
    snap = world.snapshot(vol)

    first = playbook([task("volume_reattach", lineage="it-cross", instance_id=target)])
    assert first.returncode == 0 and first.last["changed"], first.last
    assert first.last["from_snapshot"] and first.last["snapshot_id"] == snap
    assert first.last["data_age_seconds"] >= 0 and first.last["availability_zone"] == "us-east-1b"
    restored = world.describe_volume(first.last["volume_id"])
    assert restored["AvailabilityZone"] == "us-east-1b" and restored["SnapshotId"] == snap
    assert [a["InstanceId"] for a in restored["Attachments"]] == [target]

    second = playbook([task("volume_reattach", lineage="it-cross", instance_id=target)])
    assert not second.last["changed"] and second.last["volume_id"] == first.last["volume_id"]


def test_refusals_are_clear_and_change_nothing(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    live, target = world.instance("us-east-1a"), world.instance("us-east-1a")
    vol = world.volume("us-east-1a", "it-fenced", attach_to=live)
    before = world.describe_volume(vol)

    results = refusals(
        playbook,
        "volume_reattach",
        [
            (
                {"lineage": "it-fenced", "instance_id": target},
                f"refusing to release {vol} from {live}: the instance is running",
            ),
            (
                {"lineage": "it-fenced", "instance_id": "i-0000000000000dead"},
                "instance i-0000000000000dead does not exist",
            ),
            (
                {"lineage": "no-such-lineage", "instance_id": target},
                "lineage no-such-lineage has no volume and no completed snapshot",
            ),
            ({"lineage": "it-fenced", "instance_id": target, "wait_timeout": "soon"}, ("wait_timeout", "int")),
            (
                {"lineage": "it-fenced", "instance_id": target, "device_name": "/dev/sda1"},
                "invalid device_name '/dev/sda1'",
            ),
        ],
    )
    assert results[0]["error"]["code"] == "FenceViolation"
    after = world.describe_volume(vol)
    assert after["Attachments"] == before["Attachments"] and after["Tags"] == before["Tags"]
