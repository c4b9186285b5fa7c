"""spot_backup through ansible-playbook: named sets are idempotent, check mode, retention, refusals."""

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance

from .conftest import refusals, task
from .helpers import Fixtures


def our_snapshots(ec2, **tag_filter):
    query = [{"Name": f"tag:{k}", "Values": [v]} for k, v in {t.MANAGED_BY: t.MANAGER, **tag_filter}.items()]
    return ec2.describe_snapshots(OwnerIds=["self"], Filters=query)["Snapshots"]


def our_images(ec2, **tag_filter):
    query = [{"Name": f"tag:{k}", "Values": [v]} for k, v in {t.MANAGED_BY: t.MANAGER, **tag_filter}.items()]
    return ec2.describe_images(Owners=["self"], Filters=query)["Images"]


def test_backup_by_lineage_check_mode_then_twice(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    instance = world.instance(tags={t.LINEAGE: "it-backup"})
    volume = world.volume("us-east-1a", "it-backup", attach_to=instance, generation=4)
    backup = task("spot_backup", lineage="it-backup", name="it-backup-1", create_image=True, wait=True)

    checked = playbook([backup], check=True)
    assert checked.last["changed"] and checked.last["created"] == {"snapshots": [], "images": []}
    assert our_snapshots(ec2, **{t.LINEAGE: "it-backup"}) == [] and our_images(ec2, **{t.LINEAGE: "it-backup"}) == []

    first = playbook([backup])
    assert first.returncode == 0 and first.last["changed"], first.last
    [taken] = first.last["backups"]
    assert taken["instance_id"] == instance and taken["created_snapshots"] and taken["created_image"]
    assert [(s["volume_id"], s["lineage"], s["generation"]) for s in taken["snapshots"]] == [(volume, "it-backup", 4)]
    snaps = our_snapshots(ec2, **{t.BACKUP_SET: "it-backup-1", t.KIND: "volume"})
    assert [s["SnapshotId"] for s in snaps] == first.last["created"]["snapshots"]
    [image] = our_images(ec2, **{t.BACKUP_SET: "it-backup-1"})
    assert image["Name"] == f"it-backup-1-{instance}" and world.tags(image)[t.AUTO_BACKUP] == "true"

    second = playbook([backup])
    assert not second.last["changed"] and second.last["created"] == {"snapshots": [], "images": []}
    assert len(our_snapshots(ec2, **{t.BACKUP_SET: "it-backup-1", t.KIND: "volume"})) == 1


def test_retention_keeps_newest_and_deletes_image_snapshots(sandbox, ec2, playbook, box):
    world = Fixtures(ec2, sandbox["world"])
    instance = world.instance(tags={t.LINEAGE: "it-retain"})
    world.volume("us-east-1a", "it-retain", attach_to=instance)
    for name in ("it-retain-1", "it-retain-2", "it-retain-3"):
        assert playbook([task("spot_backup", lineage="it-retain", name=name, create_image=True)]).last["changed"]
    box.settle()  # the backups complete (AWS: minutes); retention never expires one in progress
    old_image = our_images(ec2, **{t.BACKUP_SET: "it-retain-1"})[0]
    old_image_snapshots = {m["Ebs"]["SnapshotId"] for m in old_image["BlockDeviceMappings"] if "Ebs" in m}
    prune = task("spot_backup", lineage="it-retain", name="it-retain-3", retention={"keep_newest": 2})

    checked = playbook([prune], check=True)
    assert checked.last["changed"] and checked.last["deleted"]["images"] == [old_image["ImageId"]]
    assert our_images(ec2, **{t.BACKUP_SET: "it-retain-1"})

    pruned = playbook([prune])
    assert pruned.last["changed"] and pruned.last["deleted"]["images"] == [old_image["ImageId"]]
    assert old_image_snapshots and old_image_snapshots <= set(pruned.last["deleted"]["snapshots"])
    assert our_images(ec2, **{t.BACKUP_SET: "it-retain-1"}) == []
    assert our_snapshots(ec2, **{t.BACKUP_SET: "it-retain-1"}) == []
    assert {i[t.BACKUP_SET] for i in (world.tags(img) for img in our_images(ec2, **{t.LINEAGE: "it-retain"}))} == {
        "it-retain-2",
        "it-retain-3",
    }
    assert not playbook([prune]).last["changed"]


def test_retention_alone_on_a_lineage_without_instance_deletes_what_check_mode_listed(sandbox, ec2, playbook, box):
    world = Fixtures(ec2, sandbox["world"])
    instance = world.instance(tags={t.LINEAGE: "it-alone"})
    world.volume("us-east-1a", "it-alone", attach_to=instance)
    taken = [backup_instance(ec2, instance, f"it-alone-{n}", create_image=True) for n in (1, 2, 3)]
    box.settle()
    ec2.terminate_instances(InstanceIds=[instance])  # the lineage has no instance any more
    prune = task("spot_backup", backup=False, lineage="it-alone", retention={"keep_newest": 1})

    checked = playbook([prune], check=True, diff=True)
    assert checked.last["changed"] and checked.last["backups"] == [] and checked.last["retention"]["dry_run"]
    assert checked.last["deleted"]["images"] == [taken[0].image_id, taken[1].image_id]
    assert checked.last["diff"]["after"]["backups"] == [
        f"it-alone-3/{instance} (image)",
        f"it-alone-3/{instance} (volume)",
    ]
    assert len(our_images(ec2, **{t.LINEAGE: "it-alone"})) == 3

    pruned = playbook([prune])
    assert pruned.last["changed"] and not pruned.last["retention"]["dry_run"]
    for key in ("deleted_backups", "deleted_images", "deleted_snapshots", "kept", "skipped"):
        assert pruned.last["retention"][key] == checked.last["retention"][key], key
    assert [i["ImageId"] for i in our_images(ec2, **{t.LINEAGE: "it-alone"})] == [taken[2].image_id]
    assert {s["SnapshotId"] for s in our_snapshots(ec2, **{t.SOURCE_INSTANCE: instance})} == {
        m["Ebs"]["SnapshotId"]
        for m in ec2.describe_images(ImageIds=[taken[2].image_id])["Images"][0]["BlockDeviceMappings"]
    } | {s["snapshot_id"] for s in taken[2].snapshots}
    calls = pruned.last["retention"]["api_calls"]
    assert calls["DeregisterImage"] == 2 and calls["DeleteSnapshot"] == 2 and "DescribeInstances" not in calls
    assert not playbook([prune]).last["changed"]


def test_refusals_are_clear(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    bare = world.instance()
    served = world.instance(tags={t.LINEAGE: "it-refuse"})
    world.volume("us-east-1a", "it-refuse", attach_to=served)
    refusals(
        playbook,
        "spot_backup",
        [
            ({"instance_id": "i-0000000000000dead"}, "instance i-0000000000000dead does not exist"),
            ({"lineage": "nobody-has-this"}, "no pending, running, stopping or stopped instance carries tags"),
            ({"instance_id": bare}, f"instance {bare} has no data volumes to back up"),
            ({"instance_id": bare, "lineage": "x"}, "mutually exclusive"),
            ({"lineage": "it-refuse", "retention": {"keep_newest": 0}}, "keep_newest must be at least 1"),
            ({"lineage": "it-refuse", "name": "has spaces"}, "invalid backup name 'has spaces'"),
            ({"backup": False, "lineage": "it-refuse"}, "backup: false applies retention alone: give retention"),
            ({"lineages": ["it-refuse"], "retention": {"keep_newest": 1}}, "use them with backup: false"),
            (
                {"backup": False, "instance_tags": {"Team": "data"}, "retention": {"keep_newest": 1}},
                "not instance_tags",
            ),
        ],
    )
    assert our_snapshots(ec2, **{t.SOURCE_INSTANCE: bare}) == []
    assert our_snapshots(ec2, **{t.SOURCE_INSTANCE: served}) == []  # bad retention refused before any backup
