"""AMIs: deregistering with their snapshots, and deregistration protection, as AWS documents them.

AWS (EC2 API reference DeregisterImage, EnableImageDeregistrationProtection,
DisableImageDeregistrationProtection, Image; EC2 user guide "Deregister an Amazon EC2 AMI" and
"Protect an Amazon EC2 AMI from deregistration"):

* ``DeregisterImage`` with ``DeleteAssociatedSnapshots=true`` deletes the AMI's snapshots with it,
  except a snapshot another AMI still uses ("if a snapshot is associated with multiple AMIs, it won't
  be deleted even if specified for deletion, although the AMI will still be deregistered"); the answer
  gives each snapshot's outcome in ``DeleteSnapshotResults`` (``SnapshotId``, ``ReturnCode``: here
  ``success``, or ``skipped`` for the snapshot another AMI uses). Without the flag (the default) the
  snapshots stay;
* ``EnableImageDeregistrationProtection`` makes ``DeregisterImage`` refuse the AMI
  (``OperationNotPermitted``, EC2's code for an operation a protection forbids) until
  ``DisableImageDeregistrationProtection``; with ``WithCooldown`` the refusal lasts 24 hours after the
  disable. ``DescribeImages`` reports ``DeregistrationProtection``: ``disabled``,
  ``enabled-without-cooldown``, ``enabled-with-cooldown``, and during a cooldown
  ``disabled after <time>``. Enable and Disable answer the new value in ``Return``.

moto 5.2 accepts ``DeleteAssociatedSnapshots`` and ignores it (every snapshot stays), has neither
protection call, and leaves ``DeregistrationProtection`` out of ``DescribeImages``.
"""

from __future__ import annotations

from datetime import timedelta

COOLDOWN = timedelta(hours=24)


def _snapshot_ids(image):
    return [m["Ebs"]["SnapshotId"] for m in image.block_device_mappings if m.get("Ebs", {}).get("SnapshotId")]


def install(context):
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.amis import Ami
    from moto.ec2.responses.amis import AmisResponse

    def protection(image):
        """The image's ``DeregistrationProtection`` now (the cooldown runs on the modeled clock)."""
        state, until = getattr(image, "sandbox_protection", ("disabled", None))
        if until is not None:
            if context.now() < until:
                return f"disabled after {until.strftime('%Y-%m-%dT%H:%M:%S.000Z')}"
            image.sandbox_protection = ("disabled", None)
            return "disabled"
        return state

    Ami.deregistration_protection = property(protection)

    def owned_image(response):
        image_id = response._get_param("ImageId")
        image = response.ec2_backend.amis.get(image_id)
        if image is None:
            raise EC2ClientError("InvalidAMIID.NotFound", f"The image id '[{image_id}]' does not exist")
        if image.owner_id != context.account_id:
            raise EC2ClientError("UnauthorizedOperation", "You are not authorized to perform this operation.")
        return image

    def enable_image_deregistration_protection(self):
        image = owned_image(self)
        self.error_on_dryrun()
        state = "enabled-with-cooldown" if self._get_bool_param("WithCooldown", False) else "enabled-without-cooldown"
        image.sandbox_protection = (state, None)
        return ActionResult({"Return": state})

    def disable_image_deregistration_protection(self):
        image = owned_image(self)
        self.error_on_dryrun()
        state = protection(image)
        if state == "enabled-with-cooldown":
            image.sandbox_protection = ("disabled", context.now() + COOLDOWN)
        elif state == "enabled-without-cooldown":
            image.sandbox_protection = ("disabled", None)
        return ActionResult({"Return": protection(image)})

    # The ownership rule of rules/snapshots.py (installed before this module) runs inside ``previous``.
    previous = AmisResponse.deregister_image

    def deregister_image(self):
        image = self.ec2_backend.amis.get(self._get_param("ImageId"))
        delete_snapshots = self._get_bool_param("DeleteAssociatedSnapshots", False)
        if image is not None and image.owner_id == context.account_id:
            self.error_on_dryrun()
            if protection(image) != "disabled":
                raise EC2ClientError(
                    "OperationNotPermitted",
                    f"The image '{image.id}' has deregistration protection ({protection(image)}); "
                    f"disable it before deregistering the image",
                )
        snapshot_ids = _snapshot_ids(image) if image is not None else []
        answer = previous(self)
        if not delete_snapshots or image is None:
            return answer
        results = []
        for snapshot_id in snapshot_ids:
            in_use = any(snapshot_id in _snapshot_ids(other) for other in self.ec2_backend.amis.values())
            if in_use:
                results.append({"SnapshotId": snapshot_id, "ReturnCode": "skipped"})
            elif self.ec2_backend.snapshots.pop(snapshot_id, None) is not None:
                results.append({"SnapshotId": snapshot_id, "ReturnCode": "success"})
        return ActionResult({"Return": True, "DeleteSnapshotResults": results})

    AmisResponse.enable_image_deregistration_protection = enable_image_deregistration_protection
    AmisResponse.disable_image_deregistration_protection = disable_image_deregistration_protection
    AmisResponse.deregister_image = deregister_image
