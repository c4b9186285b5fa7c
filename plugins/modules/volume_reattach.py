#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: volume_reattach
version_added: 0.1.0
short_description: Attach a lineage's current data volume to a target instance, fenced
description:
  - Makes the current volume of a lineage (the EBS volume with the highest
    C(ec2spot:generation) among those tagged C(ec2spot:lineage=<name>)) attached to a target instance.
  - In the same availability zone, the very same volume is detached from its holder and attached to
    the target. No data is lost.
  - In another availability zone, a new volume is created in the target's zone from the lineage's newest
    B(completed) snapshot, with the original's type, size, IOPS, throughput, encryption, KMS key and tags,
    and the data age (the recovery point) is returned in RV(data_age_seconds).
  - Fenced. The volume never leaves a running instance unless O(source_app_stopped=true) asserts that its
    application has stopped; it is never force-detached unless O(force_detach=true); an older generation
    is never attached where a newer one of the lineage is.
  - Each move raises the lineage's generation, so a stale copy can never be mistaken for the current one.
  - Idempotent. When the volume is already attached to the target nothing changes. An interrupted
    run resumes where it stopped.
  - With O(availability_zone) instead of O(instance_id) it stages a restore for an Auto Scaling group -
    O(snapshot_id) is restored into that zone as the lineage's newest generation, attached to nothing; the
    control plane gives it to the group's next instance (or, in another zone, restores from the same
    snapshot) as after any interruption.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  lineage:
    description:
      - Name of the lineage (the value of the C(ec2spot:lineage) tag on its volumes and snapshots).
    required: true
    type: str
  instance_id:
    description:
      - The instance that must end up holding the lineage's data. It must be running or stopped.
      - Exactly one of O(instance_id) and O(availability_zone) is required.
    type: str
  availability_zone:
    description:
      - Stage O(snapshot_id) in this zone as the lineage's newest generation, attached to nothing (see above).
        Requires O(snapshot_id).
    type: str
    version_added: 0.3.0
  device_name:
    description:
      - Device name to attach at, for example C(/dev/sdf). It must be free on the target.
      - When unset, the device recorded on the volume (C(ec2spot:device)) is used if free, else the first
        free name in C(/dev/sdf) to C(/dev/sdp).
      - On Nitro instances the guest sees an NVMe device whatever the name; find it by volume id.
    type: str
  source_app_stopped:
    description:
      - Assert that the application on the instance currently holding the volume has stopped writing.
      - Required to take the volume from an instance that is still running (or pending or stopping).
        Not needed when the holder is stopped or terminated.
    type: bool
    default: false
  force_detach:
    description:
      - Force the detach if it does not complete. This skips the guest's flush and can corrupt the
        filesystem. Use it only when the holder is unreachable and you accept that risk.
    type: bool
    default: false
  snapshot_id:
    description:
      - Restore this snapshot of the lineage instead of moving the current volume (an explicit rollback).
      - The restored volume becomes the lineage's newest generation and the previous volume is tagged
        C(ec2spot:superseded-by). The snapshot must belong to the lineage and be completed.
    type: str
  max_data_age:
    description:
      - Refuse to restore from a snapshot whose data is older than this many seconds.
    type: int
  kms_key_id:
    description:
      - KMS key for a volume restored from an unencrypted snapshot. Restored volumes are always encrypted.
        An encrypted snapshot's own key is kept. Without this, the account's default EBS key is used.
    type: str
  volume_tags:
    description:
      - Extra tags for a restored volume, added to the tags copied from the original.
    type: dict
  initialization_rate:
    description:
      - Volume initialization rate in MiB/s (100 to 300) for a restored volume, so that it is read in from
        the snapshot at a predictable speed rather than lazily on first access.
    type: int
  wait_timeout:
    description:
      - Seconds to wait for each step (detach, restore, attach) to complete.
    type: int
    default: 300
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the move or restore it would make and detaches, creates and attaches nothing.
  diff_mode:
    support: full
    details: Where the lineage's data is attached, before and after.
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
"""

EXAMPLES = r"""
- name: Move the database's data to the replacement (same AZ moves the volume, another AZ restores)
  ec2spot.autorecover.volume_reattach:
    lineage: pgdata
    instance_id: "{{ replacement_instance_id }}"
  register: moved

- name: Report the recovery point when the data came from a snapshot
  ansible.builtin.debug:
    msg: "{{ moved.volume_id }} at {{ moved.device }}; data age {{ moved.data_age_seconds | default('n/a') }} s"

- name: Take the volume from a still-running instance after stopping its application
  ec2spot.autorecover.volume_reattach:
    lineage: pgdata
    instance_id: i-0123456789abcdef0
    source_app_stopped: true
    device_name: /dev/sdf

- name: Stage a backup for the group's next instance (restore.yml, target group; the group is scaled to 0 first)
  ec2spot.autorecover.volume_reattach:
    lineage: pgdata
    availability_zone: eu-west-1a
    snapshot_id: snap-0123456789abcdef0

