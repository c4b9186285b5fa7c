#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: spot_drill
version_added: 0.2.0
short_description: Game day - interrupt a lineage's Spot instance with AWS FIS and report the recovery
description:
  - Keeps an AWS FIS experiment template per lineage (tagged C(ec2spot:lineage) and C(ec2spot:drill=spot-interruption))
    whose action is C(aws:ec2:send-spot-instance-interruptions) on the lineage's running Spot instances, selected by tag.
  - With O(state=started) it starts an experiment from that template and, with O(wait=true), watches the recovery
    until the replacement reported success, then returns its timeline. The interruption is AWS's own (warning event,
    instance metadata notice, reclaim at the notice time), so the drill runs the real recovery path.
  - The timeline is read from what the recovery leaves behind (the handler's C(ec2spot:progress:*) tags on both
    instances and the replacement's launch time), not from this module's polling.
  - O(state=present) and O(state=absent) manage the template only and are idempotent. O(state=started) always
    reports C(changed) (it interrupts an instance); in check mode it reports the instances it would interrupt
    and changes nothing.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  lineage:
    description:
      - The lineage whose Spot instances the drill interrupts (instances tagged C(ec2spot:lineage=<lineage>)).
    type: str
    required: true
  state:
    description:
      - V(present) keeps the template, V(absent) deletes the lineage's drill templates, V(started) keeps the
        template and starts an experiment.
    type: str
    choices: [present, absent, started]
    default: started
  role_arn:
    description:
      - The role AWS FIS assumes to interrupt instances (trusts C(fis.amazonaws.com), allows
        C(ec2:SendSpotInstanceInterruptions) on instances of the lineage). Required to create or update the template.
    type: str
  stop_condition_alarm_arn:
    description:
      - A CloudWatch alarm that stops the experiment when it goes to C(ALARM). Without one the template has no stop condition.
    type: str
  duration_before_interruption:
    description:
      - Time from the experiment's start to the interruption, V(PT2M) to V(PT15M). Over two minutes, AWS sends a
        rebalance recommendation first and the two-minute warning later.
    type: str
    default: PT2M
  count:
    description:
      - How many running Spot instances of the lineage one experiment interrupts.
    type: int
    default: 1
  tags:
    description:
      - Extra tags for the template.
    type: dict
    default: {}
  wait:
    description:
      - With O(state=started), wait until every interrupted instance's replacement reported success.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the recoveries.
    type: int
    default: 900
  poll_interval:
    description:
      - Seconds between reads of the recovery's progress while waiting.
    type: float
    default: 2.0
  time_scale:
    description:
      - Factor applied to every duration the module reports. V(1) against AWS; a simulated AWS whose clock runs
        faster than real time passes its speed-up to report real-world seconds.
    type: float
    default: 1.0
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the template it would keep and the instances a drill would interrupt; starts nothing.
  diff_mode:
    support: full
    details: The experiment template before and after.
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
"""

EXAMPLES = r"""
- name: Keep the drill template of the pgdata lineage
  ec2spot.autorecover.spot_drill:
    lineage: pgdata
    state: present
    role_arn: arn:aws:iam::123456789012:role/pg-fis
    stop_condition_alarm_arn: arn:aws:cloudwatch:eu-west-1:123456789012:alarm:pg-recovery-failed

- name: Interrupt the pg instance and watch it come back
  ec2spot.autorecover.spot_drill:
    lineage: pgdata
    role_arn: arn:aws:iam::123456789012:role/pg-fis
    wait_timeout: 900
  register: drill

- name: Show the timeline
  ansible.builtin.debug:
    msg: "{{ drill.recoveries[0].phases }} (RTO {{ drill.recoveries[0].rto_seconds }} s)"
"""

RETURN = r"""
template_id:
  description: The lineage's drill template (null in check mode when it does not exist yet).
  returned: state is present or started
  type: str
  sample: EXT1a2b3c4d5e6f7
deleted_template_ids:
  description: Templates deleted (or in check mode to be deleted).
  returned: state is absent
  type: list
  elements: str
experiment_id:
  description: The experiment started.
  returned: state is started, not in check mode
  type: str
would_interrupt:
  description: Running Spot instances of the lineage the experiment would choose from (check mode).
  returned: state is started, in check mode
  type: list
  elements: str
interrupted_instance_ids:
  description: The instances the experiment interrupted.
  returned: state is started, not in check mode
  type: list
  elements: str
recoveries:
  description: One entry per interrupted instance, once its replacement reported success (O(wait=true)).
  returned: state is started, not in check mode, wait is true
  type: list
  elements: dict
  contains:
    phases:
      description: Phase name to seconds since the warning, in recovery order (warning, pre-snapshot, replacement
        running, replacement ready, cut-over, stop sent, app stopped, snapshot requested, volume released, volume
        attached, EIP moved, mounted, app started, success); phases that did not happen (no pre-snapshot or cut-over
        for a break-before-make hand-off, no address) are left out.
      type: dict
      sample: {"warning": 0.0, "app stopped": 4.1, "volume released": 9.3, "success": 41.7}
    rto_seconds:
      description:
        - From the stop sent (at the warning, or at a make-before-break cut-over) until the service is back at its
          address (later of app started and EIP moved).
        - From app stopped for a recovery recorded by a handler older than the stop sent phase.
      type: float
    serving:
      description: Seconds since the warning until which the old instance served (C(old_until)), and from which the
        replacement serves (C(replacement_from)).
      type: dict
    recovery_seconds:
      description: From the warning to the success message.
      type: float
    rpo_seconds:
      description: Seconds of writes that may be lost (0 when the data moved after a confirmed clean stop).
      type: float
    az_case:
      description: V(same-az) when the replacement is in the interrupted instance's zone, else V(other-az).
      type: str
    data:
      description: The handler's account of the data (the volume moved, or the snapshot restored and its age).
      type: str
    interrupted_instance_id:
      description: The interrupted instance.
      type: str
    replacement_instance_id:
      description: Its replacement.
      type: str
    public_ip:
      description: The replacement's public address (the service's Elastic IP when it has one).
      type: str
