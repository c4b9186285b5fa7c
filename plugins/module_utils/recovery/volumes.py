# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a lineage's data to a target instance.

``move_lineage_volume`` makes the lineage's current volume attached to the target:

* **same availability zone**: the very same volume is released from its holder (fenced,
  never forced by default) and attached to the target: no data is lost;
* **another availability zone**: EBS volumes cannot cross zones, so a new volume is
  created in the target's zone from the lineage's newest *completed* snapshot, with the
  original's type, size, IOPS, throughput, encryption, KMS key and tags, and the data
  age (the RPO: how old the restored data is) is reported.

Every step is safe to repeat: a second call finds the volume already attached and
changes nothing; a call interrupted half-way resumes from what the tags and attachment
states say. Each move raises the lineage's generation, so a stale copy can never win.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .aws import SYSTEM_CLOCK, call, paginate, wait_until
from .errors import Conflict, FenceViolation, InvalidInput, NotFound, WaitTimeout, missing_as_not_found
from .fence import assert_no_newer_generation_on_target, assert_release_allowed
from .instances import describe_instance, state_of, wait_for_state
from . import lineage as lineages
from . import tags as t

# Device names EBS data volumes can use on Nitro and Xen instances (AWS: "Device names on
# Linux instances"); /dev/sd[f-p] is AWS's recommended range for EBS volumes.
DEVICE_NAME = re.compile(r"^/dev/(sd[b-z]|xvd[b-z])$")
PREFERRED_DEVICES = tuple(f"/dev/sd{letter}" for letter in "fghijklmnop")
# Volume types whose IOPS / throughput are provisioned (and so must be copied on restore).
IOPS_TYPES = frozenset({"gp3", "io1", "io2"})
THROUGHPUT_TYPES = frozenset({"gp3"})


@dataclass
class MoveResult:
    """What ``move_lineage_volume`` did (or, in a dry run, would do)."""

    changed: bool
    lineage: str
    instance_id: str
    availability_zone: str
    volume_id: str | None = None
    device: str | None = None
    generation: int = 0
    from_snapshot: bool = False
    snapshot_id: str | None = None
    data_age_seconds: float | None = None
    newer_pending_snapshot_id: str | None = None
    previous_volume_id: str | None = None
    previous_instance_id: str | None = None
    released_previous: bool = False
    actions: list = field(default_factory=list)
    timeline: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


def _attachment(volume, instance_id=None):
    for attachment in volume.get("Attachments", []):
        if instance_id is None or attachment["InstanceId"] == instance_id:
            return attachment
    return None


def describe_volume(ec2, volume_id):
    with missing_as_not_found(("InvalidVolume.NotFound",), f"volume {volume_id} does not exist", volume_id=volume_id):
        found = call(ec2, "describe_volumes", VolumeIds=[volume_id])["Volumes"]
    if not found:
        raise NotFound(f"volume {volume_id} does not exist", volume_id=volume_id)
    return found[0]


def attached_volumes(ec2, instance):
    ids = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m]
    if not ids:
        return []
    return list(paginate(ec2, "describe_volumes", "Volumes", VolumeIds=ids))


def choose_device(instance, requested, preferred):
    """The device name to attach at: the requested one (must be free), else the lineage's
    recorded one if free, else the first free name in AWS's recommended range."""
    used = {m["DeviceName"]: m.get("Ebs", {}).get("VolumeId") for m in instance.get("BlockDeviceMappings", [])}
    if requested:
        if requested in used:
            raise Conflict(
                f"device {requested} on {instance['InstanceId']} already holds {used[requested]}; "
                f"choose another device_name or leave it unset to pick a free one",
                device=requested,
                instance_id=instance["InstanceId"],
            )
        return requested
    if preferred and DEVICE_NAME.match(preferred) and preferred not in used:
        return preferred
    for name in PREFERRED_DEVICES:
        if name not in used and name.replace("/dev/sd", "/dev/xvd") not in used:
            return name
    raise Conflict(
        f"no free device name in /dev/sdf-/dev/sdp on {instance['InstanceId']}", instance_id=instance["InstanceId"]
    )