- name: Roll back to a chosen backup, refusing data older than a day
  ec2spot.autorecover.volume_reattach:
    lineage: pgdata
    instance_id: i-0123456789abcdef0
    snapshot_id: snap-0123456789abcdef0
    max_data_age: 86400
"""

RETURN = r"""
volume_id:
  description: The volume now attached to the target, or staged (in check mode, V(null) when a restore would create it).
  returned: always
  type: str
  sample: vol-0123456789abcdef0
device:
  description: Device name of the attachment.
  returned: always
  type: str
  sample: /dev/sdf
availability_zone:
  description: Availability zone of the target and the volume.
  returned: always
  type: str
  sample: us-east-1b
generation:
  description: The lineage's generation now held by the target.
  returned: always
  type: int
  sample: 7
from_snapshot:
  description: Whether this run restored the data from a snapshot (a move to another availability zone or a rollback).
  returned: always
  type: bool
  sample: true
snapshot_id:
  description: The snapshot restored from.
  returned: when RV(from_snapshot) is true
  type: str
  sample: snap-0123456789abcdef0
data_age_seconds:
  description: Age of the restored data (now minus the snapshot's start time), the recovery point of this move.
  returned: when RV(from_snapshot) is true
  type: float
  sample: 94.2
newer_pending_snapshot_id:
  description: A newer snapshot of the lineage that was still pending and so could not be used.
  returned: when one exists
  type: str
  sample: snap-0fedcba9876543210
previous_volume_id:
  description: The lineage's current volume before this run.
  returned: when the lineage had a volume
  type: str
  sample: vol-0fedcba9876543210
previous_instance_id:
  description: The instance that held the lineage's volume before this run.
  returned: when known
  type: str
  sample: i-0fedcba9876543210
released_previous:
  description: Whether this run detached the previous volume from its holder.
  returned: always
  type: bool
  sample: true
actions:
  description: What this run did, or in check mode would do, in order.
  returned: always
  type: list
  elements: str
  sample: ["release vol-0fedcba9876543210 from i-0fedcba9876543210 (stopped)", "attach vol-0fedcba9876543210 to i-0123456789abcdef0 at /dev/sdf"]
timeline:
  description: Seconds spent in each phase (release, restore, attach, total).
  returned: always
  type: dict
  sample: {"release": 2.1, "attach": 3.4, "total": 5.9}
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client, run
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.volumes import (
    move_lineage_volume,
    stage_lineage_volume,
)


def main():
    argument_spec = dict(
        lineage=dict(type="str", required=True),
        instance_id=dict(type="str"),
        availability_zone=dict(type="str"),
        device_name=dict(type="str"),
        source_app_stopped=dict(type="bool", default=False),
        force_detach=dict(type="bool", default=False),
        snapshot_id=dict(type="str"),
        max_data_age=dict(type="int"),
        kms_key_id=dict(type="str"),
        volume_tags=dict(type="dict"),
        initialization_rate=dict(type="int"),
        wait_timeout=dict(type="int", default=300),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[["instance_id", "availability_zone"]],
        required_one_of=[["instance_id", "availability_zone"]],
        required_by={"availability_zone": "snapshot_id"},
    )
    params = module.params
    ec2 = client(module, "ec2")
    if params["availability_zone"]:
        result = run(
            module,
            lambda: stage_lineage_volume(
                ec2,
                params["lineage"],
                params["availability_zone"],
                params["snapshot_id"],
                app_stopped=params["source_app_stopped"],
                force_detach=params["force_detach"],
                volume_tags=params["volume_tags"],
                kms_key_id=params["kms_key_id"],
                dry_run=module.check_mode,
                timeout=params["wait_timeout"],
            ),
        )
    else:
        result = run(
            module,
            lambda: move_lineage_volume(
                ec2,
                params["lineage"],
                params["instance_id"],
                device_name=params["device_name"],
                app_stopped=params["source_app_stopped"],
                snapshot_id=params["snapshot_id"],
                max_data_age=params["max_data_age"],
                force_detach=params["force_detach"],
                volume_tags=params["volume_tags"],
                kms_key_id=params["kms_key_id"],
                initialization_rate=params["initialization_rate"],
                dry_run=module.check_mode,
                timeout=params["wait_timeout"],
            ),
        )
    returned = {k: v for k, v in result.to_dict().items() if v is not None or k == "volume_id"}
    after = {
        "volume_id": result.volume_id or "(restored volume)",
        "instance_id": result.instance_id,
        "generation": result.generation,
    }
    before = {"volume_id": result.previous_volume_id, "instance_id": result.previous_instance_id}
    returned["diff"] = {"before": before if result.changed else after, "after": after}
    module.exit_json(**returned)


if __name__ == "__main__":
    main()
