#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: launch_from_template
version_added: 0.3.0
short_description: Launch one instance of a lineage from a service's launch template, into a chosen subnet, On-Demand or Spot
description:
  - Launches one instance from a launch template (its default version) into O(subnet_id), optionally with another
    O(instance_type), On-Demand or as a one-time Spot instance that terminates on interruption, and waits until it
    runs. C(restore.yml) uses it for a standalone restore, so the instance boots exactly like one the service's
    group launches (the instance agent in the template's user data mounts the lineage's volume once attached).
  - The template's security groups, instance tags, volume and interface tags are kept; the instance gets the
    C(Name) O(name) and C(ec2spot:lineage=<lineage>).
  - Idempotent by name and lineage - an instance called O(name) of the lineage that is pending, running, stopping
    or stopped is the instance (a stopped one is started), whatever its subnet, type or market.
  - It exists because C(amazon.aws.ec2_instance) drops the subnet when given a launch template and has no market
    options, and C(amazon.aws.ec2_spot_instance) takes no launch template.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  launch_template:
    description:
      - Name of the launch template (the fleet role names it after the service).
    type: str
    required: true
  lineage:
    description:
      - The lineage the instance serves; it is tagged C(ec2spot:lineage=<lineage>).
    type: str
    required: true
  name:
    description:
      - The instance's C(Name) tag, which also identifies it on later runs.
    type: str
    required: true
  subnet_id:
    description:
      - The subnet (and so the availability zone) to launch into.
    type: str
    required: true
  instance_type:
    description:
      - Instance type instead of the template's.
    type: str
  market:
    description:
      - V(on-demand), or V(spot) for a one-time Spot instance that is terminated when interrupted (the control
        plane then protects its data as for a group's instance).
    type: str
    choices: [on-demand, spot]
    default: on-demand
  tags:
    description:
      - More tags for the instance.
    type: dict
    default: {}
  wait_timeout:
    description:
      - Seconds to wait for the instance to run.
    type: int
    default: 600
notes:
  - Supports check mode - nothing is launched or started; C(changed) says whether it would be.
  - "IAM: C(ec2:DescribeLaunchTemplateVersions), C(ec2:DescribeInstances), C(ec2:RunInstances), C(ec2:CreateTags)
    (on create), C(ec2:StartInstances), and C(iam:PassRole) for the template's instance profile role."
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports whether an instance would be launched; launches nothing.
  diff_mode:
    support: full
    details: The instance before (none) and after.
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
"""

EXAMPLES = r"""
- name: Restore the database on an On-Demand instance in another zone, with a bigger type
  ec2spot.autorecover.launch_from_template:
    launch_template: pg
    lineage: pgdata
    name: pg-restored
    subnet_id: subnet-0fedcba9876543210
    instance_type: m6i.xlarge
    market: on-demand
  register: restored

- name: A standalone Spot instance for a test restore
  ec2spot.autorecover.launch_from_template:
    launch_template: pg
    lineage: pgdata
    name: pg-restore-test
    subnet_id: subnet-0123456789abcdef0
    market: spot
"""

RETURN = r"""
instance_id:
  description: The instance (null in check mode when it would be launched).
  returned: always
  type: str
  sample: i-0123456789abcdef0
availability_zone:
  description: Its availability zone (null in check mode when it would be launched).
  returned: always
  type: str
  sample: eu-west-1b
subnet_id:
  description: Its subnet.
  returned: always
  type: str
  sample: subnet-0fedcba9876543210
instance_type:
  description: Its instance type.
  returned: always
  type: str
  sample: m6i.xlarge
market:
  description: V(on-demand) or V(spot).
  returned: always
  type: str
  sample: on-demand
private_ip:
  description: Its private IP address.
  returned: when the instance exists
  type: str
  sample: 10.0.1.23
state:
  description: Its state (C(running) once launched or found).
  returned: when the instance exists
  type: str
  sample: running
started:
  description: Whether an existing stopped instance of that name was started.
  returned: always
  type: bool
  sample: false
launch_template:
  description: The launch template used.
  returned: always
  type: str
  sample: pg
name:
  description: The instance's name.
  returned: always
  type: str
  sample: pg-restored
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client, run
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.lineage import validate_name
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.standalone import launch_from_template


def main():
    argument_spec = dict(
        launch_template=dict(type="str", required=True),
        lineage=dict(type="str", required=True),
        name=dict(type="str", required=True),
        subnet_id=dict(type="str", required=True),
        instance_type=dict(type="str"),
        market=dict(type="str", choices=["on-demand", "spot"], default="on-demand"),
        tags=dict(type="dict", default={}),
        wait_timeout=dict(type="int", default=600),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    ec2 = client(module, "ec2")
    result = run(
        module,
        lambda: launch_from_template(
            ec2,
            params["launch_template"],
            params["subnet_id"],
            params["name"],
            validate_name(params["lineage"]),
            instance_type=params["instance_type"],
            market=params["market"],
            extra_tags=params["tags"],
            dry_run=module.check_mode,
            timeout=params["wait_timeout"],
        ),
    )
    returned = result.to_dict()
    returned["diff"] = {
        "before": {"instance": result.instance_id or "(none)"}
        if not result.changed or result.started
        else {"instance": "(none)"},
        "after": {"instance": result.instance_id or f"(launch {result.name})", "state": "running"},
    }
    module.exit_json(**returned)


if __name__ == "__main__":
    main()
