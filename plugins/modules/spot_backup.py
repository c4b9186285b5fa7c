#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: spot_backup
version_added: 0.1.0
short_description: Back up instances' data volumes as consistent snapshot sets (and AMIs), with retention
description:
  - Snapshots all data volumes of an instance at one point in time (EC2 C(CreateSnapshots)), so that the
    volumes of one service are consistent with each other. Each snapshot keeps its volume's tags (the
    lineage and its generation) and records what a restore needs (type, IOPS, throughput, device).
  - Optionally creates an AMI of the instance B(without reboot), tagged C(AutoBackup=true).
  - Backs up one instance, or every instance of a lineage, or every instance matching tags.
  - A backup is named (O(name)). A backup of that name already taken for an instance is not taken
    again, so a second run changes nothing.
  - Applies a retention policy (O(retention)) to the backups of the same scope. It never deletes the
    newest completed backup of a lineage, a backup still in progress, or an AMI that a launch template
    version uses. Deregistering an AMI also deletes its snapshots. Only backups this collection took are
    ever deleted.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  instance_id:
    description:
      - Back up this instance. Exactly one of O(instance_id), O(lineage) and O(instance_tags) is required.
    type: str
  lineage:
    description:
      - Back up every pending, running, stopping or stopped instance tagged C(ec2spot:lineage=<lineage>).
    type: str
  instance_tags:
    description:
      - Back up every pending, running, stopping or stopped instance carrying all these tags.
    type: dict
  name:
    description:
      - Name of the backup, shared by its snapshots and AMI (tag C(ec2spot:backup-set)); the AMI is named
        C(<name>-<instance id>).
      - Defaults to C(<lineage>-<YYYYMMDD>) (UTC), or C(backup-<YYYYMMDD>) without O(lineage), that is one
        backup a day as in a nightly job. Give a unique name (for example with the time) for ad hoc backups.
    type: str
  create_image:
    description:
      - Also create an AMI of each instance, without rebooting it.
    type: bool
    default: false
  include_boot_volume:
    description:
      - Also snapshot the root volume. By default only data volumes are snapshotted.
    type: bool
    default: false
  tags:
    description:
      - Extra tags for the snapshots and AMIs created.
    type: dict
  wait:
    description:
      - Wait until the snapshots are completed and the AMI is available. EC2 takes the point-in-time copy
        when the call returns; waiting only matters when the next step needs the backup usable (a restore).
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait when O(wait=true). An AMI of a running instance takes tens of minutes (about
        30 minutes for 50 GiB).
    type: int
    default: 3600
  retention:
    description:
      - Retention for the backups of this scope (the lineage, or each instance). A backup expires when it
        is beyond the newest O(retention.keep_newest) or older than O(retention.max_age_days).
      - Omit to delete nothing.
    type: dict
    suboptions:
      keep_newest:
        description:
          - Keep this many newest backups per lineage (or per instance when its volumes have no lineage).
        type: int
      max_age_days:
        description:
          - Delete backups older than this many days (fractions allowed).
        type: float
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Nightly backup of the database lineage, keeping a week (seed 001)
  ec2spot.autorecover.spot_backup:
    lineage: pgdata
    create_image: true
    retention:
      max_age_days: 7

- name: Ad hoc backup before an upgrade, waiting until it can be restored
  ec2spot.autorecover.spot_backup:
    instance_id: i-0123456789abcdef0
    name: "pgdata-before-upgrade-{{ now(utc=true, fmt='%Y%m%dT%H%M%S') }}"
    wait: true
  register: backup

- name: Keep the newest five backups of every instance of a team
  ec2spot.autorecover.spot_backup:
    instance_tags:
      Team: data
    retention:
      keep_newest: 5
"""

RETURN = r"""
backups:
  description: One entry per instance backed up.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The instance.
      type: str
      sample: i-0123456789abcdef0
    backup_set:
      description: The backup's name.
      type: str
      sample: pgdata-20261124
    snapshots:
      description: The snapshots of the set, with their volume, lineage, generation and state.
      type: list
      elements: dict
      sample: [{"snapshot_id": "snap-0123456789abcdef0", "volume_id": "vol-0123456789abcdef0",
                "lineage": "pgdata", "generation": 3, "state": "pending"}]
    image_id:
      description: The AMI of the set, if any.
      type: str
      sample: ami-0123456789abcdef0
    image_state:
      description: The AMI's state.
      type: str
      sample: pending
    created_snapshots:
      description: Whether this run created the snapshots.
      type: bool
    created_image:
      description: Whether this run created the AMI.
      type: bool
