# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention: which backups a policy keeps, and deleting the rest at one call per AMI.

A *backup* is one restorable copy of one kind:

* an **image** backup: one AMI this collection took, with the snapshots of its block device mappings;
* a **volume** backup: the ``ec2spot:kind=volume`` snapshots one ``CreateSnapshots`` call took of an
  instance (same ``ec2spot:backup-set`` and ``ec2spot:source-instance``) for one lineage.

restore.yml and a cross-zone recovery read the two kinds differently, so each kind of each lineage (of
each source instance, for a backup without a lineage tag) is judged on its own:

* a completed backup survives if **any** configured rule keeps it: it is one of the newest
  ``keep_newest`` completed backups of its kind, or it was taken within the last ``max_age_days``
  (restic's ``--keep-last N --keep-within D``, borg and Sanoid combine their rules the same way);
* the newest completed backup of each kind of each lineage always survives;
* a backup in progress (or failed) is neither counted nor deleted;
* an AMI that any version of any launch template uses, an AMI with deregistration protection, a
  snapshot a launch template maps, and anything without our ``ec2spot:managed-by`` tag or owned by
  another account are never touched.

Ties (the same creation time) are broken by name, then id: the greater one counts as newer.

Worked example: ``keep_newest: 2, max_age_days: 3``; lineage pgdata has AMIs taken 0 (still pending),
1, 2, 3 and 6 days ago, and volume snapshot sets taken 10, 20 and 30 days ago. AMIs: the pending one is
neither counted nor deleted; the newest two completed are 1 and 2 days old, within 3 days are 1, 2 and
3; so only the 6-day AMI goes. Volume sets: the newest two of their kind (10, 20) stay although every
AMI is newer; the 30-day set goes. (Before: the 2-, 3- and 6-day AMIs and all three sets went.) With
``max_age_days: 3`` alone, the 10-day set would still stay: the newest completed backup of each kind.

At the floor: one paged listing of the managed images and one of the managed snapshots per run, one
scan of every version of every launch template (only when something is due to go), then
``DeregisterImage(DeleteAssociatedSnapshots=true)`` per AMI (AWS keeps a snapshot another AMI still
uses) and ``DeleteSnapshot`` per volume snapshot. Which snapshots AMIs share is read from the image
listing, never learnt by provoking ``InvalidSnapshot.InUse``.

``apply_retention`` is the one entry point (the ``spot_backup`` module and the handler's scheduled
backup); ``catalogue`` and ``plan_retention`` are its pure parts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from .aws import call, paginate
from .errors import AwsApiError, InvalidInput
from . import tags as t

IMAGE, VOLUME = "image", "volume"
COMPLETE_STATES = frozenset({"available", "completed"})
IMAGE_GONE = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"})


class _AllLineages:
    """The scope "every lineage that has backups this collection took" (``ALL_LINEAGES``)."""

    def __repr__(self):
        return "ALL_LINEAGES"


ALL_LINEAGES = _AllLineages()


@dataclass(frozen=True)
class Policy:
    """What a backup needs to survive: one of the newest ``keep_newest`` of its kind, or ``max_age_days`` young."""

    keep_newest: int | None = None
    max_age_days: float | None = None

    @classmethod
    def of(cls, policy):
        """A checked Policy from a Policy or a mapping with ``keep_newest`` and/or ``max_age_days``."""
        if not isinstance(policy, Policy):
            policy = cls(keep_newest=(policy or {}).get("keep_newest"), max_age_days=(policy or {}).get("max_age_days"))
        if policy.keep_newest is None and policy.max_age_days is None:
            raise InvalidInput(
                "retention needs keep_newest or max_age_days (or both); with neither, every backup but "
                "the newest of each kind would be deleted"
            )
        if policy.keep_newest is not None and (
            isinstance(policy.keep_newest, bool) or not isinstance(policy.keep_newest, int) or policy.keep_newest < 1
        ):
            raise InvalidInput(f"keep_newest must be at least 1, got {policy.keep_newest}")
        if policy.max_age_days is not None and (
            isinstance(policy.max_age_days, bool)
            or not isinstance(policy.max_age_days, (int, float))
            or policy.max_age_days <= 0
        ):
            raise InvalidInput(f"max_age_days must be a positive number of days, got {policy.max_age_days}")
        return policy


@dataclass
class Backup:
    """One backup: an AMI (kind image) or one instance's volume snapshot set of one lineage (kind volume)."""

    kind: str
    lineage: str  # the lineage tag, or "instance:<id>" for a backup without one
    name: str  # ec2spot:backup-set
    source_instance: str
    created: datetime
    state: str  # image: available, pending, failed...; volume: completed, pending or error
    image_id: str | None = None
    snapshot_ids: tuple = ()
    protection: str = "disabled"  # the AMI's DeregistrationProtection

    @property
    def complete(self):
        return self.state in COMPLETE_STATES

    @property
    def label(self):
        return f"{self.name}/{self.source_instance} ({self.kind})"

    def order(self):
        """Newest last: creation time, then name, then id (ties are broken the same way every run)."""
        return (self.created, self.name, self.image_id or min(self.snapshot_ids, default=""))


@dataclass
class Catalog:
    """What the two listings hold: the backups in scope, and what any managed AMI maps (in scope or not)."""

    backups: list
    image_snapshots: dict = field(default_factory=dict)  # every managed AMI listed -> its snapshot ids
    managed_snapshots: dict = field(default_factory=dict)  # every managed snapshot we own -> its kind tag


@dataclass
class References:
    """What launch templates use: image id -> where, snapshot id -> where (any version of any template)."""

    images: dict = field(default_factory=dict)
    snapshots: dict = field(default_factory=dict)


@dataclass
class Plan:
    """A retention run decided: the backups in scope, what goes and in which calls, what stays and why."""

    backups: list  # every backup in scope
    doomed: list = field(default_factory=list)  # backups to delete, AMIs first, oldest first
    kept: dict = field(default_factory=dict)  # label -> why a backup no rule keeps survives
    not_completed: dict = field(default_factory=dict)  # label -> state of a backup not completed (not judged)
    steps: list = field(default_factory=list)  # ("deregister", image id, delete associated) / ("delete_snapshot", id)
    images: list = field(default_factory=list)  # AMIs the steps deregister
    snapshots: list = field(default_factory=list)  # snapshots the steps delete (AWS deletes an AMI's with it)
    skipped: dict = field(default_factory=dict)  # resource -> why it stays although its backup goes


@dataclass
class RetentionResult:
    """What a run deleted (or, in a dry run, would delete), what it kept and why, and the AWS calls it made."""

    dry_run: bool
    backups: list = field(default_factory=list)  # labels of every backup in scope before the run
    deleted_backups: list = field(default_factory=list)  # labels
    deleted_images: list = field(default_factory=list)
    deleted_snapshots: list = field(default_factory=list)
    kept: dict = field(default_factory=dict)
    not_completed: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    api_calls: dict = field(default_factory=dict)  # operation -> calls made by this run

    @property
    def changed(self):
        return bool(self.deleted_images or self.deleted_snapshots)

    @property
    def api_call_count(self):
        return sum(self.api_calls.values())

    def summary(self):
        """One line for a log: the same words whether the module or the handler ran it."""
        line = (
            f"retention deleted {len(self.deleted_images)} images and {len(self.deleted_snapshots)} snapshots, "
            f"kept {len(self.kept)} past the policy"
        )
        if self.skipped:
            line += f", skipped {len(self.skipped)}"
        return line + f" ({self.api_call_count} API calls)"

    def to_dict(self):
        summary = asdict(self)
        summary["api_call_count"] = self.api_call_count
        return summary


def _parse_time(value):
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _managed_tags(resource, owner_key, account_id):
    """The resource's tags if this collection manages it (exact managed-by tag) and ``account_id`` owns it, else None."""
    tags = t.as_dict(resource.get("Tags"))
    if tags.get(t.MANAGED_BY) != t.MANAGER:
        return None
    if account_id is not None and resource.get(owner_key) != account_id:
        return None
    return tags


def _in_scope(tags, lineages, source_instances):
    if not tags.get(t.BACKUP_SET) or not tags.get(t.SOURCE_INSTANCE):
        return False
    if source_instances is not None and tags[t.SOURCE_INSTANCE] not in source_instances:
        return False
    if lineages is ALL_LINEAGES:
        return bool(tags.get(t.LINEAGE))
    return lineages is None or tags.get(t.LINEAGE) in lineages


def _lineage_key(tags):
    return tags.get(t.LINEAGE) or f"instance:{tags[t.SOURCE_INSTANCE]}"


def catalogue(images, snapshots, lineages=ALL_LINEAGES, source_instances=None, account_id=None):
    """The backups in scope among ``images`` (DescribeImages items) and ``snapshots`` (DescribeSnapshots items).

    ``lineages``: names (exact match of ``ec2spot:lineage``), ``ALL_LINEAGES`` (any lineage-tagged backup)
    or None (any, then ``source_instances`` must narrow it); ``source_instances``: None or instance ids.
    Pure: the listings come in, nothing is called.
    """
    lineages = lineages if lineages is ALL_LINEAGES or lineages is None else frozenset(lineages)
    source_instances = None if source_instances is None else frozenset(source_instances)
    catalog = Catalog(backups=[])
    for image in images:
        tags = _managed_tags(image, "OwnerId", account_id)
        if tags is None:
            continue
        mapped = tuple(
            dict.fromkeys(
                m["Ebs"]["SnapshotId"]
                for m in image.get("BlockDeviceMappings", [])
                if m.get("Ebs", {}).get("SnapshotId")
            )
        )
        catalog.image_snapshots[image["ImageId"]] = mapped
        if _in_scope(tags, lineages, source_instances):
            catalog.backups.append(
                Backup(
                    kind=IMAGE,
                    lineage=_lineage_key(tags),
                    name=tags[t.BACKUP_SET],
                    source_instance=tags[t.SOURCE_INSTANCE],
                    created=_parse_time(image["CreationDate"]),
                    state=image.get("State", "pending"),
                    image_id=image["ImageId"],
                    snapshot_ids=mapped,
                    protection=image.get("DeregistrationProtection") or "disabled",
                )
            )
    sets = {}
    for snapshot in snapshots:
        tags = _managed_tags(snapshot, "OwnerId", account_id)
        if tags is None:
            continue
        catalog.managed_snapshots[snapshot["SnapshotId"]] = tags.get(t.KIND)
        if tags.get(t.KIND) != VOLUME or not _in_scope(tags, lineages, source_instances):
            continue
        key = (_lineage_key(tags), tags[t.BACKUP_SET], tags[t.SOURCE_INSTANCE])
        sets.setdefault(key, []).append(snapshot)
    for (lineage, name, source), members in sets.items():
        states = {s.get("State", "pending") for s in members}
        state = "completed" if states == {"completed"} else "error" if "error" in states else "pending"
        catalog.backups.append(
            Backup(
                kind=VOLUME,
                lineage=lineage,
                name=name,
                source_instance=source,
                state=state,
                created=min(_parse_time(s["StartTime"]) for s in members),
                snapshot_ids=tuple(sorted(s["SnapshotId"] for s in members)),
            )
        )
    catalog.backups.sort(key=Backup.order, reverse=True)
    return catalog


def _judge_by_policy(members, policy, now, plan):
    """The backups of one lineage and kind that no rule keeps and that are not its newest completed one."""
    due, rank = [], 0
    for backup in sorted(members, key=Backup.order, reverse=True):
        if not backup.complete:
            plan.not_completed[backup.label] = backup.state
            continue
        by_count = policy.keep_newest is not None and rank < policy.keep_newest
        by_age = (
            policy.max_age_days is not None and (now - backup.created).total_seconds() <= policy.max_age_days * 86400
        )
        if not (by_count or by_age):
            if rank == 0:
                plan.kept[backup.label] = f"newest completed {backup.kind} backup of {backup.lineage}"
            else:
                due.append(backup)
        rank += 1
    return due


def plan_retention(catalog, policy, now, references=None):
    """Decide a run: which backups go, in which calls, and why each other one stays. Pure.

    ``references`` (launch templates) may be left out when no backup is due: nothing is then deleted
    that they could protect, since every step comes from a due backup.
    """
    policy = Policy.of(policy)
    references = references or References()
    plan = Plan(backups=list(catalog.backups))
    groups = {}
    for backup in catalog.backups:
        groups.setdefault((backup.kind, backup.lineage), []).append(backup)
    due = {IMAGE: [], VOLUME: []}
    for (kind, unused_lineage), members in sorted(groups.items()):
        due[kind] += _judge_by_policy(members, policy, now, plan)

    doomed_images = []
    for backup in due[IMAGE]:
        if backup.image_id in references.images:
            plan.kept[backup.label] = (
                f"its AMI {backup.image_id} is used by launch template {references.images[backup.image_id]}"
            )
        elif backup.protection != "disabled":
            plan.kept[backup.label] = f"its AMI {backup.image_id} has deregistration protection ({backup.protection})"
        else:
            doomed_images.append(backup)
    going = {b.image_id for b in doomed_images}
    users = {}
    for image_id, mapped in catalog.image_snapshots.items():
        for snapshot_id in mapped:
            users.setdefault(snapshot_id, set()).add(image_id)
    doomed_volumes = []
    for backup in due[VOLUME]:
        mapped = next((s for s in backup.snapshot_ids if s in references.snapshots), None)
        staying = sorted(i for s in backup.snapshot_ids for i in users.get(s, ()) if i not in going)
        if mapped:
            plan.kept[backup.label] = (
                f"its snapshot {mapped} is mapped by launch template {references.snapshots[mapped]}"
            )
        elif staying:
            plan.kept[backup.label] = f"its snapshots are used by AMI {', '.join(staying)}, which stays"
        else:
            doomed_volumes.append(backup)

    # Snapshots that may go: those of the volume backups that go, and an AMI's own (kind image) snapshots when no
    # AMI that stays uses them and no launch template maps them. Anything else an AMI maps is left alone.
    doomed = {s for b in doomed_volumes for s in b.snapshot_ids}
    for backup in doomed_images:
        doomed.update(
            s
            for s in backup.snapshot_ids
            if catalog.managed_snapshots.get(s) == IMAGE
            and s not in references.snapshots
            and users.get(s, set()) <= going
        )
    plan.doomed = sorted(doomed_images, key=Backup.order) + sorted(doomed_volumes, key=Backup.order)
    done = set()
    for backup in sorted(doomed_images, key=Backup.order):
        freed = []
        for snapshot_id in backup.snapshot_ids:
            users[snapshot_id].discard(backup.image_id)
            if not users[snapshot_id]:
                freed.append(snapshot_id)
        # DeleteAssociatedSnapshots deletes every freed snapshot: only when each of them may go.
        with_snapshots = all(s in doomed for s in freed)
        plan.steps.append(("deregister", backup.image_id, with_snapshots))
        plan.images.append(backup.image_id)
        for snapshot_id in freed:
            if snapshot_id in doomed:
                if not with_snapshots:
                    plan.steps.append(("delete_snapshot", snapshot_id))
                plan.snapshots.append(snapshot_id)
                done.add(snapshot_id)
    for backup in sorted(doomed_volumes, key=Backup.order):
        for snapshot_id in backup.snapshot_ids:
            if snapshot_id not in done:
                plan.steps.append(("delete_snapshot", snapshot_id))
                plan.snapshots.append(snapshot_id)
                done.add(snapshot_id)
    for backup in doomed_images:
        for snapshot_id in backup.snapshot_ids:
            if snapshot_id in done:
                continue
            if users.get(snapshot_id):
                plan.skipped[snapshot_id] = f"also used by AMI {', '.join(sorted(users[snapshot_id]))}, which stays"
            elif snapshot_id in references.snapshots:
                plan.skipped[snapshot_id] = f"mapped by launch template {references.snapshots[snapshot_id]}"
            elif snapshot_id not in catalog.managed_snapshots:
                plan.skipped[snapshot_id] = "not a snapshot this collection manages (another account's, or untagged)"
            else:
                plan.skipped[snapshot_id] = (
                    f"a {catalog.managed_snapshots[snapshot_id]} snapshot of a backup that stays"
                )
    return plan


def launch_template_references(ec2):
    """What every version of every launch template in the region uses: its AMI and the snapshots it maps."""
    references = References()
    for template in paginate(ec2, "describe_launch_templates", "LaunchTemplates"):
        for version in paginate(
            ec2,
            "describe_launch_template_versions",
            "LaunchTemplateVersions",
            LaunchTemplateId=template["LaunchTemplateId"],
        ):
            where = f"{template['LaunchTemplateName']} version {version['VersionNumber']}"
            data = version.get("LaunchTemplateData", {})
            if data.get("ImageId"):
                references.images.setdefault(data["ImageId"], where)
            for mapping in data.get("BlockDeviceMappings", []):
                if mapping.get("Ebs", {}).get("SnapshotId"):
                    references.snapshots.setdefault(mapping["Ebs"]["SnapshotId"], where)
    return references


class _CallCounter:
    """Counts the AWS calls a client makes while in use (one per call or page; botocore's retries not counted)."""

    def __init__(self, client):
        self.client, self.calls, self.unique_id = client, {}, f"ec2spot-retention-{id(self)}"

    def count(self, model=None, **unused_kwargs):
        name = getattr(model, "name", "unknown")
        self.calls[name] = self.calls.get(name, 0) + 1

    def __enter__(self):
        self.client.meta.events.register("before-call", self.count, unique_id=self.unique_id)
        return self

    def __exit__(self, *unused_exc_info):
        self.client.meta.events.unregister("before-call", unique_id=self.unique_id)
        return False


def _result_of(plan, dry_run):
    return RetentionResult(
        dry_run=dry_run,
        backups=[b.label for b in plan.backups],
        deleted_backups=[b.label for b in plan.doomed],
        kept=dict(plan.kept),
        not_completed=dict(plan.not_completed),
        skipped=dict(plan.skipped),
    )


def execute(ec2, plan, dry_run=False):
    """Carry out ``plan`` (nothing in a dry run: the result is what the plan would delete)."""
    result = _result_of(plan, dry_run)
    if dry_run:
        result.deleted_images, result.deleted_snapshots = list(plan.images), list(plan.snapshots)
        return result
    gone = set()
    expected = set(plan.snapshots)
    try:
        for step in plan.steps:
            if step[0] == "deregister":
                _deregister(ec2, step[1], step[2], result, gone, expected)
            elif step[1] not in gone:
                _delete_snapshot(ec2, step[1], result, gone)
    except AwsApiError as exc:
        raise AwsApiError(
            f"{exc.message} (this retention run had deleted {len(result.deleted_images)} AMIs and "
            f"{len(result.deleted_snapshots)} snapshots)",
            operation=exc.operation,
            aws_code=exc.aws_code,
            deleted_images=result.deleted_images,
            deleted_snapshots=result.deleted_snapshots,
        ) from exc
    for snapshot_id in plan.snapshots:
        if snapshot_id not in gone and snapshot_id not in result.skipped:
            result.skipped[snapshot_id] = "AWS reported no outcome for it: check it by hand"
    return result


def _deregister(ec2, image_id, with_snapshots, result, gone, expected):
    try:
        answer = call(ec2, "deregister_image", ImageId=image_id, DeleteAssociatedSnapshots=with_snapshots)
    except AwsApiError as exc:
        if exc.aws_code in IMAGE_GONE:
            result.skipped[image_id] = "already deregistered"
            return
        if exc.aws_code == "OperationNotPermitted":  # protection enabled since the listing
            result.skipped[image_id] = f"refused: {exc.message}"
            return
        raise
    result.deleted_images.append(image_id)
    for outcome in answer.get("DeleteSnapshotResults", []):
        snapshot_id = outcome.get("SnapshotId")
        if outcome.get("ReturnCode") == "success":
            result.deleted_snapshots.append(snapshot_id)
            result.skipped.pop(snapshot_id, None)
            gone.add(snapshot_id)
        elif snapshot_id in expected:
            result.skipped[snapshot_id] = f"not deleted with {image_id}: {outcome.get('ReturnCode')}"


def _delete_snapshot(ec2, snapshot_id, result, gone):
    try:
        call(ec2, "delete_snapshot", SnapshotId=snapshot_id)
    except AwsApiError as exc:
        if exc.aws_code == "InvalidSnapshot.NotFound":
            result.skipped[snapshot_id] = "already deleted"
            return
        if exc.aws_code == "InvalidSnapshot.InUse":  # an AMI outside the managed listing maps it
            result.skipped[snapshot_id] = f"in use by an AMI this collection does not manage: {exc.message}"
            return
        raise
    result.deleted_snapshots.append(snapshot_id)
    result.skipped.pop(snapshot_id, None)
    gone.add(snapshot_id)


def validate_scope(lineages, source_instances=None):
    """Refuse a scope that names nothing (before anything is listed)."""
    if lineages is None and source_instances is None:
        raise InvalidInput("retention needs a scope: lineage names, ALL_LINEAGES, or source instances")
    if lineages is not None and lineages is not ALL_LINEAGES:
        if isinstance(lineages, str):
            raise InvalidInput(f"lineages must be a list of lineage names, got the string {lineages!r}")
        if not lineages:
            raise InvalidInput("lineages must name at least one lineage")
    if source_instances is not None and (isinstance(source_instances, str) or not source_instances):
        raise InvalidInput("source_instances must be a non-empty list of instance ids")


def apply_retention(ec2, lineages, policy, now=None, dry_run=False, source_instances=None):
    """Apply ``policy`` to the backups of ``lineages`` (names or ``ALL_LINEAGES``; None with ``source_instances``).

    ``policy``: a ``Policy`` or ``{"keep_newest": N, "max_age_days": D}``. Needs no instance: it reads the
    listings, not the lineage's instances. Returns a ``RetentionResult`` (in a dry run, what would be deleted,
    exactly as a real run would delete it unless AWS changes in between), with the AWS calls it made.
    """
    policy = Policy.of(policy)
    validate_scope(lineages, source_instances)
    now = now or datetime.now(timezone.utc)
    with _CallCounter(ec2) as counter:
        managed = t.filters({t.MANAGED_BY: t.MANAGER})
        images = paginate(ec2, "describe_images", "Images", Owners=["self"], Filters=managed)
        snapshots = paginate(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=managed)
        catalog = catalogue(list(images), list(snapshots), lineages, source_instances)
        plan = plan_retention(catalog, policy, now)
        if plan.steps:
            plan = plan_retention(catalog, policy, now, launch_template_references(ec2))
        result = execute(ec2, plan, dry_run)
    result.api_calls = dict(counter.calls)
    return result
