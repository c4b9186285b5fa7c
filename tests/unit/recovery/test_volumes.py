"""move_lineage_volume: same-AZ moves, cross-AZ restores, fencing and idempotence."""

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import errors
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.volumes import move_lineage_volume

from sandbox import world as sandbox_world
from sandbox.clock import CONTEXT

from .conftest import backdate_snapshot, tags_of, volume


def snapshot_of(ec2, volume_id, complete=True):
    """Snapshot a lineage volume as spot_backup tags it; by default let it complete."""
    source = volume(ec2, volume_id)
    snap = ec2.create_snapshot(
        VolumeId=volume_id,
        TagSpecifications=[
            {
                "ResourceType": "snapshot",
                "Tags": t.as_list(
                    {
                        **tags_of(source),
                        t.KIND: "volume",
                        t.SOURCE_VOLUME: volume_id,
                        t.MANAGED_BY: t.MANAGER,
                        t.VOLUME_TYPE: source["VolumeType"],
                    }
                ),
            }
        ],
    )
    if complete:
        CONTEXT.settle()
    return snap["SnapshotId"]


def test_same_zone_move_from_stopped_holder_keeps_the_very_same_volume(ec2, launch, data_volume, clock):
    old = launch("us-east-1a", state="stopped")
    new = launch("us-east-1a")
    vol = data_volume("us-east-1a", attach_to=old, generation=3)

    result = move_lineage_volume(ec2, "pgdata", new, clock=clock)

    assert result.changed and not result.from_snapshot
    assert result.volume_id == vol and result.previous_instance_id == old and result.released_previous
    described = volume(ec2, vol)
    assert [(a["InstanceId"], a["State"]) for a in described["Attachments"]] == [(new, "attached")]
    assert result.device == "/dev/sdf"
    assert tags_of(described)[t.GENERATION] == "4" and result.generation == 4
    assert tags_of(described)[t.HOLDER] == new


def test_second_move_to_the_same_target_changes_nothing(ec2, launch, data_volume, clock):
    old, new = launch(state="stopped"), launch()
    vol = data_volume(attach_to=old)
    move_lineage_volume(ec2, "pgdata", new, clock=clock)
    again = move_lineage_volume(ec2, "pgdata", new, clock=clock)
    assert not again.changed and again.volume_id == vol and again.actions == []
    assert tags_of(volume(ec2, vol))[t.GENERATION] == "2"


def test_fence_refuses_to_release_from_running_holder_without_assertion(ec2, launch, data_volume, clock):
    old, new = launch(), launch()
    vol = data_volume(attach_to=old)
    with pytest.raises(errors.FenceViolation, match=rf"refusing to release {vol} from {old}: the instance is running"):
        move_lineage_volume(ec2, "pgdata", new, clock=clock)
    described = volume(ec2, vol)
    assert [a["InstanceId"] for a in described["Attachments"]] == [old]
    assert tags_of(described)[t.GENERATION] == "1"


def test_asserted_app_stop_lets_the_volume_leave_a_running_holder_without_force(ec2, launch, data_volume, clock):
    old, new = launch(), launch()
    vol = data_volume(attach_to=old)
    calls = []
    ec2.meta.events.register("provide-client-params.ec2.DetachVolume", lambda params, **_: calls.append(dict(params)))
    result = move_lineage_volume(ec2, "pgdata", new, app_stopped=True, clock=clock)
    assert result.released_previous
    assert calls == [{"VolumeId": vol, "InstanceId": old, "Force": False}]


def test_dry_run_plans_without_changing_anything(ec2, launch, data_volume, clock):
    old, new = launch(state="stopped"), launch()
    vol = data_volume(attach_to=old)
    before = volume(ec2, vol)
    result = move_lineage_volume(ec2, "pgdata", new, dry_run=True, clock=clock)
    assert result.changed
    assert result.actions == [
        f"release {vol} from {old} (stopped)",
        "raise generation of lineage pgdata to 2",
        f"attach {vol} to {new} at /dev/sdf",
    ]
    after = volume(ec2, vol)
    assert after["Attachments"] == before["Attachments"] and after["Tags"] == before["Tags"]