def release_volume(ec2, volume, holder, app_stopped, force, timeout, clock=SYSTEM_CLOCK):
    """Detach ``volume`` from ``holder`` after the fence allows it; wait until ``available``."""
    assert_release_allowed(holder, volume["VolumeId"], app_stopped)
    if t.HOLDER not in t.as_dict(volume.get("Tags")):
        # Remember whose data this was (a volume first attached by hand has no holder yet):
        # the replacement's recovery reports it, and the lineage's history stays readable.
        call(ec2, "create_tags", Resources=[volume["VolumeId"]], Tags=t.as_list({t.HOLDER: holder["InstanceId"]}))
    attachment = _attachment(volume, holder["InstanceId"])
    if attachment and attachment["State"] in ("attaching", "attached"):
        call(ec2, "detach_volume", VolumeId=volume["VolumeId"], InstanceId=holder["InstanceId"], Force=bool(force))
    try:
        return wait_until(
            lambda: describe_volume(ec2, volume["VolumeId"]),
            lambda v: v["State"] == "available",
            f"{volume['VolumeId']} to detach from {holder['InstanceId']}",
            timeout,
            clock,
            is_failed=lambda v: v["State"] == "error" and f"volume {v['VolumeId']} is in error state",
        )
    except WaitTimeout as exc:
        raise WaitTimeout(
            f"{exc.message}; it was not force-detached (force_detach is a last resort that skips the guest's "
            f"flush: use it only when {holder['InstanceId']} is unreachable and you accept possible corruption)",
            volume_id=volume["VolumeId"],
            instance_id=holder["InstanceId"],
        ) from exc


def attach_volume(ec2, volume_id, instance_id, device, timeout, clock=SYSTEM_CLOCK):
    """Attach and wait until the attachment is ``attached``; returns the volume description."""
    call(ec2, "attach_volume", VolumeId=volume_id, InstanceId=instance_id, Device=device)
    return wait_until(
        lambda: describe_volume(ec2, volume_id),
        lambda v: (_attachment(v, instance_id) or {}).get("State") == "attached",
        f"{volume_id} to attach to {instance_id} at {device}",
        timeout,
        clock,
        is_failed=lambda v: v["State"] == "error" and f"volume {volume_id} is in error state",
    )


def _target(ec2, instance_id, timeout, clock):
    target = describe_instance(ec2, instance_id)
    state = state_of(target)
    if state == "pending":
        target = wait_for_state(ec2, instance_id, "running", timeout, clock)
    elif state not in ("running", "stopped"):
        raise InvalidInput(
            f"target instance {instance_id} is {state}; a volume can only be attached to a running or stopped instance",
            instance_id=instance_id,
        )
    return target


def _restore_source(ec2, lineage, snapshot_id, current=None):
    """The snapshot to restore: the one asked for (checked to be this lineage's and complete)
    or the newest completed one that holds the current generation's data.

    After a rollback (the current volume was restored from an older backup and has no completed
    snapshot of its own yet) that is the backup it was restored from, not a newer snapshot of the
    superseded generation: restoring that one would silently undo the rollback.
    """
    if not snapshot_id:
        newest = lineages.newest_completed_snapshot(ec2, lineage)
        current_tags = t.as_dict(current.get("Tags")) if current else {}
        rolled_back_to = current_tags.get(t.RESTORED_FROM)
        if not rolled_back_to or t.generation_of(t.as_dict(newest.get("Tags"))) >= t.generation_of(current_tags):
            return newest
        own = [
            s
            for s in lineages.snapshots(ec2, lineage)
            if t.generation_of(t.as_dict(s.get("Tags"))) >= t.generation_of(current_tags)
        ]
        if own:
            return own[0]
        snapshot_id = rolled_back_to
    with missing_as_not_found(
        ("InvalidSnapshot.NotFound", "InvalidSnapshotID.Malformed"),
        f"snapshot {snapshot_id} does not exist",
        snapshot_id=snapshot_id,
    ):
        found = call(ec2, "describe_snapshots", SnapshotIds=[snapshot_id])["Snapshots"]
    snapshot = found[0]
    owner = t.as_dict(snapshot.get("Tags")).get(t.LINEAGE)
    if owner != lineage:
        raise InvalidInput(
            f"snapshot {snapshot_id} belongs to lineage {owner!r}, not {lineage!r}", snapshot_id=snapshot_id
        )
    if snapshot["State"] != "completed":
        raise InvalidInput(
            f"snapshot {snapshot_id} is {snapshot['State']}, not completed; its data cannot be restored yet",
            snapshot_id=snapshot_id,
        )
    return snapshot


