"""Retention: the selection rules as a table (pure), then apply_retention against moto with the sandbox's rules."""

from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import errors
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.retention import (
    ALL_LINEAGES,
    References,
    apply_retention,
    catalogue,
    plan_retention,
)

from sandbox.clock import CONTEXT

from .conftest import moto_ec2

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
ACCOUNT = "123456789012"
FOREIGN = "210987654321"


def _tags(name, lineage, instance, kind=None, managed_by=t.MANAGER, **extra):
    tags = {t.BACKUP_SET: name, t.SOURCE_INSTANCE: instance, **extra}
    if managed_by is not None:
        tags[t.MANAGED_BY] = managed_by
    if lineage is not None:
        tags[t.LINEAGE] = lineage
    if kind:
        tags[t.KIND] = kind
    return t.as_list(tags)


def ami(
    key,
    days,
    lineage="pgdata",
    state="available",
    instance="i-1",
    owner=ACCOUNT,
    protection="disabled",
    shares=(),
    snapshot_tags=None,
    name=None,
    **tags,
):
    """AMI ``ami-<key>``, ``days`` old, as DescribeImages gives it, with its own snapshot (kind image), plus ``shares``."""
    created = (NOW - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    own = f"snap-{key}"
    image = {
        "ImageId": f"ami-{key}",
        "OwnerId": owner,
        "State": state,
        "CreationDate": created,
        "DeregistrationProtection": protection,
        "Tags": _tags(name or key, lineage, instance, **tags),
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": s}} for s in (own, *shares)],
    }
    snapshot = {
        "SnapshotId": own,
        "OwnerId": owner,
        "State": "completed",
        "StartTime": NOW - timedelta(days=days),
        "Tags": snapshot_tags if snapshot_tags is not None else _tags(key, lineage, instance, kind="image"),
    }
    return [image], [snapshot]


def vol(key, days, lineage="pgdata", states=("completed",), instance="i-1", owner=ACCOUNT, **tags):
    """A volume snapshot set ``days`` old: one snapshot per state."""
    return [], [
        {
            "SnapshotId": f"snap-{key}-{n}",
            "OwnerId": owner,
            "State": state,
            "StartTime": NOW - timedelta(days=days),
            "Tags": _tags(key, lineage, instance, kind="volume", **tags),
        }
        for n, state in enumerate(states)
    ]


def listings(*parts):
    return [i for p in parts for i in p[0]], [s for p in parts for s in p[1]]


def plan_of(parts, policy, lineages=("pgdata",), references=None, source_instances=None):
    images, snapshots = listings(*parts)
    return plan_retention(
        catalogue(images, snapshots, lineages, source_instances, account_id=ACCOUNT), policy, NOW, references
    )


def gone(plan):
    """The AMIs (ami-<key>) and volume sets (<name> vol) the plan deletes."""
    return sorted(b.image_id if b.kind == "image" else f"{b.name} vol" for b in plan.doomed)


KEEP_2 = {"keep_newest": 2}
WEEK = {"max_age_days": 7}
THREE_DAYS = {"max_age_days": 3}
BOTH = {"keep_newest": 2, "max_age_days": 3}
LT = References(images={"ami-lt": "fleet version 7"}, snapshots={"snap-mapped-0": "fleet version 9"})

# (case, backups, policy, scope, references, what goes)
CASES = [
    (
        "by count, per kind",
        [ami("a1", 1), ami("a2", 2), ami("a3", 3), vol("v1", 1), vol("v2", 2), vol("v3", 3)],
        KEEP_2,
        None,
        None,
        ["ami-a3", "v3 vol"],
    ),
    ("by age; exactly the age stays", [ami("a1", 1), ami("a7", 7), ami("a8", 8)], WEEK, None, None, ["ami-a8"]),
    (
        "union: either rule keeps",
        [ami("a1", 1), ami("a2", 2), ami("a3", 3), ami("a6", 6)],
        BOTH,
        None,
        None,
        ["ami-a6"],
    ),
    (
        "worked example of the docs",
        [
            ami("p0", 0, state="pending"),
            ami("a1", 1),
            ami("a2", 2),
            ami("a3", 3),
            ami("a6", 6),
            vol("v10", 10),
            vol("v20", 20),
            vol("v30", 30),
        ],
        BOTH,
        None,
        None,
        ["ami-a6", "v30 vol"],
    ),
    ("newest AMI stays though a newer volume set exists", [ami("a10", 10), vol("v1", 1)], THREE_DAYS, None, None, []),
    (
        "newest volume set stays though a newer AMI exists",
        [vol("v10", 10), vol("v20", 20), ami("a1", 1)],
        THREE_DAYS,
        None,
        None,
        ["v20 vol"],
    ),
    (
        "in progress: not counted",
        [ami("p0", 0, state="pending"), ami("a1", 1), ami("a2", 2)],
        {"keep_newest": 1},
        None,
        None,
        ["ami-a2"],
    ),
    (
        "in progress: never deleted, however old",
        [ami("p9", 9, state="pending"), ami("a1", 1)],
        {"keep_newest": 1},
        None,
        None,
        [],
    ),
    (
        "a volume set with a snapshot pending is in progress",
        [vol("v0", 0, states=("completed", "pending")), vol("v1", 1), vol("v2", 2)],
        {"keep_newest": 1},
        None,
        None,
        ["v2 vol"],
    ),
    (
        "failed: neither counted nor deleted",
        [ami("f5", 5, state="failed"), ami("a1", 1)],
        {"keep_newest": 1},
        None,
        None,
        [],
    ),
    ("ties: the greater name is newer", [ami("b", 1), ami("a", 1)], {"keep_newest": 1}, None, None, ["ami-a"]),
    (
        "ties: same name, the greater id is newer",
        [ami("x2", 1, name="x", instance="i-2"), ami("x1", 1, name="x")],
        {"keep_newest": 1},
        None,
        None,
        ["ami-x1"],
    ),
    (
        "lineages are judged apart",
        [ami("a1", 1), ami("a2", 2), ami("b5", 5, lineage="billing")],
        {"keep_newest": 1},
        ["pgdata", "billing"],
        None,
        ["ami-a2"],
    ),
    ("launch template, non-default deep version", [ami("a1", 1), ami("lt", 9)], {"keep_newest": 1}, None, LT, []),
    ("a snapshot a launch template maps", [vol("v1", 1), vol("mapped", 9)], {"keep_newest": 1}, None, LT, []),
    (
        "deregistration protection",
        [
            ami("a1", 1),
            ami("p9", 9, protection="enabled-without-cooldown"),
            ami("c9", 9, protection="disabled after 2026-11-25T00:00:00.000Z"),
        ],
        {"keep_newest": 1},
        None,
        None,
        [],
    ),
    ("another account's AMI", [ami("a1", 1), ami("f9", 9, owner=FOREIGN)], {"keep_newest": 1}, None, None, []),
    (
        "look-alike lineage tags",
        [
            ami("a1", 1),
            ami("x1", 9, lineage="pgdata-old"),
            ami("x2", 9, lineage="PGDATA"),
            ami("x3", 9, lineage="pgdata "),
            ami("x4", 9, managed_by="ec2spot.autorecover-fork"),
            ami("x5", 9, managed_by=None),
            vol("x6", 9, managed_by="Ec2spot.Autorecover"),
        ],
        {"keep_newest": 1},
        None,
        None,
        [],
    ),
    (
        "every lineage: not the untagged",
        [ami("a1", 1), ami("a2", 2), ami("n1", 1, lineage=None), ami("n9", 9, lineage=None)],
        {"keep_newest": 1},
        ALL_LINEAGES,
        None,
        ["ami-a2"],
    ),
]


@pytest.mark.parametrize("case, parts, policy, lineages, references, expected", CASES, ids=[c[0] for c in CASES])
def test_what_retention_deletes(case, parts, policy, lineages, references, expected):
    plan = plan_of(parts, policy, lineages or ("pgdata",), references)
    assert gone(plan) == expected, case
    for backup in plan.doomed:  # every step comes from a backup that goes
        assert backup.image_id in plan.images or set(backup.snapshot_ids) <= set(plan.snapshots)
    assert set(plan.images) == {b.image_id for b in plan.doomed if b.kind == "image"}


def test_reasons_for_what_no_rule_keeps():
    plan = plan_of(
        [
            ami("p0", 0, state="pending"),
            ami("a3", 3),
            ami("lt", 9),
            ami("p9", 9, protection="enabled-with-cooldown"),
            vol("v10", 10),
            vol("v20", 20),
        ],
        {"max_age_days": 1},
        references=LT,
    )
    assert plan.not_completed == {"p0/i-1 (image)": "pending"}
    assert plan.kept == {
        "a3/i-1 (image)": "newest completed image backup of pgdata",
        "lt/i-1 (image)": "its AMI ami-lt is used by launch template fleet version 7",
        "p9/i-1 (image)": "its AMI ami-p9 has deregistration protection (enabled-with-cooldown)",
        "v10/i-1 (volume)": "newest completed volume backup of pgdata",
    }
    assert gone(plan) == ["v20 vol"]


def test_one_call_per_ami_and_per_volume_snapshot():
    plan = plan_of(
        [ami("a1", 1), ami("a2", 2), ami("a3", 3), vol("v1", 1), vol("v2", 2, states=("completed", "completed"))],
        {"keep_newest": 1},
    )
    assert plan.steps == [
        ("deregister", "ami-a3", True),
        ("deregister", "ami-a2", True),
        ("delete_snapshot", "snap-v2-0"),
        ("delete_snapshot", "snap-v2-1"),
    ]
    assert plan.snapshots == ["snap-a3", "snap-a2", "snap-v2-0", "snap-v2-1"] and plan.skipped == {}


def test_a_snapshot_an_ami_that_stays_shares_is_read_from_the_listing():
    """AWS keeps a snapshot another AMI uses: deregister with the flag, and say it stays (no InvalidSnapshot.InUse)."""
    plan = plan_of([ami("a1", 1, shares=("snap-a9",)), ami("a9", 9)], {"keep_newest": 1})
    assert plan.steps == [("deregister", "ami-a9", True)] and plan.snapshots == []
    assert plan.skipped == {"snap-a9": "also used by AMI ami-a1, which stays"}


def test_an_ami_mapping_a_snapshot_it_must_not_delete_goes_without_the_flag():
    """Its snapshot without our tag, or of a volume set that stays: deregister alone, delete only its own snapshot."""
    parts = [
        ami("a1", 1),
        ami("a9", 9, shares=("snap-keep-0", "snap-alien")),
        vol("keep", 1),
        ([], [{"SnapshotId": "snap-alien", "OwnerId": ACCOUNT, "State": "completed", "StartTime": NOW, "Tags": []}]),
    ]
    plan = plan_of(parts, {"keep_newest": 1})
    assert plan.steps == [("deregister", "ami-a9", False), ("delete_snapshot", "snap-a9")]
    assert plan.skipped == {
        "snap-keep-0": "a volume snapshot of a backup that stays",
        "snap-alien": "not a snapshot this collection manages (another account's, or untagged)",
    }


def test_a_volume_set_an_ami_that_stays_maps_stays():
    plan = plan_of([ami("a1", 1, shares=("snap-v9-0",)), vol("v1", 1), vol("v9", 9)], {"keep_newest": 1})
    assert gone(plan) == [] and plan.kept["v9/i-1 (volume)"] == "its snapshots are used by AMI ami-a1, which stays"


def test_scope_by_source_instance():
    plan = plan_of(
        [ami("a1", 1), ami("a2", 2), ami("b2", 2, instance="i-2")],
        {"keep_newest": 1},
        lineages=None,
        source_instances=["i-1"],
    )
    assert gone(plan) == ["ami-a2"]


@pytest.mark.parametrize(
    "policy, message",
    [
        ({}, "needs keep_newest or max_age_days"),
        ({"keep_newest": 0}, "keep_newest must be at least 1"),
        ({"keep_newest": True}, "keep_newest must be at least 1"),
        ({"max_age_days": 0}, "max_age_days must be a positive number"),
    ],
)
def test_nonsense_policies_are_refused(policy, message):
    with pytest.raises(errors.InvalidInput, match=message):
        plan_of([ami("a1", 1)], policy)


@pytest.mark.parametrize(
    "lineages, instances, message",
    [(None, None, "needs a scope"), ("pgdata", None, "list of lineage names"), ([], None, "at least one lineage")],
)
def test_a_scope_that_names_nothing_is_refused(ec2, lineages, instances, message):
    with pytest.raises(errors.InvalidInput, match=message):
        apply_retention(ec2, lineages, {"keep_newest": 1}, source_instances=instances)


# ---- against moto with the sandbox's rules: the calls themselves -------------------------------------------------------


def nightly(ec2, instance, days, clock):
    """Backups (an AMI and the volume snapshot set) taken ``days`` days ago, completed."""
    taken = []
    for age in days:
        backup = backup_instance(ec2, instance, f"pgdata-{age:03d}", create_image=True, clock=clock)
        taken.append(backup)
    CONTEXT.settle()
    backend = moto_ec2()
    for age, backup in zip(days, taken):
        when = (CONTEXT.now() - timedelta(days=age, hours=1)).replace(tzinfo=None)
        backend.amis[backup.image_id].creation_date = when
        for snapshot in backup.snapshots:
            backend.snapshots[snapshot["snapshot_id"]].start_time = when
    return dict(zip(days, taken))


def image_snapshot(ec2, image_id):
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]