changed:
  description: True when the template changed or an experiment was (or in check mode would be) started.
  returned: always
  type: bool
"""

import uuid

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client, run
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import drill


def keep_template(module, fis):
    params = module.params
    if not params["role_arn"]:
        found = drill.find_templates(fis, params["lineage"])
        if len(found) == 1:
            return found[0]["id"], False, {}
        module.fail_json(
            msg=f"role_arn is required to create the drill template of lineage {params['lineage']}; nothing was changed"
        )
    request = drill.template_request(
        params["lineage"],
        params["role_arn"],
        params["stop_condition_alarm_arn"],
        params["duration_before_interruption"],
        params["count"],
        params["tags"],
    )
    template_id, changed, before, after = drill.ensure_template(fis, request, check_mode=module.check_mode)
    return template_id, changed, {"before": before or {}, "after": after}


def started(module, fis, ec2):
    params = module.params
    drill.duration_seconds(params["duration_before_interruption"])
    template_id, _changed, diff = keep_template(module, fis)
    if module.check_mode:
        return dict(
            changed=True,
            template_id=template_id,
            would_interrupt=drill.spot_candidates(ec2, params["lineage"]),
            diff=diff,
        )
    experiment_id, start_time, interrupted = drill.start(fis, template_id, str(uuid.uuid4()))
    result = dict(
        changed=True,
        template_id=template_id,
        experiment_id=experiment_id,
        interrupted_instance_ids=interrupted,
        diff=diff,
    )
    if params["wait"]:
        warned_at = drill.warned_at_of(start_time, params["duration_before_interruption"])
        recoveries = []
        for instance_id in interrupted:
            old, new = drill.watch(
                ec2, params["lineage"], instance_id, timeout=params["wait_timeout"], poll=params["poll_interval"]
            )
            phases, report = drill.timeline(old, new, warned_at, scale=params["time_scale"])
            recoveries.append(dict(report, phases=phases))
        result["recoveries"] = recoveries
    return result


def main():
    argument_spec = dict(
        lineage=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent", "started"], default="started"),
        role_arn=dict(type="str"),
        stop_condition_alarm_arn=dict(type="str"),
        duration_before_interruption=dict(type="str", default="PT2M"),
        count=dict(type="int", default=1),
        tags=dict(type="dict", default={}),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=900),
        poll_interval=dict(type="float", default=2.0),
        time_scale=dict(type="float", default=1.0),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    fis, ec2 = client(module, "fis"), client(module, "ec2")
    state = module.params["state"]
    if state == "absent":
        deleted = run(
            module, lambda: drill.delete_templates(fis, module.params["lineage"], check_mode=module.check_mode)
        )
        module.exit_json(changed=bool(deleted), deleted_template_ids=deleted)
    if state == "present":
        template_id, changed, diff = run(module, lambda: keep_template(module, fis))
        module.exit_json(changed=changed, template_id=template_id, diff=diff)
    module.exit_json(**run(module, lambda: started(module, fis, ec2)))


if __name__ == "__main__":
    main()
