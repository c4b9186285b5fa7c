"""EBS attach and detach as AWS does them.

AWS (EC2 API reference AttachVolume / DetachVolume; EBS user guide "Attach an Amazon EBS
volume to an instance", "Detach an Amazon EBS volume"):

* a volume attaches only to an instance in its own availability zone
  (``InvalidVolume.ZoneMismatch``), only when it is ``available`` (``VolumeInUse`` when
  attached elsewhere, ``IncorrectState`` otherwise), only to a running or stopped instance
  (``IncorrectInstanceState``), and only at a free device name (``InvalidParameterValue``:
  "Attachment point ... is already in use");
* ``DetachVolume`` needs only ``VolumeId``; ``InstanceId`` and ``Device`` are optional;
* the attachment passes through ``attaching`` and ``detaching`` (the volume stays ``in-use``)
  for the modeled attach and detach times before it is ``attached`` or gone;
* ``Force`` is accepted; the sandbox records every detach with its ``Force`` value so tests
  can assert that recovery never forced one (``records`` control, name ``detaches``);
* ``DescribeVolumes`` gives a blank volume ``SnapshotId: ""``.

moto 5.2.5 attaches across zones, attaches an ``in-use`` volume to a second instance,
reuses a device name, crashes on a detach without ``InstanceId``, attaches and detaches
instantly, and leaves ``SnapshotId`` out of a blank volume's description.
"""

from __future__ import annotations

ATTACHABLE_INSTANCE_STATES = ("running", "stopped")


def _alias(device):
    """/dev/sdf and /dev/xvdf name the same attachment point on Xen and Nitro instances."""
    if device.startswith("/dev/sd"):
        return "/dev/xvd" + device[len("/dev/sd") :]
    if device.startswith("/dev/xvd"):
        return "/dev/sd" + device[len("/dev/xvd") :]
    return device


def install(context):
    """Patch the API layer only: moto's own internal attach/detach (root volumes at launch,
    teardown at termination) stay instant, as AWS's are not API calls either."""
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    def attach_volume(self):
        volume_id = self._get_param("VolumeId")
        instance_id = self._get_param("InstanceId")
        device_path = self._get_param("Device")
        self.error_on_dryrun()
        backend = self.ec2_backend
        volume = backend.get_volume(volume_id)
        instance = backend.get_instance(instance_id)
        if volume.zone.name != instance.placement.zone:
            raise EC2ClientError(
                "InvalidVolume.ZoneMismatch",
                f"The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'",
            )
        if volume.attachment is not None:
            raise EC2ClientError("VolumeInUse", f"{volume_id} is already attached to an instance")
        if volume.status != "available":
            raise EC2ClientError("IncorrectState", f"Volume '{volume_id}' is not 'available'.")
        if instance.state not in ATTACHABLE_INSTANCE_STATES:
            raise EC2ClientError("IncorrectInstanceState", f"Instance '{instance_id}' is not 'running' or 'stopped'.")
        used = set(instance.block_device_mapping.keys())
        if device_path in used or _alias(device_path) in used:
            raise EC2ClientError(
                "InvalidParameterValue",
                f"Invalid value '{device_path}' for unixDevice. Attachment point {device_path} is already in use",
            )
        attachment = backend.attach_volume(volume_id, instance_id, device_path)
        attachment.status = "attaching"

        def attached():
            if volume.attachment is attachment and attachment.status == "attaching":
                attachment.status = "attached"

        context.after(context.latency["ebs_attach"], attached, f"attach {volume_id} to {instance_id}")
        return ActionResult(
            {
                "VolumeId": volume_id,
                "InstanceId": instance_id,
                "Device": device_path,
                "State": "attaching",
                "AttachTime": attachment.attach_time,
            }
        )

    def detach_volume(self):
        volume_id = self._get_param("VolumeId")
        instance_id = self._get_param("InstanceId")
        force = str(self._get_param("Force", False)).lower() == "true"
        self.error_on_dryrun()
        backend = self.ec2_backend
        volume = backend.get_volume(volume_id)
        attachment = volume.attachment
        if attachment is None:
            raise EC2ClientError("IncorrectState", f"Volume '{volume_id}' is in the 'available' state.")
        if instance_id and attachment.instance.id != instance_id:
            raise EC2ClientError(
                "InvalidAttachment.NotFound", f"The volume '{volume_id}' is not attached to instance '{instance_id}'"
            )
        if attachment.status == "detaching":
            raise EC2ClientError("IncorrectState", f"Volume '{volume_id}' is in the 'detaching' state.")
        holder = attachment.instance.id
        context.record(
            "detaches", {"volume_id": volume_id, "instance_id": holder, "force": force, "at": context.now().isoformat()}
        )
        attachment.status = "detaching"

        def detached():
            if volume.attachment is attachment:
                backend.detach_volume(volume_id, holder, attachment.device)

        context.after(context.latency["ebs_detach"], detached, f"detach {volume_id} from {holder}")
        return ActionResult(
            {
                "VolumeId": volume_id,
                "InstanceId": holder,
                "Device": attachment.device,
                "State": "detaching",
                "AttachTime": attachment.attach_time,
            }
        )

    ElasticBlockStore.attach_volume = attach_volume
    ElasticBlockStore.detach_volume = detach_volume

    # AWS's DescribeVolumes gives every volume a SnapshotId, "" for a blank one; moto leaves it out,
    # and amazon.aws.ec2_vol_info then fails with KeyError 'snapshot_id'.
    from moto.ec2.models.elastic_block_store import Volume

    original_volume_init = Volume.__init__

    def volume_init(self, *args, **kwargs):
        original_volume_init(self, *args, **kwargs)
        if self.snapshot_id is None:
            self.snapshot_id = ""

    Volume.__init__ = volume_init