def _volume_shape(snapshot, source_volume, kms_key_id):
    """CreateVolume parameters that reproduce the original volume (type, size, performance,
    encryption). The original's attributes win; the snapshot's tags stand in when it is gone.
    Restored volumes are always encrypted: with the snapshot's key, else ``kms_key_id``,
    else the account's default EBS key. Without a snapshot (a blank copy of a never-initialised
    volume) the original's own key."""
    snapshot_tags = t.as_dict(snapshot.get("Tags")) if snapshot else {}
    if source_volume:
        volume_type = source_volume["VolumeType"]
        iops, throughput = source_volume.get("Iops"), source_volume.get("Throughput")
        size = max(source_volume["Size"], snapshot["VolumeSize"] if snapshot else 0)
    else:
        volume_type = snapshot_tags.get(t.VOLUME_TYPE, "gp3")
        iops = int(snapshot_tags[t.VOLUME_IOPS]) if snapshot_tags.get(t.VOLUME_IOPS) else None
        throughput = int(snapshot_tags[t.VOLUME_THROUGHPUT]) if snapshot_tags.get(t.VOLUME_THROUGHPUT) else None
        size = snapshot["VolumeSize"]
    shape = {"VolumeType": volume_type, "Size": size, "Encrypted": True}
    if volume_type in IOPS_TYPES and iops:
        shape["Iops"] = iops
    if volume_type in THROUGHPUT_TYPES and throughput:
        shape["Throughput"] = throughput
    if snapshot is None:
        key = source_volume.get("KmsKeyId") or kms_key_id
    else:
        key = snapshot.get("KmsKeyId") if snapshot.get("Encrypted") else kms_key_id
    if key:
        shape["KmsKeyId"] = key
    return shape


def move_lineage_volume(
    ec2,
    lineage,
    instance_id,
    device_name=None,
    app_stopped=False,
    snapshot_id=None,
    max_data_age=None,
    force_detach=False,
    volume_tags=None,
    kms_key_id=None,
    initialization_rate=None,
    dry_run=False,
    timeout=300,
    clock=SYSTEM_CLOCK,
):
    """Make the lineage's current data attached to ``instance_id``. See the module docstring.

    ``app_stopped`` is the caller's assertion that the application on the current holder
    has stopped (the fence). ``snapshot_id`` restores that backup instead of moving the
    current volume (an explicit rollback: the restored volume becomes the newest
    generation). ``max_data_age`` (seconds) refuses a restore from older data.
    """
    lineages.validate_name(lineage)
    if device_name is not None and not DEVICE_NAME.match(device_name):
        raise InvalidInput(f"invalid device_name {device_name!r}: use /dev/sd[b-z] or /dev/xvd[b-z]")
    if max_data_age is not None and max_data_age <= 0:
        raise InvalidInput(f"max_data_age must be positive seconds, got {max_data_age!r}")

    started = clock.monotonic()
    target = _target(ec2, instance_id, timeout, clock)
    zone = target["Placement"]["AvailabilityZone"]
    result = MoveResult(changed=False, lineage=lineage, instance_id=instance_id, availability_zone=zone)
    current = lineages.current_volume(ec2, lineage)
    current_tags = t.as_dict(current.get("Tags")) if current else {}
    restored_here = bool(snapshot_id) and current_tags.get(t.RESTORED_FROM) == snapshot_id
    if current and current["AvailabilityZone"] == zone and (not snapshot_id or restored_here):
        _move_same_zone(ec2, current, target, result, device_name, app_stopped, force_detach, dry_run, timeout, clock)
    elif current and _never_initialised(ec2, current, lineage) and not snapshot_id:
        _new_fresh_in_zone(ec2, current, target, result, device_name, volume_tags or {}, dry_run, timeout, clock)
    else:
        if current is None and not snapshot_id and not lineages.snapshots(ec2, lineage):
            raise NotFound(f"lineage {lineage} has no volume and no completed snapshot", lineage=lineage)
        _restore_in_zone(
            ec2,
            current,
            target,
            result,
            device_name,
            app_stopped,
            force_detach,
            snapshot_id,
            max_data_age,
            volume_tags or {},
            kms_key_id,
            initialization_rate,
            dry_run,
            timeout,
            clock,
        )
    result.timeline["total"] = round(clock.monotonic() - started, 3)
    return result


