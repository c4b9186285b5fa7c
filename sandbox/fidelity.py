"""AWS rules the sandbox layers over moto, so that a green test means AWS would agree.

moto is the store of state; these patches make it answer as AWS does where it does not.
They are installed into the sandbox's server process (``sandbox.server``) and, for the
core's unit tests, into moto in-process (``tests/unit``), so both see the same AWS.
The collection's code is never changed to suit the sandbox; each rule below names the
AWS behaviour it follows and the moto behaviour it corrects (sandbox/README.md lists them).
"""

from __future__ import annotations

_INSTALLED = False


def _volume_tags(backend, volume_id):
    return {tag["key"]: tag["value"] for tag in backend.describe_tags(filters={"resource-id": [volume_id]})
            if not tag["key"].startswith("aws:")}


def _create_snapshots_copying_tags(self):
    """CreateSnapshots with ``CopyTagsFromSource=volume`` copies each volume's tags onto its
    snapshot, explicit TagSpecifications winning (AWS EC2 API reference, CreateSnapshots).
    moto 5.2.5 ignores the parameter, which would leave snapshots without their lineage."""
    from moto.core.responses import ActionResult

    instance_spec = self._get_param("InstanceSpecification", {})
    description = self._get_param("Description", "")
    snapshot_tags = self._parse_tag_specification().get("snapshot", {})
    copy_from = self._get_param("CopyTagsFromSource")
    self.error_on_dryrun()
    snapshots = self.ec2_backend.create_snapshots(instance_spec, description, {})
    for snapshot in snapshots:
        tags = _volume_tags(self.ec2_backend, snapshot.volume.id) if copy_from == "volume" else {}
        tags.update(snapshot_tags)
        snapshot.add_tags(tags)
    return ActionResult({"Snapshots": snapshots})


def _wrap_create_image(original):
    def create_image(self, instance_id, name, description, tag_specifications):
        """CreateImage applies ``snapshot`` TagSpecifications to the image's snapshots (AWS EC2
        API reference, CreateImage). moto 5.2.5 raises NotImplementedError for them."""
        snapshot_tags = {}
        image_specs = []
        for spec in tag_specifications or []:
            if spec["ResourceType"] == "snapshot":
                snapshot_tags.update({tag["Key"]: tag["Value"] for tag in spec["Tags"]})
            else:
                image_specs.append(spec)
        image = original(self, instance_id, name, description, image_specs)
        if snapshot_tags:
            image.ebs_snapshot.add_tags(snapshot_tags)
        return image
    return create_image


def install():
    """Patch moto's models and responses with the AWS rules (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.ec2.models.amis import AmiBackend
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    ElasticBlockStore.create_snapshots = _create_snapshots_copying_tags
    AmiBackend.create_image = _wrap_create_image(AmiBackend.create_image)
    _INSTALLED = True
