"""Snapshots and images as AWS makes them, and paging as AWS pages.

AWS (EC2 API reference CreateSnapshot(s), CreateImage, DeleteSnapshot, DeregisterImage,
Describe*; EBS user guide "Create Amazon EBS snapshots"):

* a snapshot is a point-in-time copy at the call but stays ``pending`` (progress rising) for
  minutes before ``completed``; modeled as ``snapshot_base`` + ``snapshot_per_gib`` x the GiB it
  stores. Snapshots are incremental ("only the blocks on the device that have changed after your
  most recent snapshot are saved"): the first snapshot of a volume stores its size; a later one
  (or the first of a volume made from a snapshot, whose parent is that snapshot) stores what
  changed since its parent was taken, modeled as ``volume_write_mib_per_second`` (a documented
  assumption: a busy small database, 5 MiB/s) x the seconds since the parent's start, at most
  the size. It completes no earlier than its parent, whose blocks it shares.
  An AMI made by ``CreateImage`` stays ``pending`` likewise (``image_base`` +
  ``image_per_gib`` x the instance's volume sizes), and so do its snapshots;
* ``CreateSnapshots`` returns each item's ``State``; with ``CopyTagsFromSource=volume`` it
  copies each volume's tags onto its snapshot, explicit ``TagSpecifications`` winning;
* ``CreateImage`` applies ``snapshot`` ``TagSpecifications`` to the image's snapshots;
* ``DeleteSnapshot`` and ``DeregisterImage`` refuse a resource another account owns
  (``UnauthorizedOperation``), and a snapshot that a registered image uses cannot be deleted
  (``InvalidSnapshot.InUse``);
* ``DescribeSnapshots``, ``DescribeVolumes`` and ``DescribeImages`` honour ``MaxResults`` with
  ``NextToken``. AWS may return fewer items than ``MaxResults``; the sandbox returns at most
  ``PAGE_CAP`` per page, so paging code is always exercised.

moto 5.2.5 completes snapshots and images at once, omits ``State`` from CreateSnapshots,
ignores ``CopyTagsFromSource``, raises NotImplementedError for snapshot tags on CreateImage,
deletes other accounts' snapshots and images, and ignores ``MaxResults`` on these calls.
"""

from __future__ import annotations

import base64

PAGE_CAP = 5
MAX_RESULTS_RANGE = {"Snapshots": (5, 1000), "Volumes": (5, 500), "Images": (5, 1000)}


def _volume_tags(backend, volume_id):
    return {
        tag["key"]: tag["value"]
        for tag in backend.describe_tags(filters={"resource-id": [volume_id]})
        if not tag["key"].startswith("aws:")
    }


def _token(offset):
    return base64.urlsafe_b64encode(f"sandbox:{offset}".encode()).decode()


def _offset(token):
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)[1])
    except (ValueError, IndexError) as exc:
        from moto.ec2.exceptions import EC2ClientError

        raise EC2ClientError("InvalidParameterValue", f"Invalid value '{token}' for NextToken") from exc