def _never_initialised(ec2, volume, lineage):
    """A brand-new lineage volume, never attached anywhere its agent could have formatted it.

    Only then is a blank volume in another zone an equal copy: ``ec2spot:fresh`` is still set (the
    control plane clears it when an agent reports it initialised the volume), no instance holds
    it, and the lineage has no snapshot in any state (a snapshot means data was written).
    """
    return (
        t.as_dict(volume.get("Tags")).get(t.FRESH) == "true"
        and volume["State"] == "available"
        and not lineages.snapshots(ec2, lineage, states=None)
    )


def _new_fresh_in_zone(ec2, current, target, result, device_name, extra_tags, dry_run, timeout, clock):
    """The first instance of a new lineage launched in another zone than its blank volume: a blank volume
    of the same shape here is the same (empty) data; the old one is superseded and left in place."""
    instance_id, zone, lineage = target["InstanceId"], result.availability_zone, result.lineage
    current_tags = t.as_dict(current.get("Tags"))
    device = choose_device(target, device_name, current_tags.get(t.DEVICE))
    generation = lineages.highest_generation(ec2, lineage) + 1
    result.changed, result.device, result.generation = True, device, generation
    result.previous_volume_id, result.data_age_seconds = current["VolumeId"], 0.0
    result.actions.append(
        f"{current['VolumeId']} in {current['AvailabilityZone']} was never initialised: create a blank "
        f"volume of its shape in {zone} as generation {generation} (the old one is left, superseded)"
    )
    result.actions.append(f"attach it to {instance_id} at {device}")
    if dry_run:
        return
    new_tags = {
        **t.copyable(current_tags),
        **extra_tags,
        t.LINEAGE: lineage,
        t.GENERATION: generation,
        t.HOLDER: instance_id,
        t.DEVICE: device,
        t.FRESH: "true",
        t.MANAGED_BY: t.MANAGER,
    }
    params = dict(
        AvailabilityZone=zone,
        TagSpecifications=[{"ResourceType": "volume", "Tags": t.as_list(new_tags)}],
        **_volume_shape(None, current, None),
    )
    volume_id = result.volume_id = _timed(
        result, "create", clock, lambda: _create_restored_volume(ec2, params, timeout, clock)
    )
    call(ec2, "create_tags", Resources=[current["VolumeId"]], Tags=t.as_list({t.SUPERSEDED_BY: volume_id}))
    _timed(result, "attach", clock, lambda: attach_volume(ec2, volume_id, instance_id, device, timeout, clock))


def _timed(result, phase, clock, action):
    """Run ``action()`` and record how long it took in ``result.timeline[phase]``."""
    started = clock.monotonic()
    value = action()
    result.timeline[phase] = round(clock.monotonic() - started, 3)
    return value


def _release_from_holder(ec2, volume, holder, result, app_stopped, force_detach, timeout, clock):
    if holder:
        _timed(
            result,
            "release",
            clock,
            lambda: release_volume(ec2, volume, holder, app_stopped, force_detach, timeout, clock),
        )
        result.released_previous = True


def _holder_of(ec2, volume):
    attachment = _attachment(volume)
    return describe_instance(ec2, attachment["InstanceId"]) if attachment else None


