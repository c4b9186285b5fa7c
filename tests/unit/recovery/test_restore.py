"""The restore core: staging a backup for a group, the rollback-aware restore source, choosing a backup, and the
standalone instance launched from a service's launch template."""

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import errors
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.restore_plan import choose_backup, plan
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.standalone import (
    launch_from_template,
    run_request,
)
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.volumes import (
    move_lineage_volume,
    stage_lineage_volume,
)

from sandbox.clock import CONTEXT

from .conftest import backdate_snapshot, tags_of, volume
from .test_volumes import snapshot_of


def test_stage_restores_the_backup_as_the_newest_generation_attached_to_nothing(ec2, launch, data_volume, clock):
    old = launch("us-east-1a", state="stopped")
    vol = data_volume("us-east-1a", attach_to=old, generation=4)
    nightly = snapshot_of(ec2, vol)
    backdate_snapshot(nightly, 3600)

    planned = stage_lineage_volume(ec2, "pgdata", "us-east-1b", nightly, dry_run=True, clock=clock)
    assert planned.changed and planned.volume_id is None and volume(ec2, vol)["Attachments"][0]["InstanceId"] == old

    staged = stage_lineage_volume(ec2, "pgdata", "us-east-1b", nightly, clock=clock)
    assert staged.changed and staged.generation == 5 and staged.previous_volume_id == vol and staged.released_previous
    assert 3600 <= staged.data_age_seconds < 3700
    restored = volume(ec2, staged.volume_id)
    assert (
        restored["AvailabilityZone"] == "us-east-1b"
        and restored["State"] == "available"
        and restored["Attachments"] == []
    )
    assert tags_of(restored)[t.RESTORED_FROM] == nightly and tags_of(restored)[t.GENERATION] == "5"
    assert t.HOLDER not in tags_of(restored)
    assert tags_of(volume(ec2, vol))[t.SUPERSEDED_BY] == staged.volume_id  # the old data is kept

    again = stage_lineage_volume(ec2, "pgdata", "us-east-1b", nightly, clock=clock)
    assert not again.changed and again.volume_id == staged.volume_id


def test_stage_refuses_to_take_the_data_from_a_running_writer(ec2, launch, data_volume, clock):
    writer = launch("us-east-1a")
    vol = data_volume("us-east-1a", attach_to=writer)
    nightly = snapshot_of(ec2, vol)
    with pytest.raises(errors.FenceViolation, match=f"refusing to release {vol} from {writer}"):
        stage_lineage_volume(ec2, "pgdata", "us-east-1a", nightly, clock=clock)
    assert len(ec2.describe_volumes(Filters=[{"Name": f"tag:{t.LINEAGE}", "Values": ["pgdata"]}])["Volumes"]) == 1


def test_a_later_move_to_another_zone_keeps_the_rollback(ec2, launch, data_volume, clock):
    """After a rollback, a snapshot of the superseded generation taken later must not undo it."""
    old = launch("us-east-1a", state="stopped")
    vol = data_volume("us-east-1a", attach_to=old, generation=4)
    nightly = snapshot_of(ec2, vol)
    backdate_snapshot(nightly, 3600)
    fence_snapshot = snapshot_of(ec2, vol)  # e.g. the terminate hook's, taken when the group was scaled to 0
    staged = stage_lineage_volume(ec2, "pgdata", "us-east-1a", nightly, clock=clock)

    elsewhere = launch("us-east-1b")
    moved = move_lineage_volume(ec2, "pgdata", elsewhere, clock=clock)
    assert moved.from_snapshot and moved.snapshot_id == nightly != fence_snapshot
    assert moved.previous_volume_id == staged.volume_id and moved.generation == 6

    # Once the restored line has a snapshot of its own, that one is the newest data.
    own = snapshot_of(ec2, moved.volume_id)
    third = launch("us-east-1a")
    ec2.stop_instances(InstanceIds=[elsewhere])
    CONTEXT.settle()
    assert move_lineage_volume(ec2, "pgdata", third, clock=clock).snapshot_id == own


