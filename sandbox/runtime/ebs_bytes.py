"""EBS volumes with bytes: the files and loop devices behind volumes, following moto's attachments and snapshots.

AWS (EBS user guide, "Attach a volume", "Detach a volume", "Create snapshots", "Create a volume from a snapshot"):

* each volume's bytes live in ``<state_dir>/ebs/<volume>.img``, a sparse file of ``min(size, volume_mib)`` MiB made
  on first need (the modeled GiB are not allocated);
* when an attachment becomes ``attached`` (the EBS rule's modeled attach time, or at once for moto's own
  attachments at launch) a loop device is set up over it and the instance's stand-in gets the name udev gives the
  volume on a Nitro instance, ``<instance root>/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_<volume id without
  dash>``;
* when it is detached (``DetachVolume`` after the modeled detach time, or the instance's termination) the name goes,
  whatever is mounted from the device is lazily unmounted, as when a disk is pulled, and the loop device is
  released. The bytes stay with the volume and follow it to the next instance;
* ``CreateSnapshot(s)`` copy the volume's bytes when they are called (point in time: what the volume holds then,
  not what the filesystem has yet to write), ``CopySnapshot`` the snapshot's; a volume made from a snapshot starts
  as a copy of its bytes, an empty one as zeros. Root volumes have no bytes (the instance root directory stands in
  for the root filesystem), nor have ``CreateImage``'s snapshots (moto snapshots a new empty volume).

With ``backing: directory`` (machines without loop devices) a volume is a directory and the agent's directory
stand-ins (``allow_directory_devices``) take its place.

``EbsBytes`` is the volume half of the ``Runtime`` (``sandbox/runtime/__init__.py``); ``install`` makes moto's
attachments and snapshots tell the active runtime.
"""

from __future__ import annotations

import os
import shutil

from .host import mounts, run, unmount_lazily

MIB = 1024 * 1024
BY_ID_PREFIX = "nvme-Amazon_Elastic_Block_Store_"