def test_cross_zone_restores_from_newest_completed_snapshot_instead_of_attaching(ec2, launch, data_volume, clock):
    old = launch("us-east-1a", state="stopped")
    target = launch("us-east-1b")
    vol = data_volume("us-east-1a", attach_to=old, generation=5, extra_tags={"Team": "db"})
    older = snapshot_of(ec2, vol)
    backdate_snapshot(older, 600)
    newest = snapshot_of(ec2, vol)
    started = CONTEXT.now()  # settled: the newest snapshot completed 50 s after its point in time
    clock.sleep(90)

    result = move_lineage_volume(ec2, "pgdata", target, clock=clock)

    assert result.from_snapshot and result.snapshot_id == newest != older
    assert result.volume_id != vol and result.previous_volume_id == vol
    point_in_time = ec2.describe_snapshots(SnapshotIds=[newest])["Snapshots"][0]["StartTime"]
    waited = (started - point_in_time).total_seconds() + 90
    # plus the modeled release time; the core reports the age rounded to 0.1 s
    assert waited - 0.05 <= result.data_age_seconds <= waited + 10
    restored = volume(ec2, result.volume_id)
    assert restored["AvailabilityZone"] == "us-east-1b" and restored["SnapshotId"] == newest
    assert (restored["VolumeType"], restored["Size"], restored["Iops"], restored["Throughput"]) == (
        "gp3",
        20,
        4000,
        250,
    )
    assert restored["Encrypted"]
    restored_tags = tags_of(restored)
    assert (
        restored_tags[t.GENERATION] == "6"
        and restored_tags["Team"] == "db"
        and restored_tags[t.RESTORED_FROM] == newest
    )
    assert [(a["InstanceId"], a["State"]) for a in restored["Attachments"]] == [(target, "attached")]
    old_volume = volume(ec2, vol)
    assert tags_of(old_volume)[t.SUPERSEDED_BY] == result.volume_id
    assert old_volume["State"] == "available"  # released from the stopped holder, never attached across zones

    again = move_lineage_volume(ec2, "pgdata", target, clock=clock)
    assert not again.changed and again.volume_id == result.volume_id


def test_cross_zone_ignores_pending_snapshots_and_reports_them(ec2, launch, data_volume, clock):
    old, target = launch("us-east-1a", state="stopped"), launch("us-east-1b")
    vol = data_volume("us-east-1a", attach_to=old)
    done = snapshot_of(ec2, vol)
    clock.sleep(600)
    pending = snapshot_of(ec2, vol, complete=False)  # AWS keeps it pending for minutes
    result = move_lineage_volume(ec2, "pgdata", target, clock=clock)
    assert result.snapshot_id == done and result.newer_pending_snapshot_id == pending


def test_cross_zone_refuses_when_data_would_be_older_than_max_data_age(ec2, launch, data_volume, clock):
    old, target = launch("us-east-1a", state="stopped"), launch("us-east-1b")
    vol = data_volume("us-east-1a", attach_to=old)
    snapshot_of(ec2, vol)
    clock.sleep(3600)
    before = ec2.describe_volumes()["Volumes"]
    with pytest.raises(errors.FenceViolation, match="more than max_data_age 600s"):
        move_lineage_volume(ec2, "pgdata", target, max_data_age=600, clock=clock)
    assert ec2.describe_volumes()["Volumes"] == before


def test_cross_zone_fences_a_running_holder(ec2, launch, data_volume, clock):
    old, target = launch("us-east-1a"), launch("us-east-1b")
    vol = data_volume("us-east-1a", attach_to=old)
    snapshot_of(ec2, vol)
    with pytest.raises(errors.FenceViolation):
        move_lineage_volume(ec2, "pgdata", target, clock=clock)
    assert [a["InstanceId"] for a in volume(ec2, vol)["Attachments"]] == [old]


def test_cross_zone_without_snapshot_is_refused_clearly(ec2, launch, data_volume, clock):
    old, target = launch("us-east-1a", state="stopped"), launch("us-east-1b")
    data_volume("us-east-1a", attach_to=old)
    with pytest.raises(errors.NotFound, match="no completed snapshot to restore from"):
        move_lineage_volume(ec2, "pgdata", target, clock=clock)


def test_never_initialised_volume_in_another_zone_is_replaced_by_a_blank_one_there(ec2, launch, data_volume, clock):
    """A new lineage's first instance lands in another zone than its blank volume: nothing to restore, nothing lost."""
    target = launch("us-east-1b")
    blank = data_volume("us-east-1a", extra_tags={t.FRESH: "true", "Team": "db"})

    plan = move_lineage_volume(ec2, "pgdata", target, dry_run=True, clock=clock)
    assert plan.changed and "was never initialised" in plan.actions[0] and len(ec2.describe_volumes()["Volumes"]) >= 1
    result = move_lineage_volume(ec2, "pgdata", target, clock=clock)

    assert result.changed and not result.from_snapshot and result.previous_volume_id == blank and result.generation == 2
    new = volume(ec2, result.volume_id)
    assert new["AvailabilityZone"] == "us-east-1b" and new["Encrypted"] and new.get("SnapshotId", "") == ""
    assert (new["VolumeType"], new["Size"], new["Iops"], new["Throughput"]) == ("gp3", 20, 4000, 250)
    assert [(a["InstanceId"], a["State"]) for a in new["Attachments"]] == [(target, "attached")]
    assert {t.FRESH: "true", "Team": "db", t.GENERATION: "2"}.items() <= tags_of(new).items()
    assert tags_of(volume(ec2, blank))[t.SUPERSEDED_BY] == result.volume_id
    assert not move_lineage_volume(ec2, "pgdata", target, clock=clock).changed