def test_a_staged_rollback_older_than_max_data_age_still_reaches_another_zone(ec2, launch, data_volume, clock):
    """max_data_age guards against losing writes: a staged backup no instance has held loses none when it is
    restored elsewhere, however old the operator's chosen backup is. Once an instance held it, the age counts."""
    old = launch("us-east-1a", state="stopped")
    vol = data_volume("us-east-1a", attach_to=old, generation=4)
    last_week = snapshot_of(ec2, vol)
    backdate_snapshot(last_week, 7 * 86400)
    staged = stage_lineage_volume(ec2, "pgdata", "us-east-1a", last_week, clock=clock)

    elsewhere = launch("us-east-1b")
    moved = move_lineage_volume(ec2, "pgdata", elsewhere, max_data_age=3600, clock=clock)
    assert moved.from_snapshot and moved.snapshot_id == last_week and moved.previous_volume_id == staged.volume_id
    assert moved.data_age_seconds >= 7 * 86400  # reported as it is, not hidden

    # The restored copy has now been held by an instance: restoring the week-old backup again would lose its writes.
    ec2.stop_instances(InstanceIds=[elsewhere])
    CONTEXT.settle()
    third = launch("us-east-1a")
    before = ec2.describe_volumes()["Volumes"]
    with pytest.raises(errors.FenceViolation, match="more than max_data_age 3600s"):
        move_lineage_volume(ec2, "pgdata", third, max_data_age=3600, clock=clock)
    assert ec2.describe_volumes()["Volumes"] == before


def test_choose_backup_by_id_image_time_or_newest(ec2, launch, data_volume, clock):
    holder = launch("us-east-1a", lineage="pgdata", state="stopped")
    vol = data_volume("us-east-1a", attach_to=holder)
    older, newer = snapshot_of(ec2, vol), None
    backdate_snapshot(older, 7200)
    newer = snapshot_of(ec2, vol)
    report = plan(ec2, "pgdata")
    assert [b["snapshot_id"] for b in report["backups"]] == [newer, older]
    assert report["chosen_backup"]["snapshot_id"] == newer and not report["already_restored"]
    assert report["live_writers"] == [] and report["current"]["holder"]["state"] == "stopped"

    backups = report["backups"]
    assert choose_backup(ec2, "pgdata", backups, snapshot_id=older)["snapshot_id"] == older
    newest_taken = backups[0]["start_time"]
    assert choose_backup(ec2, "pgdata", backups, before=newest_taken.replace("Z", "+00:00"))["snapshot_id"] == older
    with pytest.raises(
        errors.NotFound, match="no completed backup of lineage pgdata was taken before 2001-01-01T00:00:00Z"
    ):
        choose_backup(ec2, "pgdata", backups, before="2001-01-01")
    with pytest.raises(errors.InvalidInput, match="not an ISO 8601"):
        choose_backup(ec2, "pgdata", backups, before="yesterday")

    image = ec2.create_image(
        InstanceId=holder,
        Name="other",
        TagSpecifications=[{"ResourceType": "image", "Tags": t.as_list({t.LINEAGE: "other", t.BACKUP_SET: "other-1"})}],
    )["ImageId"]
    with pytest.raises(errors.InvalidInput, match=f"{image} is not an ec2spot.autorecover backup of lineage pgdata"):
        choose_backup(ec2, "pgdata", backups, image_id=image)


