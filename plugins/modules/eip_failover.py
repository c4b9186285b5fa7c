#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: eip_failover
version_added: 0.1.0
short_description: Put an Elastic IP on the instance that should serve it
description:
  - Associates an Elastic IP, named by allocation id, public IP or tags, with a target so that clients keep
    one address across replacements.
  - The target is an instance id, the one healthy InService instance of an Auto Scaling group, or a
    standby instance that is started first when it is stopped.
  - Taking the address from another instance or interface is explicit. Without
    O(allow_reassociation=true) the module fails and changes nothing.
  - Idempotent. When the address is already on the target nothing changes.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  allocation_id:
    description:
      - Allocation id of the Elastic IP. Exactly one of O(allocation_id), O(public_ip) and O(address_tags) is required.
    type: str
  public_ip:
    description:
      - Public IPv4 address of the Elastic IP.
    type: str
  address_tags:
    description:
      - "Tags that match exactly one Elastic IP, for example V({\"Service\": \"pg\"})."
    type: dict
  instance_id:
    description:
      - Target instance. Exactly one of O(instance_id), O(auto_scaling_group) and O(standby_instance_id) is required.
    type: str
  auto_scaling_group:
    description:
      - Target the group's one instance that is C(InService) and C(Healthy). The module fails when the group
        has none, or several (name the instance instead).
    type: str
  standby_instance_id:
    description:
      - Target a standby instance, started and waited for when it is stopped (or stopping).
    type: str
  allow_reassociation:
    description:
      - Allow taking the address from the instance or interface it is associated with now.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for a standby instance to reach C(running).
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
    details: Reports the move it would make; associates nothing and starts no standby.
  diff_mode:
    support: full
    details: The instance the address is on, before and after.
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
"""

EXAMPLES = r"""
- name: Move the service address to the replacement instance
  ec2spot.autorecover.eip_failover:
    address_tags:
      Service: pg
    instance_id: "{{ replacement_instance_id }}"
    allow_reassociation: true

- name: Put the address on whatever healthy instance the single-instance group runs
  ec2spot.autorecover.eip_failover:
    public_ip: 203.0.113.10
    auto_scaling_group: pg-fleet
    allow_reassociation: true

- name: Fail over to a stopped standby (started first)
  ec2spot.autorecover.eip_failover:
    allocation_id: eipalloc-0123456789abcdef0
    standby_instance_id: i-0123456789abcdef0
    allow_reassociation: true
"""

RETURN = r"""
allocation_id:
  description: Allocation id of the Elastic IP.
  returned: always
  type: str
  sample: eipalloc-0123456789abcdef0
public_ip:
  description: The address.
  returned: always
  type: str
  sample: 203.0.113.10
instance_id:
  description: The instance the address is (or in check mode would be) associated with.
  returned: always
  type: str
  sample: i-0123456789abcdef0
previous_instance_id:
  description: The instance the address was associated with before, if any.
  returned: always
  type: str
  sample: i-0fedcba9876543210
previous_network_interface_id:
  description: The network interface the address was associated with before, if any.
  returned: always
  type: str
  sample: eni-0fedcba9876543210
association_id:
  description: The current association id (the previous one in check mode).
  returned: always
  type: str
  sample: eipassoc-0123456789abcdef0
standby_started:
  description: Whether the target standby instance was (or in check mode would be) started.
  returned: always
  type: bool
  sample: false
actions:
  description: What this run did, or in check mode would do.
  returned: always
  type: list
  elements: str
  sample: ["associate 203.0.113.10 with i-0123456789abcdef0 (from i-0fedcba9876543210)"]
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client, run
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.addresses import find_address, move_address
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.instances import (
    ensure_running,
    healthy_group_instance,
)


def failover(module, ec2):
    params = module.params
    address = find_address(
        ec2, allocation_id=params["allocation_id"], public_ip=params["public_ip"], address_tags=params["address_tags"]
    )
    target, started = params["instance_id"], False
    if params["auto_scaling_group"]:
        target = healthy_group_instance(client(module, "autoscaling"), params["auto_scaling_group"])
    elif params["standby_instance_id"]:
        target = params["standby_instance_id"]
        started = ensure_running(ec2, target, module.check_mode, params["wait_timeout"])[1]
    move = move_address(
        ec2, address, target, allow_reassociation=params["allow_reassociation"], dry_run=module.check_mode
    )
    if started:
        move.changed = True
        move.actions.insert(0, f"start standby instance {target}")
    return move, started


def main():
    argument_spec = dict(
        allocation_id=dict(type="str"),
        public_ip=dict(type="str"),
        address_tags=dict(type="dict"),
        instance_id=dict(type="str"),
        auto_scaling_group=dict(type="str"),
        standby_instance_id=dict(type="str"),
        allow_reassociation=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[
            ["allocation_id", "public_ip", "address_tags"],
            ["instance_id", "auto_scaling_group", "standby_instance_id"],
        ],
        required_one_of=[
            ["allocation_id", "public_ip", "address_tags"],
            ["instance_id", "auto_scaling_group", "standby_instance_id"],
        ],
    )
    ec2 = client(module, "ec2")
    move, started = run(module, lambda: failover(module, ec2))
    module.exit_json(
        standby_started=started,
        diff={
            "before": {"instance_id": move.previous_instance_id if move.changed else move.instance_id},
            "after": {"instance_id": move.instance_id},
        },
        **move.to_dict(),
    )


if __name__ == "__main__":
    main()