def _move_same_zone(ec2, volume, target, result, device_name, app_stopped, force_detach, dry_run, timeout, clock):
    volume_id, instance_id = volume["VolumeId"], target["InstanceId"]
    volume_tags = t.as_dict(volume.get("Tags"))
    generation = t.generation_of(volume_tags)
    result.volume_id, result.generation, result.previous_volume_id = volume_id, generation, volume_id
    attachment = _attachment(volume)
    if attachment and attachment["InstanceId"] == instance_id:
        result.device = attachment["Device"]
        result.previous_instance_id = instance_id
        if attachment["State"] == "attaching" and not dry_run:
            attach_wait = wait_until(
                lambda: describe_volume(ec2, volume_id),
                lambda v: (_attachment(v, instance_id) or {}).get("State") == "attached",
                f"{volume_id} to attach to {instance_id}",
                timeout,
                clock,
            )
            result.device = _attachment(attach_wait, instance_id)["Device"]
        return

    holder = _holder_of(ec2, volume)
    result.previous_instance_id = holder["InstanceId"] if holder else volume_tags.get(t.HOLDER)
    if holder:
        assert_release_allowed(holder, volume_id, app_stopped)
    assert_no_newer_generation_on_target(target, result.lineage, volume_id, generation, attached_volumes(ec2, target))
    device = choose_device(target, device_name, volume_tags.get(t.DEVICE))
    new_generation = generation
    if volume_tags.get(t.HOLDER) != instance_id:
        # Raise the generation before attaching: a crash between the two leaves a tag that
        # a retry recognises (HOLDER == target) instead of a move that never counted.
        new_generation = max(generation, lineages.highest_generation(ec2, result.lineage)) + 1
    result.changed, result.device, result.generation = True, device, new_generation
    if holder:
        result.actions.append(f"release {volume_id} from {holder['InstanceId']} ({state_of(holder)})")
    if new_generation != generation:
        result.actions.append(f"raise generation of lineage {result.lineage} to {new_generation}")
    result.actions.append(f"attach {volume_id} to {instance_id} at {device}")
    if dry_run:
        return

    _release_from_holder(ec2, volume, holder, result, app_stopped, force_detach, timeout, clock)
    if new_generation != generation:
        moved = {t.GENERATION: new_generation, t.HOLDER: instance_id, t.DEVICE: device}
        # The previous holder is what lets the agent accept data one generation behind the tag
        # (generations.judge_marker: this very volume moved, the marker was written by that instance).
        if result.previous_instance_id:
            moved[t.PREVIOUS_HOLDER] = result.previous_instance_id
        elif t.PREVIOUS_HOLDER in volume_tags:  # an older move's holder explains nothing about this one
            call(ec2, "delete_tags", Resources=[volume_id], Tags=[{"Key": t.PREVIOUS_HOLDER}])
        call(ec2, "create_tags", Resources=[volume_id], Tags=t.as_list(moved))
    _timed(result, "attach", clock, lambda: attach_volume(ec2, volume_id, instance_id, device, timeout, clock))