created:
  description: Resources this run created (in check mode, none).
  returned: always
  type: dict
  sample: {"snapshots": ["snap-0123456789abcdef0"], "images": ["ami-0123456789abcdef0"]}
deleted:
  description: Resources retention deleted (in check mode, would delete).
  returned: always
  type: dict
  sample: {"snapshots": ["snap-0fedcba9876543210"], "images": ["ami-0fedcba9876543210"]}
kept:
  description: Expired backups retention kept, each with the reason.
  returned: always
  type: dict
  sample: {"pgdata-20261101/i-0123456789abcdef0": "newest complete backup of pgdata"}
"""

from datetime import datetime, timezone

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.module_support import client, run
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import backup_instance, validate_set_name
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import InvalidInput, NotFound
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.instances import describe_instance, find_instances
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.lineage import validate_name
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.retention import (
    images_in_launch_templates, list_backup_sets, prune, select_expired, validate_policy)


def instances_in_scope(ec2, params):
    if params["instance_id"]:
        return [describe_instance(ec2, params["instance_id"])["InstanceId"]]
    if params["lineage"]:
        scope = {t.LINEAGE: validate_name(params["lineage"])}
    else:
        if not params["instance_tags"]:
            raise InvalidInput("instance_tags must name at least one tag")
        scope = params["instance_tags"]
    found = [i["InstanceId"] for i in find_instances(ec2, scope)]
    if not found:
        raise NotFound(f"no pending, running, stopping or stopped instance carries tags {scope}; nothing to back up")
    return found


def retention_scopes(params, instance_ids):
    if params["lineage"]:
        return [{t.LINEAGE: params["lineage"]}]
    return [{t.SOURCE_INSTANCE: instance_id} for instance_id in instance_ids]


def backup(module, ec2):
    params = module.params
    policy = params["retention"] or {}
    max_age = policy["max_age_days"] * 86400 if policy.get("max_age_days") is not None else None
    # Bad input changes nothing: check the name and the policy before the first backup is taken.
    validate_policy(policy.get("keep_newest"), max_age)
    today = datetime.now(timezone.utc).strftime("%Y%m%d")
    name = validate_set_name(params["name"] or f"{params['lineage'] or 'backup'}-{today}")
    instance_ids = instances_in_scope(ec2, params)
    backups = [backup_instance(ec2, instance_id, name, create_image=params["create_image"],
                               include_boot_volume=params["include_boot_volume"], extra_tags=params["tags"],
                               dry_run=module.check_mode, wait=params["wait"], timeout=params["wait_timeout"])
               for instance_id in instance_ids]
    outcome = {
        "backups": [b.to_dict() for b in backups],
        "created": {"snapshots": [s["snapshot_id"] for b in backups if b.created_snapshots for s in b.snapshots],
                    "images": [b.image_id for b in backups if b.created_image]},
        "deleted": {"snapshots": [], "images": []},
        "kept": {},
        "changed": any(b.changed for b in backups),
    }
    if policy.get("keep_newest") is None and max_age is None:
        return outcome
    image_users = images_in_launch_templates(ec2)
    for scope in retention_scopes(params, instance_ids):
        expired, kept = select_expired(list_backup_sets(ec2, scope), keep_newest=policy.get("keep_newest"),
                                       max_age=max_age, image_users=image_users)
        images, snapshots, skipped = prune(ec2, expired, dry_run=module.check_mode)
        outcome["deleted"]["images"] += images
        outcome["deleted"]["snapshots"] += snapshots
        outcome["kept"].update(kept)
        outcome["kept"].update(skipped)
        outcome["changed"] = outcome["changed"] or bool(images or snapshots)
    return outcome


def main():
    argument_spec = dict(
        instance_id=dict(type="str"),
        lineage=dict(type="str"),
        instance_tags=dict(type="dict"),
        name=dict(type="str"),
        create_image=dict(type="bool", default=False),
        include_boot_volume=dict(type="bool", default=False),
        tags=dict(type="dict"),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=3600),
        retention=dict(type="dict", options=dict(keep_newest=dict(type="int"), max_age_days=dict(type="float"))),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[["instance_id", "lineage", "instance_tags"]],
        required_one_of=[["instance_id", "lineage", "instance_tags"]],
    )
    ec2 = client(module, "ec2")
    outcome = run(module, lambda: backup(module, ec2))
    outcome["diff"] = {
        "before": {"created": [], "deleted": []},
        "after": {"created": [f"{b['backup_set']}/{b['instance_id']}" for b in outcome["backups"]
                              if b["changed"]],
                  "deleted": outcome["deleted"]["images"] + outcome["deleted"]["snapshots"]},
    }
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