def test_apply_retention_at_one_call_per_ami(ec2, launch, data_volume, clock):
    instance = launch(lineage="pgdata")
    data_volume(attach_to=instance)
    taken = nightly(ec2, instance, range(12), clock)
    old_image_snapshots = [image_snapshot(ec2, taken[age].image_id) for age in range(7, 12)]

    checked = apply_retention(ec2, ["pgdata"], {"max_age_days": 7}, now=CONTEXT.now(), dry_run=True)
    done = apply_retention(ec2, ["pgdata"], {"max_age_days": 7}, now=CONTEXT.now())

    assert done.deleted_images == [taken[age].image_id for age in (11, 10, 9, 8, 7)]
    assert sorted(done.deleted_snapshots) == sorted(
        old_image_snapshots + [s["snapshot_id"] for age in range(7, 12) for s in taken[age].snapshots]
    )
    assert (checked.deleted_images, checked.deleted_snapshots, checked.deleted_backups) == (
        done.deleted_images,
        done.deleted_snapshots,
        done.deleted_backups,
    )
    # One listing of each (pages of 5 in the sandbox), one DeregisterImage per AMI (its snapshots go with it), one
    # DeleteSnapshot per volume snapshot; no DescribeImages per AMI, no DeleteSnapshot of an AMI's snapshot.
    assert done.api_calls["DeregisterImage"] == 5 and done.api_calls["DeleteSnapshot"] == 5
    assert done.api_calls["DescribeImages"] == 3 and done.api_calls["DescribeSnapshots"] == 5  # 12 AMIs, 24 snapshots
    assert checked.api_calls.get("DeregisterImage") is None and checked.api_calls["DescribeLaunchTemplates"] == 1
    left = ec2.describe_images(Owners=["self"], Filters=[{"Name": f"tag:{t.LINEAGE}", "Values": ["pgdata"]}])["Images"]
    assert len(left) == 7
    again = apply_retention(ec2, ["pgdata"], {"max_age_days": 7}, now=CONTEXT.now())
    assert not again.changed and "DescribeLaunchTemplates" not in again.api_calls  # nothing due: no template scan