def _restore_in_zone(
    ec2,
    current,
    target,
    result,
    device_name,
    app_stopped,
    force_detach,
    snapshot_id,
    max_data_age,
    extra_tags,
    kms_key_id,
    initialization_rate,
    dry_run,
    timeout,
    clock,
):
    instance_id, zone, lineage = target["InstanceId"], result.availability_zone, result.lineage
    snapshot = _restore_source(ec2, lineage, snapshot_id, current)
    snapshot_tags = t.as_dict(snapshot.get("Tags"))
    assert_no_newer_generation_on_target(
        target, lineage, "(restored volume)", t.generation_of(snapshot_tags), attached_volumes(ec2, target)
    )
    holder = _holder_of(ec2, current) if current else None
    if holder:
        # A second writer on a restored copy would fork the data: the current holder is fenced first.
        assert_release_allowed(holder, current["VolumeId"], app_stopped)
    data_age = max(0.0, (clock.now() - snapshot["StartTime"]).total_seconds())
    if max_data_age is not None and data_age > max_data_age and not staged_from(current, snapshot["SnapshotId"]):
        raise FenceViolation(
            f"newest usable snapshot of lineage {lineage}, {snapshot['SnapshotId']}, holds data "
            f"{data_age:.0f}s old, more than max_data_age {max_data_age}s; refusing to restore",
            snapshot_id=snapshot["SnapshotId"],
            data_age_seconds=data_age,
        )
    pending = lineages.snapshots(ec2, lineage, states=("pending",))
    if pending and pending[0]["StartTime"] > snapshot["StartTime"]:
        result.newer_pending_snapshot_id = pending[0]["SnapshotId"]
    device = choose_device(
        target,
        device_name,
        snapshot_tags.get(t.DEVICE) or (t.as_dict(current.get("Tags")).get(t.DEVICE) if current else None),
    )
    source_volume = current if current and current["VolumeId"] == snapshot_tags.get(t.SOURCE_VOLUME) else None
    if source_volume is None and snapshot_tags.get(t.SOURCE_VOLUME):
        try:
            source_volume = describe_volume(ec2, snapshot_tags[t.SOURCE_VOLUME])
        except NotFound:
            source_volume = None  # deleted since: the snapshot's own tags describe its shape
    generation = lineages.highest_generation(ec2, lineage) + 1
    result.changed, result.device, result.generation = True, device, generation
    result.from_snapshot, result.snapshot_id = True, snapshot["SnapshotId"]
    result.data_age_seconds = round(data_age, 1)
    if current:
        result.previous_volume_id = current["VolumeId"]
        result.previous_instance_id = holder["InstanceId"] if holder else t.as_dict(current.get("Tags")).get(t.HOLDER)
    if holder:
        result.actions.append(f"release {current['VolumeId']} from {holder['InstanceId']} ({state_of(holder)})")
    result.actions.append(
        f"create a volume in {zone} from {snapshot['SnapshotId']} (data age {data_age:.0f}s) as generation {generation}"
    )
    result.actions.append(f"attach it to {instance_id} at {device}")
    if dry_run:
        return

    _release_from_holder(ec2, current, holder, result, app_stopped, force_detach, timeout, clock)
    base_tags = t.copyable(t.as_dict(source_volume.get("Tags")) if source_volume else snapshot_tags)
    new_tags = {
        **base_tags,
        **extra_tags,
        t.LINEAGE: lineage,
        t.GENERATION: generation,
        t.HOLDER: instance_id,
        t.DEVICE: device,
        t.RESTORED_FROM: snapshot["SnapshotId"],
        t.MANAGED_BY: t.MANAGER,
    }
    params = dict(
        AvailabilityZone=zone,
        SnapshotId=snapshot["SnapshotId"],
        TagSpecifications=[{"ResourceType": "volume", "Tags": t.as_list(new_tags)}],
        **_volume_shape(snapshot, source_volume, kms_key_id),
    )
    if initialization_rate:
        params["VolumeInitializationRate"] = initialization_rate
    volume_id = result.volume_id = _timed(
        result, "restore", clock, lambda: _create_restored_volume(ec2, params, timeout, clock)
    )
    if current:
        call(ec2, "create_tags", Resources=[current["VolumeId"]], Tags=t.as_list({t.SUPERSEDED_BY: volume_id}))
    _timed(result, "attach", clock, lambda: attach_volume(ec2, volume_id, instance_id, device, timeout, clock))


def staged_from(current, snapshot_id):
    """Whether the current volume is a copy of ``snapshot_id`` that no instance has held yet (a backup
    restore.yml staged for the group). Restoring that backup elsewhere loses nothing, however old it is:
    ``max_data_age`` guards against losing writes, and an operator's rollback chose this age."""
    if not current:
        return False
    tags = t.as_dict(current.get("Tags"))
    return tags.get(t.RESTORED_FROM) == snapshot_id and not tags.get(t.HOLDER) and not _attachment(current)


def _create_restored_volume(ec2, params, timeout, clock):
    created = call(ec2, "create_volume", **params)
    volume_id = created["VolumeId"]
    try:
        wait_until(
            lambda: describe_volume(ec2, volume_id),
            lambda v: v["State"] == "available",
            f"restored volume {volume_id} to become available",
            timeout,
            clock,
            is_failed=lambda v: v["State"] == "error" and f"volume {volume_id} is in error state",
        )
    except NotFound as exc:
        # EBS checks an encrypted volume's KMS key after CreateVolume answers ("the action can appear to complete,
        # but eventually fails", CreateVolume KmsKeyId): a key disabled or pending deletion makes the volume vanish.
        key = created.get("KmsKeyId") or "its KMS key"
        raise NotFound(
            f"volume {volume_id} vanished while EBS created it: EBS could not use {key} (disabled, pending deletion or "
            f"not granted to EBS); enable the key, then restore. Nothing was attached",
            volume_id=volume_id,
            kms_key_id=created.get("KmsKeyId"),
            snapshot_id=params.get("SnapshotId"),
        ) from exc
    return volume_id