def test_newest_backup_after_a_rollback_is_the_one_restored_not_a_later_snapshot_of_the_old_line(
    ec2, launch, data_volume, clock
):
    old = launch("us-east-1a", state="stopped")
    vol = data_volume("us-east-1a", attach_to=old, generation=3)
    nightly = snapshot_of(ec2, vol)
    backdate_snapshot(nightly, 3600)
    assert plan(ec2, "pgdata")["chosen_backup"]["snapshot_id"] == nightly
    later = snapshot_of(ec2, vol)  # taken after the nightly, before the rollback (e.g. when the writer was fenced)
    stage_lineage_volume(ec2, "pgdata", "us-east-1a", nightly, clock=clock)
    assert plan(ec2, "pgdata")["chosen_backup"]["snapshot_id"] == nightly != later
    assert plan(ec2, "pgdata", snapshot_id=later)["chosen_backup"]["snapshot_id"] == later  # named: a roll forward


def test_plan_reports_a_restore_already_done(ec2, launch, data_volume, clock):
    old = launch("us-east-1a", state="stopped")
    vol = data_volume("us-east-1a", attach_to=old)
    nightly = snapshot_of(ec2, vol)
    target = launch("us-east-1b", lineage="pgdata")
    move_lineage_volume(ec2, "pgdata", target, snapshot_id=nightly, clock=clock)
    report = plan(ec2, "pgdata", snapshot_id=nightly)
    assert report["already_restored"] and report["live_writers"] == [target]
    assert report["current"]["holder"]["instance_id"] == target


def test_the_request_carries_the_templates_interface_with_the_chosen_subnet():
    data = {
        "NetworkInterfaces": [{"DeviceIndex": 0, "Groups": ["sg-1"], "DeleteOnTermination": True}],
        "MetadataOptions": {"HttpTokens": "optional", "HttpPutResponseHopLimit": 2},
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "db"}]},
            {"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "db"}]},
        ],
    }
    request = run_request(
        data, "pg", "$Default", "subnet-2", "m6i.large", "spot", "pg-restored", {t.LINEAGE: "pgdata"}, "token"
    )
    assert "SubnetId" not in request
    assert request["NetworkInterfaces"] == [
        {"DeviceIndex": 0, "Groups": ["sg-1"], "DeleteOnTermination": True, "SubnetId": "subnet-2"}
    ]
    assert request["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 2}
    assert request["InstanceMarketOptions"]["SpotOptions"]["InstanceInterruptionBehavior"] == "terminate"
    assert t.as_dict(request["TagSpecifications"][0]["Tags"]) == {
        "team": "db",
        t.LINEAGE: "pgdata",
        "Name": "pg-restored",
    }
    plain = run_request({}, "pg", "$Default", "subnet-2", None, "on-demand", "pg-restored", {}, "token")
    assert plain["SubnetId"] == "subnet-2" and "InstanceMarketOptions" not in plain and "InstanceType" not in plain


def test_launch_from_template_is_idempotent_by_name_and_refuses_bad_input(ec2, world, clock):
    ec2.create_launch_template(
        LaunchTemplateName="pg-svc",
        LaunchTemplateData={
            "ImageId": world["image_id"],
            "InstanceType": "t3.micro",
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )
    subnet = world["subnets"]["us-east-1b"]
    planned = launch_from_template(ec2, "pg-svc", subnet, "pg-restored", "pgdata", dry_run=True, clock=clock)
    assert planned.changed and planned.instance_id is None and planned.instance_type == "t3.micro"
    first = launch_from_template(ec2, "pg-svc", subnet, "pg-restored", "pgdata", market="spot", clock=clock)
    assert (
        first.changed
        and first.state == "running"
        and first.market == "spot"
        and first.availability_zone == "us-east-1b"
    )
    again = launch_from_template(ec2, "pg-svc", subnet, "pg-restored", "pgdata", market="spot", clock=clock)
    assert not again.changed and again.instance_id == first.instance_id
    with pytest.raises(errors.InvalidInput, match="market must be one of on-demand, spot"):
        launch_from_template(ec2, "pg-svc", subnet, "x", "pgdata", market="reserved", clock=clock)
    with pytest.raises(errors.NotFound, match="launch template nope does not exist"):
        launch_from_template(ec2, "nope", subnet, "y", "pgdata", clock=clock)