def test_fresh_volume_of_a_lineage_with_snapshots_is_not_treated_as_blank(ec2, launch, data_volume, clock):
    """A stale fresh tag (a boot report lost) must not pass for an empty volume once data was snapshotted."""
    old, target = launch("us-east-1a", state="stopped"), launch("us-east-1b")
    vol = data_volume("us-east-1a", attach_to=old, extra_tags={t.FRESH: "true"})
    snapshot = snapshot_of(ec2, vol)
    result = move_lineage_volume(ec2, "pgdata", target, clock=clock)
    assert result.from_snapshot and result.snapshot_id == snapshot


def test_forked_lineage_is_refused(ec2, launch, data_volume, clock):
    target = launch()
    first, second = data_volume(generation=2), data_volume(generation=2)
    with pytest.raises(errors.Ambiguous, match="2 volumes at generation 2") as refused:
        move_lineage_volume(ec2, "pgdata", target, clock=clock)
    assert first in str(refused.value) and second in str(refused.value)
    # Neither copy was touched: both still unattached.
    assert [v["Attachments"] for v in ec2.describe_volumes(VolumeIds=[first, second])["Volumes"]] == [[], []]


def test_never_attaches_an_older_generation_over_a_newer_one(ec2, launch, data_volume, clock):
    target = launch()
    data_volume(generation=7, attach_to=target, device="/dev/sdg")
    stale_holder = launch(state="stopped")
    # Simulate an operator retagging: the target holds generation 7; a generation-9 copy elsewhere.
    newer = data_volume(generation=9, attach_to=stale_holder)
    with pytest.raises(errors.FenceViolation, match="already holds another volume of the lineage"):
        move_lineage_volume(ec2, "pgdata", target, clock=clock)
    assert [a["InstanceId"] for a in volume(ec2, newer)["Attachments"]] == [stale_holder]


def test_target_holding_newer_generation_refuses_older_snapshot_restore(ec2, launch, data_volume, clock):
    holder = launch("us-east-1b")
    newest = data_volume("us-east-1b", generation=4, attach_to=holder)
    old_vol = data_volume("us-east-1a", generation=2, lineage="pgdata")
    snap = snapshot_of(ec2, old_vol)
    with pytest.raises(errors.FenceViolation, match=f"it already holds a newer volume of the lineage, {newest}"):
        move_lineage_volume(ec2, "pgdata", holder, snapshot_id=snap, clock=clock)


def test_requested_device_in_use_is_a_conflict(ec2, launch, data_volume, clock):
    old, new = launch(state="stopped"), launch()
    data_volume(attach_to=old)
    other = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    ec2.attach_volume(VolumeId=other, InstanceId=new, Device="/dev/sdh")
    with pytest.raises(errors.Conflict, match=f"device /dev/sdh on {new} already holds {other}"):
        move_lineage_volume(ec2, "pgdata", new, device_name="/dev/sdh", clock=clock)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lineage": "bad name!"}, "invalid lineage name"),
        ({"device_name": "/dev/sda1"}, "invalid device_name"),
        ({"max_data_age": -5}, "max_data_age must be positive"),
        ({"instance_id": "vol-123"}, "is not an EC2 instance id"),
    ],
)
def test_bad_input_is_refused(ec2, launch, clock, kwargs, message):
    params = {"lineage": "pgdata", "instance_id": launch(), **kwargs}
    with pytest.raises(errors.InvalidInput, match=message):
        move_lineage_volume(ec2, clock=clock, **params)


def test_unknown_instance_is_not_found(ec2, world, clock):
    with pytest.raises(errors.NotFound, match="instance i-0123456789abcdef0 does not exist"):
        move_lineage_volume(ec2, "pgdata", "i-0123456789abcdef0", clock=clock)


def test_lineage_without_anything_is_not_found(ec2, launch, clock):
    with pytest.raises(errors.NotFound, match="lineage ghost has no volume and no completed snapshot"):
        move_lineage_volume(ec2, "ghost", launch(), clock=clock)


def test_root_volumes_that_inherited_the_lineage_tag_are_not_lineage_data(ec2, world, data_volume, clock):
    """Launch templates and ec2_instance copy instance tags to root volumes; those are not the data."""

    def launch_propagating(zone):
        lineage_tag = [{"Key": t.LINEAGE, "Value": "pgdata"}]
        specifications = [{"ResourceType": kind, "Tags": lineage_tag} for kind in ("instance", "volume")]
        return sandbox_world.launch(ec2, world, zone, TagSpecifications=specifications)

    old, target = launch_propagating("us-east-1a"), launch_propagating("us-east-1b")
    ec2.stop_instances(InstanceIds=[old])
    vol = data_volume("us-east-1a", attach_to=old, generation=1)
    snapshot_of(ec2, vol)
    result = move_lineage_volume(ec2, "pgdata", target, clock=clock)
    assert result.from_snapshot and result.previous_volume_id == vol and result.generation == 2
