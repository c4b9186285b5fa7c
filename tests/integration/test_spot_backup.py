"""spot_backup through ansible-playbook: named sets are idempotent, check mode, retention, refusals."""

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t

from .conftest import failing, task
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
    assert old_image_snapshots <= set(pruned.last["deleted"]["snapshots"])
    assert our_images(ec2, **{t.BACKUP_SET: "it-retain-1"}) == []
    assert our_snapshots(ec2, **{t.BACKUP_SET: "it-retain-1"}) == []
    assert {i[t.BACKUP_SET] for i in (world.tags(img) for img in our_images(ec2, **{t.LINEAGE: "it-retain"}))} == {
        "it-retain-2", "it-retain-3"}
    assert not playbook([prune]).last["changed"]


def test_refusals_are_clear(sandbox, ec2, playbook):
    world = Fixtures(ec2, sandbox["world"])
    bare = world.instance()
    served = world.instance(tags={t.LINEAGE: "it-refuse"})
    world.volume("us-east-1a", "it-refuse", attach_to=served)
    run = playbook([
        failing("spot_backup", instance_id="i-0000000000000dead"),
        failing("spot_backup", lineage="nobody-has-this"),
        failing("spot_backup", instance_id=bare),
        failing("spot_backup", instance_id=bare, lineage="x"),
        failing("spot_backup", lineage="it-refuse", retention={"keep_newest": 0}),
        failing("spot_backup", lineage="it-refuse", name="has spaces"),
    ])
    messages = [r["msg"] for r in run.results]
    assert all(r["failed"] for r in run.results)
    assert "instance i-0000000000000dead does not exist" in messages[0]
    assert "no pending, running, stopping or stopped instance carries tags" in messages[1]
    assert f"instance {bare} has no data volumes to back up" in messages[2]
    assert "mutually exclusive" in messages[3]
    assert "keep_newest must be at least 1" in messages[4]
    assert "invalid backup name 'has spaces'" in messages[5]
    assert our_snapshots(ec2, **{t.SOURCE_INSTANCE: bare}) == []
    assert our_snapshots(ec2, **{t.SOURCE_INSTANCE: served}) == []  # bad retention refused before any backup