def stage_lineage_volume(
    ec2,
    lineage,
    zone,
    snapshot_id,
    app_stopped=False,
    force_detach=False,
    volume_tags=None,
    kms_key_id=None,
    dry_run=False,
    timeout=300,
    clock=SYSTEM_CLOCK,
):
    """Restore ``snapshot_id`` into ``zone`` as the lineage's newest generation, attached to nothing.

    For a restore into an Auto Scaling group (restore.yml): the group's next instance is given the newest
    generation by the control plane, as after any interruption. The current holder is fenced as for a move
    (stopped, or its application asserted stopped); the previous volume is kept, tagged superseded-by.
    Idempotent: the lineage's current volume already restored from that snapshot is the staged one.
    """
    lineages.validate_name(lineage)
    if not snapshot_id:
        raise InvalidInput("staging a volume restores a chosen backup: snapshot_id is required")
    result = MoveResult(changed=False, lineage=lineage, instance_id=None, availability_zone=zone)
    current = lineages.current_volume(ec2, lineage)
    current_tags = t.as_dict(current.get("Tags")) if current else {}
    if current and current_tags.get(t.RESTORED_FROM) == snapshot_id and not _attachment(current):
        result.volume_id, result.generation = current["VolumeId"], t.generation_of(current_tags)
        result.from_snapshot, result.snapshot_id = True, snapshot_id
        if current["AvailabilityZone"] != zone:
            result.actions.append(
                f"{current['VolumeId']} was staged in {current['AvailabilityZone']}; the control plane "
                f"restores it into {zone} from {snapshot_id} when an instance launches there"
            )
        return result
    snapshot = _restore_source(ec2, lineage, snapshot_id)
    holder = _holder_of(ec2, current) if current else None
    if holder:
        assert_release_allowed(holder, current["VolumeId"], app_stopped)
    data_age = max(0.0, (clock.now() - snapshot["StartTime"]).total_seconds())
    generation = lineages.highest_generation(ec2, lineage) + 1
    result.changed, result.generation, result.data_age_seconds = True, generation, round(data_age, 1)
    result.from_snapshot, result.snapshot_id = True, snapshot["SnapshotId"]
    if current:
        result.previous_volume_id = current["VolumeId"]
        result.previous_instance_id = holder["InstanceId"] if holder else None
    if holder:
        result.actions.append(f"release {current['VolumeId']} from {holder['InstanceId']} ({state_of(holder)})")
    result.actions.append(
        f"create a volume in {zone} from {snapshot['SnapshotId']} (data age {data_age:.0f}s) "
        f"as generation {generation}, attached to nothing"
    )
    if dry_run:
        return result
    _release_from_holder(ec2, current, holder, result, app_stopped, force_detach, timeout, clock)
    snapshot_tags = t.as_dict(snapshot.get("Tags"))
    source_volume = current if current and current["VolumeId"] == snapshot_tags.get(t.SOURCE_VOLUME) else None
    base_tags = t.copyable(t.as_dict(source_volume.get("Tags")) if source_volume else snapshot_tags)
    new_tags = {
        **base_tags,
        **(volume_tags or {}),
        t.LINEAGE: lineage,
        t.GENERATION: generation,
        t.RESTORED_FROM: snapshot["SnapshotId"],
        t.MANAGED_BY: t.MANAGER,
    }
    params = dict(
        AvailabilityZone=zone,
        SnapshotId=snapshot["SnapshotId"],
        TagSpecifications=[{"ResourceType": "volume", "Tags": t.as_list(new_tags)}],
        **_volume_shape(snapshot, source_volume, kms_key_id),
    )
    volume_id = result.volume_id = _timed(
        result, "restore", clock, lambda: _create_restored_volume(ec2, params, timeout, clock)
    )
    if current:
        call(ec2, "create_tags", Resources=[current["VolumeId"]], Tags=t.as_list({t.SUPERSEDED_BY: volume_id}))
    return result
