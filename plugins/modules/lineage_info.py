#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lineage_info
version_added: 0.3.0
short_description: Where a lineage's data is, who writes it, its backups, and which backup a restore request means
description:
  - Reports a lineage's current volume (the newest C(ec2spot:generation)) and the instance holding it, every data
    volume, the instances that hold one and still run (live writers, and which of them an Auto Scaling group owns),
    and its completed backups (volume snapshots), newest first.
  - With O(source=backup) it also resolves which backup a restore means - O(snapshot_id), the backup set of
    O(image_id), the newest taken before O(before), or the newest - with its data age, and whether the lineage's
    current data is already that backup restored and held by a running instance (a restore already done).
  - Read-only. C(restore.yml) makes its decisions from it.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  lineage:
    description:
      - The lineage (the value of C(ec2spot:lineage) on its volumes and snapshots).
    type: str
    required: true
  source:
    description:
      - V(backup) resolves a backup (see above); V(current) only describes the lineage and requires it to have a volume;
        V(describe) only describes it, whatever it has (a new lineage has nothing yet).
    type: str
    choices: [backup, current, describe]
    default: backup
  group:
    description:
      - The service's Auto Scaling group. RV(foreign_groups) then names the other groups whose instances carry the
        lineage (C(deploy.yml) refuses to deploy over them).
    type: str
  standby:
    description:
      - A standby pair of the lineage, as the handler's configuration names it (keys C(instance_id) or C(tags) for the
        standby, C(primary_instance_id) or C(primary_tags) for the primary). RV(standby) then lists which of the
        lineage's instances are the standby and which the primary, by the very rule the handler acts on.
    type: dict
  snapshot_id:
    description:
      - The backup is this snapshot (a completed volume snapshot of the lineage).
    type: str
  image_id:
    description:
      - The backup is the volume snapshot of this AMI's backup set (an AMI C(spot_backup) or the scheduled backup took).
    type: str
  before:
    description:
      - The backup is the newest taken before this ISO 8601 date or time (UTC unless it says otherwise).
    type: str
notes:
  - Supports check mode (it changes nothing in any mode).
  - At most one of O(snapshot_id), O(image_id) and O(before).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only, so the same answer as without check mode.
  diff_mode:
    support: N/A
    details: An info module changes nothing.
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
"""

EXAMPLES = r"""
- name: Which backup of the database was taken before the bad migration
  ec2spot.autorecover.lineage_info:
    lineage: pgdata
    before: "2026-11-20T03:00:00Z"
  register: pgdata

- name: Show it
  ansible.builtin.debug:
    msg: "{{ pgdata.chosen_backup.snapshot_id }} ({{ pgdata.chosen_backup.data_age_seconds }} s old)"
"""

RETURN = r"""
lineage:
  description: The lineage.
  returned: always
  type: str
  sample: pgdata
current:
  description: The current volume (null when the lineage has none), with its holder.
  returned: always
  type: dict
  sample: {"volume_id": "vol-0123456789abcdef0", "generation": 4, "state": "in-use", "availability_zone": "eu-west-1a",
           "restored_from": null, "superseded_by": null, "fresh": false,
           "holder": {"instance_id": "i-0123456789abcdef0", "state": "running", "group": "pg", "live": true, "name": "pg",
                      "availability_zone": "eu-west-1a"}}
volumes:
  description: Every data volume of the lineage, newest generation first, in the same form as RV(current).
  returned: always
  type: list
  elements: dict
live_writers:
  description: Instances that hold a volume of the lineage and are pending, running or stopping.
  returned: always
  type: list
  elements: str
  sample: ["i-0123456789abcdef0"]
grouped_writers:
  description: The live writers an Auto Scaling group owns.
  returned: always
  type: list
  elements: str
backups:
  description: The completed volume snapshots of the lineage, newest first.
  returned: always
  type: list
  elements: dict
  sample: [{"snapshot_id": "snap-0123456789abcdef0", "start_time": "2026-11-24T03:00:04Z", "backup_set": "pgdata-20261124",
            "generation": 4, "source_volume": "vol-0123456789abcdef0", "size": 100}]
backups_in_progress:
  description: The ids of the lineage's volume snapshots still being taken (C(pending)); a lineage with one is not new.
  returned: always
  type: list
  elements: str
  sample: ["snap-0fedcba9876543210"]
chosen_backup:
  description: The backup the request means, with its C(data_age_seconds) (null with O(source=current)).
  returned: always
  type: dict
already_restored:
  description: Whether the current volume was restored from RV(chosen_backup) and a running instance holds it.
  returned: always
  type: bool
  sample: false
standby:
  description:
    - With O(standby), the standby and primary instances among the lineage's pending, running, stopping or stopped
      instances (exactly one of each is a usable pair); null otherwise.
  returned: always
  type: dict
  sample: {"standby": ["i-0fedcba9876543210"], "primary": ["i-0123456789abcdef0"]}
groups:
  description: The Auto Scaling groups whose live instances carry the lineage, with those instances.
  returned: always
  type: dict
  sample: {"pg": ["i-0123456789abcdef0"]}
foreign_groups:
  description:
    - With O(group), the groups other than it whose instances carry the lineage (a second writer waiting to happen);
      empty otherwise.
  returned: always
  type: dict
  sample: {"pg-old": ["i-0fedcba9876543210"]}
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client, run
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import standby as standbys
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.restore_plan import plan


def report_of(ec2, params):
    """The lineage's description (``restore_plan.plan``), with its standby pair when asked."""
    report = plan(
        ec2,
        params["lineage"],
        params["source"],
        params["snapshot_id"] or None,
        params["image_id"] or None,
        params["before"] or None,
        group=params["group"] or None,
    )
    report["standby"] = None
    if params["standby"]:
        report["standby"] = standbys.classify(
            ec2, params["lineage"], standbys.parse_settings(params["standby"], "standby")
        )
    return report


def main():
    argument_spec = dict(
        lineage=dict(type="str", required=True),
        source=dict(type="str", choices=["backup", "current", "describe"], default="backup"),
        group=dict(type="str"),
        snapshot_id=dict(type="str"),
        image_id=dict(type="str"),
        before=dict(type="str"),
        standby=dict(type="dict"),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[["snapshot_id", "image_id", "before"]],
    )
    params = module.params
    ec2 = client(module, "ec2")
    report = run(module, lambda: report_of(ec2, params))
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