def install(context):
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.amis import AmiBackend
    from moto.ec2.models.elastic_block_store import Snapshot
    from moto.ec2.responses.amis import AmisResponse
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    # ---- pending snapshots --------------------------------------------------------------
    Snapshot.progress = property(
        lambda self: "100%" if self.status == "completed" else getattr(self, "sandbox_progress", "0%")
    )

    def hold_pending(snapshot, modeled_seconds):
        snapshot.status = "pending"
        snapshot.sandbox_completes_at = context.clock.elapsed() + max(0.0, context.clock.duration(modeled_seconds))
        failing = context.controls_state.get("failing_snapshots", {})
        fails = failing.get(getattr(snapshot.volume, "id", None), 0) > 0
        if fails:
            failing[snapshot.volume.id] -= 1

        def complete():
            if snapshot.status == "pending":
                snapshot.status = "error" if fails else "completed"
                if fails:
                    context.record("failed_snapshots", {"snapshot_id": snapshot.id, "volume_id": snapshot.volume.id})

        context.after(modeled_seconds, complete, f"snapshot {snapshot.id} completes")

    def snapshot_time(size):
        return context.latency["snapshot_base"] + context.latency["snapshot_per_gib"] * size

    def incremental_time(backend, snapshot):
        """Modeled seconds until ``snapshot`` (just created) completes: what it stores, and never before its parent."""
        volume = snapshot.volume
        parent = parent_of_created(backend, snapshot)
        if parent is None:
            return snapshot_time(volume.size)
        since = max(0.0, context.clock.elapsed() - getattr(parent, "sandbox_started_at", -1e18))
        changed_gib = min(volume.size, context.latency["volume_write_mib_per_second"] * since / 1024.0)
        own = snapshot_time(changed_gib)
        parent_left = getattr(parent, "sandbox_completes_at", 0.0) - context.clock.elapsed()
        if parent.status != "pending":
            parent_left = 0.0
        return max(own, parent_left)

    def parent_of_created(backend, snapshot):
        """``parent_of`` as it was before ``snapshot`` itself was made."""
        own = [
            snap
            for snap in backend.snapshots.values()
            if snap is not snapshot
            and getattr(snap.volume, "id", None) == snapshot.volume.id
            and snap.status != "error"
        ]
        if own:
            return max(own, key=lambda snap: getattr(snap, "sandbox_started_at", -1e18))
        source = getattr(snapshot.volume, "snapshot_id", None)
        return backend.snapshots.get(source) if source else None

    def started(snapshot):
        snapshot.sandbox_started_at = context.clock.elapsed()
        return snapshot

    def create_snapshot(self):
        volume_id = self._get_param("VolumeId")
        snapshot_tags = self._parse_tag_specification().get("snapshot", {})
        self.error_on_dryrun()
        snapshot = started(self.ec2_backend.create_snapshot(volume_id, self._get_param("Description")))
        snapshot.add_tags(snapshot_tags)
        hold_pending(snapshot, incremental_time(self.ec2_backend, snapshot))
        return ActionResult(snapshot)

    def create_snapshots(self):
        instance_spec = self._get_param("InstanceSpecification", {})
        description = self._get_param("Description", "")
        snapshot_tags = self._parse_tag_specification().get("snapshot", {})
        copy_from = self._get_param("CopyTagsFromSource")
        self.error_on_dryrun()
        snapshots = self.ec2_backend.create_snapshots(instance_spec, description, {})
        items = []
        for snapshot in snapshots:
            tags = _volume_tags(self.ec2_backend, snapshot.volume.id) if copy_from == "volume" else {}
            tags.update(snapshot_tags)
            snapshot.add_tags(tags)
            hold_pending(started(snapshot), incremental_time(self.ec2_backend, snapshot))
            items.append(
                {
                    "SnapshotId": snapshot.id,
                    "VolumeId": snapshot.volume.id,
                    "State": "pending",
                    "StartTime": snapshot.start_time,
                    "Progress": "0%",
                    "OwnerId": snapshot.owner_id,
                    "VolumeSize": snapshot.volume.size,
                    "Description": description,
                    "Encrypted": snapshot.encrypted,
                    "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                }
            )
        return ActionResult({"Snapshots": items})

    # ---- pending images -----------------------------------------------------------------
    original_create_image = AmiBackend.create_image

    def create_image(self, instance_id, name, description, tag_specifications):
        snapshot_tags, image_specs = {}, []
        for spec in tag_specifications or []:
            if spec["ResourceType"] == "snapshot":
                snapshot_tags.update({tag["Key"]: tag["Value"] for tag in spec["Tags"]})
            else:
                image_specs.append(spec)
        image = original_create_image(self, instance_id, name, description, image_specs)
        if snapshot_tags:
            image.ebs_snapshot.add_tags(snapshot_tags)
        instance = self.get_instance(instance_id)
        size = sum(self.get_volume(m.volume_id).size for m in instance.block_device_mapping.values())
        modeled = context.latency["image_base"] + context.latency["image_per_gib"] * size
        image.state = "pending"
        hold_pending(image.ebs_snapshot, modeled)

        def available():
            if image.state == "pending":
                image.state = "available"

        context.after(modeled, available, f"image {image.id} available")
        return image

    # ---- ownership and use --------------------------------------------------------------
    def delete_snapshot(self):
        snapshot_id = self._get_param("SnapshotId")
        self.error_on_dryrun()
        snapshot = self.ec2_backend.snapshots.get(snapshot_id)
        if snapshot is None:
            raise EC2ClientError("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
        if snapshot.owner_id != context.account_id:
            raise EC2ClientError("UnauthorizedOperation", "You are not authorized to perform this operation.")
        for image in self.ec2_backend.amis.values():
            used = {m.get("Ebs", {}).get("SnapshotId") for m in image.block_device_mappings}
            if snapshot_id in used:
                raise EC2ClientError(
                    "InvalidSnapshot.InUse", f"The snapshot {snapshot_id} is currently in use by {image.id}"
                )
        self.ec2_backend.snapshots.pop(snapshot_id)
        return ActionResult({})

    original_deregister = AmisResponse.deregister_image

    def deregister_image(self):
        image = self.ec2_backend.amis.get(self._get_param("ImageId"))
        if image is not None and image.owner_id != context.account_id:
            raise EC2ClientError("UnauthorizedOperation", "You are not authorized to perform this operation.")
        return original_deregister(self)

    # ---- paging -------------------------------------------------------------------------
    def paged(original, result_key, ids_param):
        def describe(self):
            max_results = self._get_param("MaxResults")
            token = self._get_param("NextToken")
            if max_results is None and token is None:
                return original(self)
            low, high = MAX_RESULTS_RANGE[result_key]
            if max_results is not None and not low <= int(max_results) <= high:
                raise EC2ClientError(
                    "InvalidParameterValue",
                    f"Value ( {max_results} ) for parameter maxResults is invalid. "
                    f"Expecting a value between {low} and {high}.",
                )
            if self._get_param(ids_param):
                raise EC2ClientError(
                    "InvalidParameterCombination",
                    f"The parameter {ids_param} cannot be used with the parameter maxResults",
                )
            everything = original(self).result[result_key]
            start = _offset(token) if token else 0
            size = min(int(max_results or high), PAGE_CAP)
            page = {result_key: list(everything)[start : start + size]}
            if start + size < len(everything):
                page["NextToken"] = _token(start + size)
            return ActionResult(page)

        return describe

    # ---- failure ------------------------------------------------------------------------
    @context.control("ec2/fail-snapshots")
    def _fail_snapshots(payload):
        """``{"volume_id": vol-..., "times": n}``: the next ``n`` (default 1) snapshots of that volume end in ``error``
        instead of ``completed``, at the time they would have completed (EC2 API reference, ``Snapshot.State``:
        ``pending | completed | error``; EBS user guide: a snapshot that fails shows ``error``)."""
        volume_id, times = payload.get("volume_id"), payload.get("times", 1)
        if volume_id not in context.backend("ec2").volumes:
            raise ValueError(f"no such volume: {volume_id!r}")
        if not isinstance(times, int) or isinstance(times, bool) or times < 0:
            raise ValueError(f"times must be a whole number >= 0, got {times!r}")
        context.controls_state.setdefault("failing_snapshots", {})[volume_id] = times
        return {"failing_snapshots": dict(context.controls_state["failing_snapshots"])}

    # ---- age ----------------------------------------------------------------------------
    @context.control("ec2/backdate")
    def _backdate(payload):
        """``{"ids": [snap-..., ami-...], "seconds": s}``: these backups were taken ``s`` seconds earlier.

        A test's way to have last week's backups without waiting a week (retention by age); it moves
        the snapshots' ``StartTime`` and the images' ``CreationDate``, nothing else."""
        from datetime import timedelta

        ids, seconds = payload.get("ids") or [], payload.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        backend = context.backend("ec2")
        unknown = [i for i in ids if i not in backend.snapshots and i not in backend.amis]
        if not ids or unknown:
            raise ValueError(f"no such snapshot or image: {', '.join(unknown) or '(no ids given)'}")
        moved = {}
        for resource_id in ids:
            if resource_id in backend.snapshots:
                snapshot = backend.snapshots[resource_id]
                snapshot.start_time -= timedelta(seconds=seconds)
                moved[resource_id] = snapshot.start_time.isoformat()
            else:
                image = backend.amis[resource_id]
                image.creation_date -= timedelta(seconds=seconds)
                moved[resource_id] = image.creation_date.isoformat()
        return {"backdated": moved}

    ElasticBlockStore.create_snapshot = create_snapshot
    ElasticBlockStore.create_snapshots = create_snapshots
    ElasticBlockStore.delete_snapshot = delete_snapshot
    AmiBackend.create_image = create_image
    AmisResponse.deregister_image = deregister_image
    ElasticBlockStore.describe_snapshots = paged(ElasticBlockStore.describe_snapshots, "Snapshots", "SnapshotIds")
    ElasticBlockStore.describe_volumes = paged(ElasticBlockStore.describe_volumes, "Volumes", "VolumeIds")
    AmisResponse.describe_images = paged(AmisResponse.describe_images, "Images", "ImageIds")
