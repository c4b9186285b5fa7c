"""Snapshots and images as AWS makes them.

AWS (EC2 API reference CreateSnapshots, CreateImage):

* ``CreateSnapshots`` with ``CopyTagsFromSource=volume`` copies each volume's tags onto its
  snapshot, explicit ``TagSpecifications`` winning. moto 5.2.5 ignores the parameter, which
  would leave snapshots without their lineage.
* ``CreateImage`` applies ``snapshot`` ``TagSpecifications`` to the image's snapshots.
  moto 5.2.5 raises ``NotImplementedError``.
"""

from __future__ import annotations


def _volume_tags(backend, volume_id):
    return {tag["key"]: tag["value"] for tag in backend.describe_tags(filters={"resource-id": [volume_id]})
            if not tag["key"].startswith("aws:")}


def install(context):
    from moto.core.responses import ActionResult
    from moto.ec2.models.amis import AmiBackend
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    def create_snapshots(self):
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
        return image

    ElasticBlockStore.create_snapshots = create_snapshots
    AmiBackend.create_image = create_image
