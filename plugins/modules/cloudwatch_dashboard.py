#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cloudwatch_dashboard
version_added: 0.2.0
short_description: Create, update or delete a CloudWatch dashboard
description:
  - Keeps one Amazon CloudWatch dashboard (C(PutDashboard), C(GetDashboard), C(DeleteDashboards)).
  - Neither amazon.aws nor community.aws has a dashboard module; this small one exists so that the
    C(ec2spot.autorecover.monitoring) role can keep a dashboard per service. It knows nothing of the
    recovery; any dashboard body works.
  - Idempotent by content. The dashboard is written only when its body, parsed as JSON, differs from the
    existing one, so key order and white space never cause a change.
  - Supports check mode and diff mode (the bodies before and after).
  - Dashboards are global to the account, not regional; the region only chooses the endpoint. Metric widgets
    name their own region in their C(properties.region).
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  name:
    description:
      - Name of the dashboard, 1-255 letters, digits, V(-) or V(_).
    type: str
    required: true
    aliases: [dashboard_name]
  state:
    description:
      - V(present) creates or updates the dashboard, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  body:
    description:
      - The dashboard body, a JSON object with a C(widgets) list, given as a dictionary or as a JSON string. See
        U(https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html).
      - Required with O(state=present).
    type: json
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Compares the bodies; writes nothing.
  diff_mode:
    support: full
    details: The dashboard's body before and after.
  platform:
    platforms: all
    details: Calls AWS's APIs, from wherever boto3 runs (usually the controller).
notes:
  - IAM permissions C(cloudwatch:GetDashboard), C(cloudwatch:PutDashboard) and C(cloudwatch:DeleteDashboards).
  - Warnings CloudWatch returns for an accepted body (C(DashboardValidationMessages)) are shown as task warnings;
    a body CloudWatch rejects fails the task and changes nothing.
"""

EXAMPLES = r"""
- name: Dashboard of the web service
  ec2spot.autorecover.cloudwatch_dashboard:
    name: web-us-east-1
    body:
      widgets:
        - type: metric
          x: 0
          y: 0
          width: 12
          height: 6
          properties:
            title: CPU
            region: us-east-1
            stat: Average
            period: 300
            metrics:
              - [AWS/EC2, CPUUtilization, AutoScalingGroupName, web]

- name: Dashboard from a template
  ec2spot.autorecover.cloudwatch_dashboard:
    name: web-us-east-1
    body: "{{ lookup('ansible.builtin.template', 'dashboard.json.j2') }}"

- name: Remove the dashboard
  ec2spot.autorecover.cloudwatch_dashboard:
    name: web-us-east-1
    state: absent
"""

RETURN = r"""
dashboard:
  description: The dashboard as it is (or in check mode would be); empty after O(state=absent).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the dashboard.
      type: str
      sample: web-us-east-1
    arn:
      description: ARN of the dashboard (null in check mode before it exists).
      type: str
      sample: arn:aws:cloudwatch::123456789012:dashboard/web-us-east-1
    body:
      description: The dashboard body, parsed.
      type: dict
      sample: {"widgets": [{"type": "metric", "properties": {"metrics": [["AWS/EC2", "CPUUtilization"]]}}]}
validation_messages:
  description: Warnings CloudWatch returned when it accepted the body.
  returned: when the dashboard was written
  type: list
  elements: dict
  sample: []
"""

import json
import re

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import client as aws_client
from ansible_collections.ec2spot.autorecover.plugins.module_utils.core_adapter import run
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import call
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import AwsApiError, InvalidInput

NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


def get_dashboard(client, name):
    """The dashboard's ARN and parsed body, or (None, None) when there is none."""
    try:
        found = call(client, "get_dashboard", DashboardName=name)
    except AwsApiError as error:
        if error.aws_code == "ResourceNotFound":
            return None, None
        raise
    return found.get("DashboardArn"), json.loads(found.get("DashboardBody") or "{}")


def canonical(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def ensure_present(module, client, name, body):
    arn, existing = get_dashboard(client, name)
    diff = {"before": existing or {}, "after": body}
    if existing is not None and canonical(existing) == canonical(body):
        return dict(changed=False, dashboard=dict(name=name, arn=arn, body=existing), diff=diff)
    if module.check_mode:
        return dict(changed=True, dashboard=dict(name=name, arn=arn, body=body), diff=diff)
    answer = call(client, "put_dashboard", DashboardName=name, DashboardBody=canonical(body))
    messages = answer.get("DashboardValidationMessages") or []
    for message in messages:
        module.warn(
            f"CloudWatch on dashboard {name}: {message.get('DataPath', '')} {message.get('Message', '')}".strip()
        )
    arn, stored = get_dashboard(client, name)
    return dict(changed=True, dashboard=dict(name=name, arn=arn, body=stored), validation_messages=messages, diff=diff)


def ensure_absent(module, client, name):
    arn, existing = get_dashboard(client, name)
    if existing is None:
        return dict(changed=False, dashboard={}, diff={"before": {}, "after": {}})
    if not module.check_mode:
        try:
            call(client, "delete_dashboards", DashboardNames=[name])
        except AwsApiError as error:
            if error.aws_code != "ResourceNotFound":  # gone meanwhile: what was asked
                raise
    return dict(changed=True, dashboard={}, diff={"before": existing, "after": {}})


def parse_body(name, text):
    """The dashboard body as CloudWatch takes it: a JSON object with a ``widgets`` list."""
    try:
        body = json.loads(text)
    except ValueError as error:
        raise InvalidInput(f"dashboard {name}: the body is not JSON ({error}); nothing was changed") from error
    if not isinstance(body, dict) or not isinstance(body.get("widgets"), list):
        raise InvalidInput(
            f"dashboard {name}: the body must be a JSON object with a 'widgets' list; nothing was changed"
        )
    return body


def main():
    argument_spec = dict(
        name=dict(type="str", required=True, aliases=["dashboard_name"]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        body=dict(type="json"),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec, required_if=[("state", "present", ["body"])], supports_check_mode=True
    )
    name = module.params["name"]
    if not NAME.fullmatch(name):
        module.fail_json(
            msg=f"dashboard name {name!r}: 1-255 letters, digits, '-' or '_' (CloudWatch's rule); nothing was changed"
        )
    client = aws_client(module, "cloudwatch")
    if module.params["state"] == "absent":
        module.exit_json(**run(module, lambda: ensure_absent(module, client, name)))
    module.exit_json(
        **run(module, lambda: ensure_present(module, client, name, parse_body(name, module.params["body"])))
    )


if __name__ == "__main__":
    main()
