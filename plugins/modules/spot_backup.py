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
  - Then applies a retention policy (O(retention)) to the backups of the same scope. With O(backup=false) it applies
    retention alone and needs no instance, so a lineage whose instances are gone can be pruned; the scope is then one
    lineage (O(lineage)), several (O(lineages)), every lineage with backups (O(all_lineages)), or the backups taken of
    one instance (O(instance_id)), which need not exist any more.
  - Retention judges each kind of backup of each lineage on its own, because a restore reads them differently
    (kind C(image), an AMI; kind C(volume), the volume snapshot set of one backup). A completed backup survives if B(any)
    configured rule keeps it, that is it is one of the newest O(retention.keep_newest) completed backups of its kind,
    or it was taken within the last O(retention.max_age_days) days. The newest completed backup of each kind of each
    lineage always survives. A backup in progress (the one this run just took, for example) is neither counted nor
    deleted. Ties (the same creation time) are broken by name, then id, the greater counting as newer.
  - "Worked example, O(retention.keep_newest=2) and O(retention.max_age_days=3): a lineage has AMIs taken 0 (still
    pending), 1, 2, 3 and 6 days ago and volume snapshot sets taken 10, 20 and 30 days ago. The pending AMI is not
    counted; the two newest completed AMIs are 1 and 2 days old and the 1-, 2- and 3-day AMIs are within 3 days, so
    only the 6-day AMI is deleted. The 10- and 20-day sets are the two newest volume backups and stay, although every
    AMI is newer; the 30-day set is deleted. With O(retention.max_age_days=3) alone, the 10-day set would still stay
    as the newest volume backup of the lineage."
  - Never deleted, whatever the policy says, an AMI that any version of any launch template uses, an AMI with
    deregistration protection, a snapshot a launch template maps, a snapshot an AMI that stays uses, and anything
    another account owns or that lacks the tag C(ec2spot:managed-by=ec2spot.autorecover).
  - An AMI is deleted with its snapshots in one call (C(DeregisterImage) with C(DeleteAssociatedSnapshots)); AWS itself
    keeps a snapshot another AMI still uses. Each volume snapshot takes one C(DeleteSnapshot). Retention lists the
    managed images and snapshots once per run and reads the launch templates only when something is due to go;
    RV(retention.api_calls) counts its calls.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
notes:
  - Changed in 0.3.0 (breaking) - with both O(retention.keep_newest) and O(retention.max_age_days) a backup used to
    be deleted when either rule expired it, in-progress backups counted towards O(retention.keep_newest), and a
    lineage kept only its newest backup across kinds. A backup now survives if either rule keeps it, per kind.