class EbsBytes:
    """The volume half of the ``Runtime``: the bytes of volumes and snapshots, the devices of attached volumes.

    Uses the runtime's ``context``, ``enabled``, ``backing``, ``volume_mib``, ``plugged`` (volume id -> {"instance_id",
    "device", "link", "image"}) and ``safely``."""

    @property
    def ebs_dir(self):
        return os.path.join(self.context.state_dir, "ebs")

    def image_path(self, resource_id):
        return os.path.join(self.ebs_dir, resource_id + (".img" if self.backing == "loop" else ""))

    def volume_bytes(self, volume_id):
        return min(self.volume_mib, max(1, int(self._volume(volume_id).size or 1)) * 1024) * MIB

    def _volume(self, volume_id):
        return self.context.backend("ec2").volumes[volume_id]

    def bytes_of(self, volume):
        """Where a volume's bytes are now: its own image, else the snapshot it was made from; None: zeros."""
        own = self.image_path(volume.id)
        if os.path.exists(own):
            return own
        if getattr(volume, "snapshot_id", None) and os.path.exists(self.image_path(volume.snapshot_id)):
            return self.image_path(volume.snapshot_id)
        return None

    def _copy(self, source, destination):
        staging = destination + ".copying"
        if self.backing == "loop":
            run(["cp", "--sparse=always", source, staging])
        else:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging, symlinks=True)
        os.replace(staging, destination)

    def ensure_image(self, volume):
        path = self.image_path(volume.id)
        if os.path.exists(path):
            return path
        os.makedirs(self.ebs_dir, exist_ok=True)
        source = self.bytes_of(volume)
        if source is not None:
            self._copy(source, path)
        elif self.backing == "directory":
            os.makedirs(path)
        else:
            with open(path, "wb"):
                pass
        if self.backing == "loop" and os.path.getsize(path) < self.volume_bytes(volume.id):
            os.truncate(path, self.volume_bytes(volume.id))  # sparse: zeros cost nothing
        return path

    def snapshot_taken(self, snapshot):
        """CreateSnapshot(s): the volume's bytes as they are at the call."""
        source = self.bytes_of(snapshot.volume) if snapshot.volume is not None else None
        if source is not None:
            self._copy(source, self.image_path(snapshot.id))
        self.context.record(
            "runtime_snapshots",
            {
                "snapshot_id": snapshot.id,
                "volume_id": getattr(snapshot.volume, "id", None),
                "bytes": source is not None,
                "at": self.context.now().isoformat(),
            },
        )

    def snapshot_copied(self, source_id, snapshot):
        if os.path.exists(self.image_path(source_id)):
            self._copy(self.image_path(source_id), self.image_path(snapshot.id))

    def changed(self):
        """An attachment changed state: bring the devices in line at the next tick (after the change's request or
        scheduled action has finished: moto sets ``attached`` at once, then the EBS rule ``attaching``)."""
        self.context.after(0, self.reconcile, "runtime: devices follow attachments")

    def attached_volumes(self):
        """volume id -> (volume, instance) for every non-root volume moto shows ``attached``."""
        wanted = {}
        for volume in list(self.context.backend("ec2").volumes.values()):
            attachment = volume.attachment
            if attachment is None or attachment.status != "attached":
                continue
            instance = attachment.instance
            if attachment.device == getattr(instance, "root_device_name", None):
                continue
            if instance.state in ("shutting-down", "terminated"):
                continue
            wanted[volume.id] = (volume, instance)
        return wanted

    def reconcile(self):
        if not self.enabled:
            return
        wanted = self.attached_volumes()
        for volume_id, plug in list(self.plugged.items()):
            if volume_id not in wanted or wanted[volume_id][1].id != plug["instance_id"]:
                self.safely(self.unplug, volume_id)
        for volume_id, (volume, instance) in wanted.items():
            if volume_id not in self.plugged:
                self.safely(self.plug, volume, instance)

    def plug(self, volume, instance):
        image = self.ensure_image(volume)
        by_id = os.path.join(self.context.instance_root(instance.id), "dev", "disk", "by-id")
        os.makedirs(by_id, exist_ok=True)
        link = os.path.join(by_id, BY_ID_PREFIX + volume.id.replace("-", ""))
        device = run(["losetup", "--find", "--show", image]).stdout.strip() if self.backing == "loop" else image
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(device, link)
        self.plugged[volume.id] = {"instance_id": instance.id, "device": device, "link": link, "image": image}
        self.context.record(
            "runtime_devices",
            {
                "action": "attached",
                "volume_id": volume.id,
                "instance_id": instance.id,
                "device": device,
                "link": link,
                "at": self.context.now().isoformat(),
            },
        )

    def unplug(self, volume_id):
        plug = self.plugged.pop(volume_id)
        if os.path.lexists(plug["link"]):
            os.remove(plug["link"])
        device, busy = plug["device"], False
        unmount_lazily(self._mounts_of(device))
        if self.backing == "loop":
            run(["losetup", "-d", device], check=False)
            name = os.path.basename(device)
            if os.path.exists(f"/sys/block/{name}/loop/backing_file"):
                # Still held open (a lazily unmounted filesystem in use): it keeps writing to the old file, not to
                # the volume, as a pulled disk would take no more writes. The volume keeps its bytes as of now.
                busy = True
                self._copy(plug["image"], plug["image"])
        self.context.record(
            "runtime_devices",
            {
                "action": "detached",
                "volume_id": volume_id,
                "instance_id": plug["instance_id"],
                "device": device,
                "busy": busy,
                "at": self.context.now().isoformat(),
            },
        )

    def _mounts_of(self, device):
        if self.backing == "loop":
            return [mount_point for mount_point, source in mounts() if source == device]
        identities = set()
        for path in [device] + [
            os.path.join(device, name) for name in os.listdir(device) if os.path.isdir(os.path.join(device, name))
        ]:
            status = os.stat(path)
            identities.add((status.st_dev, status.st_ino))
        found = []
        for mount_point, dummy_source in mounts():
            try:
                status = os.stat(mount_point)
            except OSError:
                continue
            if (status.st_dev, status.st_ino) in identities:
                found.append(mount_point)
        return found

    def unplug_all(self):
        for volume_id in list(self.plugged):
            self.safely(self.unplug, volume_id)

    def release_left_behind(self):
        """Release the loop devices over this runtime's files that a crash left behind, and forget every byte."""
        ebs_dir = self.ebs_dir
        if shutil.which("losetup") and os.path.isdir(ebs_dir):
            listed = run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], check=False).stdout
            for line in listed.splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2 and parts[1].startswith(ebs_dir + os.sep):
                    run(["losetup", "-d", parts[0]], check=False)
        shutil.rmtree(ebs_dir, ignore_errors=True)
        self.plugged.clear()


def install(context, active):
    """Patch moto's models (once): attachments and snapshots tell ``active(context)``, the runtime when enabled."""
    from moto.ec2.models.elastic_block_store import EBSBackend, VolumeAttachment

    def status_of(self):
        return self.__dict__.get("_sandbox_status", self.__dict__.get("status"))

    def set_status(self, value):
        self.__dict__["_sandbox_status"] = value
        runtime = active(context)
        if runtime is not None:
            runtime.changed()

    VolumeAttachment.status = property(status_of, set_status)

    moto_create_snapshot = EBSBackend.create_snapshot
    moto_copy_snapshot = EBSBackend.copy_snapshot

    def create_snapshot(self, *args, **kwargs):
        snapshot = moto_create_snapshot(self, *args, **kwargs)
        runtime = active(context)
        if runtime is not None:
            runtime.safely(runtime.snapshot_taken, snapshot)
        return snapshot

    def copy_snapshot(self, source_snapshot_id, *args, **kwargs):
        snapshot = moto_copy_snapshot(self, source_snapshot_id, *args, **kwargs)
        runtime = active(context)
        if runtime is not None:
            runtime.safely(runtime.snapshot_copied, source_snapshot_id, snapshot)
        return snapshot

    EBSBackend.create_snapshot = create_snapshot
    EBSBackend.copy_snapshot = copy_snapshot