def test_launch_templates_any_version_and_protection_keep_an_ami(ec2, world, launch, data_volume, clock):
    instance = launch(lineage="pgdata")
    data_volume(attach_to=instance)
    taken = nightly(ec2, instance, range(4), clock)
    template = ec2.create_launch_template(LaunchTemplateName="fleet", LaunchTemplateData={"ImageId": world["image_id"]})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    for version in range(2, 13):  # version 7 (neither default nor latest) uses the 3-day-old AMI
        image_id = taken[3].image_id if version == 7 else world["image_id"]
        ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": image_id})
    ec2.enable_image_deregistration_protection(ImageId=taken[2].image_id)

    done = apply_retention(ec2, ["pgdata"], {"keep_newest": 1})
    assert done.deleted_images == [taken[1].image_id]
    protected = f"its AMI {taken[2].image_id} has deregistration protection (enabled-without-cooldown)"
    assert (
        done.kept[f"pgdata-003/{instance} (image)"]
        == f"its AMI {taken[3].image_id} is used by launch template fleet version 7"
    )
    assert done.kept[f"pgdata-002/{instance} (image)"] == protected
    assert [b for b in done.deleted_backups if b.endswith("(volume)")] == [
        f"pgdata-{age:03d}/{instance} (volume)" for age in (3, 2, 1)
    ]


def test_retention_needs_no_instance(ec2, launch, data_volume, clock):
    instance = launch(lineage="pgdata")
    data_volume(attach_to=instance)
    taken = nightly(ec2, instance, range(3), clock)
    ec2.terminate_instances(InstanceIds=[instance])
    done = apply_retention(ec2, ALL_LINEAGES, {"keep_newest": 1})
    assert done.deleted_images == [taken[2].image_id, taken[1].image_id]
    assert "DescribeInstances" not in done.api_calls