options:
  backup:
    description:
      - Take a backup before applying O(retention).
      - V(false) applies O(retention) alone (then required) to the backups that exist, without describing any
        instance.
    type: bool
    default: true
    version_added: 0.3.0
  instance_id:
    description:
      - Back up this instance. Exactly one of O(instance_id), O(lineage), O(lineages), O(all_lineages) and
        O(instance_tags) is required.
      - With O(backup=false), the scope of retention is the backups taken of this instance; it need not exist.
    type: str
  lineage:
    description:
      - Back up every pending, running, stopping or stopped instance tagged C(ec2spot:lineage=<lineage>).
      - With O(backup=false), the scope of retention is the lineage's backups.
    type: str
  lineages:
    description:
      - With O(backup=false) only, the scope of retention is the backups of these lineages (each judged on its own).
    type: list
    elements: str
    version_added: 0.3.0
  all_lineages:
    description:
      - With O(backup=false) only, V(true) makes the scope of retention every lineage that has backups this collection
        took (backups without a lineage tag excepted; prune those by O(instance_id)).
    type: bool
    version_added: 0.3.0
  instance_tags:
    description:
      - Back up every pending, running, stopping or stopped instance carrying all these tags. Not with O(backup=false).
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
      - Retention for the backups of this scope (the lineage or lineages, or each instance). A completed backup
        survives if any rule given here keeps it (see the description); at least one rule is required.
      - Omit to delete nothing (not with O(backup=false)).
    type: dict
    suboptions:
      keep_newest:
        description:
          - Keep the newest this many completed backups of each kind, per lineage (or per instance when its
            backups have no lineage).
        type: int
      max_age_days:
        description:
          - Keep the backups taken within this many days (fractions allowed).
        type: float
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the backups it would take and the ones retention would delete; creates and deletes nothing.
  diff_mode:
    support: full
    details: The backups before and after (retention's deletions).
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
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

- name: Show what retention alone would delete from two lineages, whose instances may be gone (run with --check --diff)
  ec2spot.autorecover.spot_backup:
    backup: false
    lineages: [pgdata, billing]
    retention:
      keep_newest: 3
      max_age_days: 7
  check_mode: true
  register: would_go

- name: Prune every lineage's backups, as seed 001's cron does apart from the backup
  ec2spot.autorecover.spot_backup:
    backup: false
    all_lineages: true
    retention:
      max_age_days: 7
"""

RETURN = r"""
backups:
  description: One entry per instance backed up (none with O(backup=false)).
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
    changed:
      description: Whether the backup was (or, in check mode, would be) taken by this run.
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
  contains:
    images:
      description: The AMIs deregistered.
      type: list
      elements: str
      sample: ["ami-0fedcba9876543210"]
    snapshots:
      description: The snapshots deleted, those AWS deleted with their AMI included.
      type: list
      elements: str
      sample: ["snap-0fedcba9876543210"]
kept:
  description: Backups no retention rule keeps that stay, each with the reason (the same as RV(retention.kept)).
  returned: always
  type: dict
  sample: {"pgdata-20261101/i-0123456789abcdef0 (image)": "newest completed image backup of pgdata"}
retention:
  description: What retention found, deleted and kept, and the AWS calls it made. Empty without O(retention).
  returned: always
  type: dict
  contains:
    dry_run:
      description: Whether nothing was deleted (check mode); the other keys then say what would be.
      type: bool
      sample: false
    backups:
      description: Every backup in scope before the run, as C(<name>/<source instance> (<kind>)).
      type: list
      elements: str
      sample: ["pgdata-20261124/i-0123456789abcdef0 (image)", "pgdata-20261124/i-0123456789abcdef0 (volume)"]
    deleted_backups:
      description: The backups deleted (in check mode, that would be), oldest AMIs first.
      type: list
      elements: str
      sample: ["pgdata-20261101/i-0123456789abcdef0 (image)"]
    deleted_images:
      description: The AMIs deregistered (the same as RV(deleted.images)).
      type: list
      elements: str
      sample: ["ami-0fedcba9876543210"]
    deleted_snapshots:
      description: The snapshots deleted, with their AMI or one by one (the same as RV(deleted.snapshots)).
      type: list
      elements: str
      sample: ["snap-0fedcba9876543210"]
    kept:
      description: Backups no rule keeps that stay, each with the reason.
      type: dict
      sample: {"pgdata-20261019/i-0123456789abcdef0 (image)": "its AMI ami-0123456789abcdef0 is used by launch template
               pgdata version 4"}
    not_completed:
      description: Backups not completed (neither counted nor deleted), with their state.
      type: dict
      sample: {"pgdata-20261124/i-0123456789abcdef0 (image)": "pending"}
    skipped:
      description: Resources of deleted backups that stay, each with the reason (for example a snapshot another AMI uses).
      type: dict
      sample: {"snap-0123456789abcdef0": "also used by AMI ami-0123456789abcdef1, which stays"}
    api_calls:
      description: The AWS calls retention made, per operation (each page of a listing counts).
      type: dict
      sample: {"DescribeImages": 10, "DescribeSnapshots": 20, "DescribeLaunchTemplates": 1, "DeregisterImage": 993,
               "DeleteSnapshot": 993}
    api_call_count:
      description: The AWS calls retention made in all.
      type: int
      sample: 2017
"""

from datetime import datetime, timezone

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client, run
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import tags as t
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.backups import (
    backup_instance,
    validate_set_name,
)
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import InvalidInput, NotFound
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.instances import (
    describe_instance,
    find_instances,
)
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.lineage import validate_name
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.retention import (
    ALL_LINEAGES,
    IMAGE,
    VOLUME,
    Policy,
    apply_retention,
)

INSTANCE_ID_PREFIX = "i-"


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


def retention_scope(params, instance_ids):
    """(lineages, source instances) for apply_retention."""
    if params["all_lineages"]:
        return ALL_LINEAGES, None
    if params["lineages"]:
        return [validate_name(name) for name in params["lineages"]], None
    if params["lineage"]:
        return [validate_name(params["lineage"])], None
    return None, instance_ids


def check_parameters(params):
    """Refuse what cannot work before anything is described or taken."""
    if params["all_lineages"] is False:
        raise InvalidInput(
            "all_lineages: false selects nothing: omit it and give lineage, lineages, instance_id or instance_tags"
        )
    if params["backup"]:
        if params["lineages"] or params["all_lineages"]:
            raise InvalidInput("lineages and all_lineages select backups to prune: use them with backup: false")
        return
    if not params["retention"]:
        raise InvalidInput("backup: false applies retention alone: give retention (keep_newest and/or max_age_days)")
    if params["instance_tags"]:
        raise InvalidInput(
            "backup: false needs no instance: give lineage, lineages, all_lineages or instance_id, "
            "not instance_tags (tags select instances, which may be gone)"
        )
    if params["instance_id"] and not params["instance_id"].startswith(INSTANCE_ID_PREFIX):
        raise InvalidInput(f"instance_id must be an instance id (i-...), got {params['instance_id']!r}")


def created_labels(backups, create_image):
    """The backups this run took (or, in check mode, would take), labelled as retention labels them."""
    labels = []
    for taken in backups:
        if not taken.changed:
            continue
        if taken.created_snapshots or not taken.snapshots:
            labels.append(f"{taken.backup_set}/{taken.instance_id} ({VOLUME})")
        if create_image and (taken.created_image or not taken.image_id):
            labels.append(f"{taken.backup_set}/{taken.instance_id} ({IMAGE})")
    return labels


def backup_and_prune(module, ec2):
    params = module.params
    check_parameters(params)
    # Bad input changes nothing: check the policy and the name before the first backup is taken.
    policy = Policy.of(params["retention"]) if params["retention"] else None
    backups, instance_ids = [], None
    if params["backup"]:
        today = datetime.now(timezone.utc).strftime("%Y%m%d")
        name = validate_set_name(params["name"] or f"{params['lineage'] or 'backup'}-{today}")
        instance_ids = instances_in_scope(ec2, params)
        backups = [
            backup_instance(
                ec2,
                instance_id,
                name,
                create_image=params["create_image"],
                include_boot_volume=params["include_boot_volume"],
                extra_tags=params["tags"],
                dry_run=module.check_mode,
                wait=params["wait"],
                timeout=params["wait_timeout"],
            )
            for instance_id in instance_ids
        ]
    elif params["instance_id"]:
        instance_ids = [params["instance_id"]]
    outcome = {
        "backups": [b.to_dict() for b in backups],
        "created": {
            "snapshots": [s["snapshot_id"] for b in backups if b.created_snapshots for s in b.snapshots],
            "images": [b.image_id for b in backups if b.created_image],
        },
        "deleted": {"snapshots": [], "images": []},
        "kept": {},
        "retention": {},
        "changed": any(b.changed for b in backups),
    }
    created = created_labels(backups, params["create_image"])
    before = []
    after = list(created)
    if policy is not None:
        lineages, source_instances = retention_scope(params, instance_ids)
        pruned = apply_retention(ec2, lineages, policy, dry_run=module.check_mode, source_instances=source_instances)
        outcome["retention"] = pruned.to_dict()
        outcome["deleted"] = {"snapshots": pruned.deleted_snapshots, "images": pruned.deleted_images}
        outcome["kept"] = pruned.kept
        outcome["changed"] = outcome["changed"] or pruned.changed
        before = [label for label in pruned.backups if label not in created]
        after = sorted(set(pruned.backups) - set(pruned.deleted_backups) | set(created))
    outcome["diff"] = {"before": {"backups": sorted(before)}, "after": {"backups": sorted(after)}}
    return outcome


def main():
    argument_spec = dict(
        backup=dict(type="bool", default=True),
        instance_id=dict(type="str"),
        lineage=dict(type="str"),
        lineages=dict(type="list", elements="str"),
        all_lineages=dict(type="bool"),
        instance_tags=dict(type="dict"),
        name=dict(type="str"),
        create_image=dict(type="bool", default=False),
        include_boot_volume=dict(type="bool", default=False),
        tags=dict(type="dict"),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=3600),
        retention=dict(type="dict", options=dict(keep_newest=dict(type="int"), max_age_days=dict(type="float"))),
    )
    scopes = ["instance_id", "lineage", "lineages", "all_lineages", "instance_tags"]
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[scopes],
        required_one_of=[scopes],
    )
    ec2 = client(module, "ec2")
    outcome = run(module, lambda: backup_and_prune(module, ec2))
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
