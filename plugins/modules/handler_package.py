#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This file only documents the action plugin plugins/action/handler_package.py, which does the work
# on the controller (as ansible.builtin.set_fact or amazon.aws.s3_object document theirs).

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: handler_package
version_added: 0.2.0
short_description: Build the interruption handler's Lambda deployment package, byte for byte reproducibly
description:
  - Builds the zip file that the interruption handler runs from on AWS Lambda, from this collection's own
    recovery core (every C(*.py) file under C(plugins/module_utils/recovery/) of the installed collection, in
    its subpackages too; the handler itself is the package C(recovery/handler/)), stored in the zip under
    C(recovery/). The Lambda handler is therefore C(recovery.handler.lambda_handler).
  - The zip is deterministic. Its entries are sorted, all carry the timestamp 1980-01-01 00:00:00 and the
    permissions C(0644), and are compressed with deflate at one fixed level. The same sources always give the
    same bytes, so the package's SHA-256 changes only when the code does, and M(amazon.aws.lambda) uploads
    new code only then.
  - Runs on the controller and writes O(dest) on the controller. Nothing is sent to the managed host.
  - The file is written only when it does not exist or holds different bytes, atomically.
author:
  - ec2spot.autorecover maintainers (@ec2spot)
options:
  dest:
    description:
      - Path of the zip file to write on the controller. Missing parent directories are created.
      - Use an absolute path; a relative one is relative to the directory C(ansible-playbook) runs in.
    type: path
    required: true
  config:
    description:
      - The interruption handler's configuration (the schema of C(plugins/module_utils/recovery/config.py)), stored
        in the zip as C(recovery/handler_config.json), where the handler reads it at its cold start.
      - Validated first by the handler's own parser, so a configuration the handler would refuse fails this task,
        in the handler's words, and nothing is written.
      - Stored as JSON with sorted keys and no whitespace, so the same configuration always gives the same bytes;
        the package's digest changes when the code or the configuration does, and both deploy together.
      - A package in the function's code has no size limit that matters here, unlike Lambda's environment
        variables (4 KB in all), which bounded earlier versions to about 9 services.
      - Omitted, the package holds no configuration and the handler reads the environment variable
        C(EC2SPOT_HANDLER_CONFIG) instead.
    type: dict
    version_added: 0.5.0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Builds the package and reports whether O(dest) would change, without writing it.
  diff_mode:
    support: none
  platform:
    platforms: all
    details: Runs on the controller only.
notes:
  - The package holds only the recovery core. Lambda's Python runtime provides C(boto3) and C(botocore).
  - Zip compression comes from the controller's C(zlib). Two controllers with different C(zlib) builds may
    produce different bytes from the same sources; one controller always produces the same bytes.
seealso:
  - module: amazon.aws.lambda
  - name: Control plane role
    description: The C(ec2spot.autorecover.control_plane) role builds the package with this action and deploys it.
    link: https://github.com/ec2spot/autorecover/blob/main/roles/control_plane/README.md
"""

EXAMPLES = r"""
- name: Build the handler's deployment package with its configuration inside (what the control_plane role does)
  ec2spot.autorecover.handler_package:
    dest: "{{ playbook_dir }}/.build/ec2spot-handler.zip"
    config:
      topic_arn: arn:aws:sns:us-east-1:123456789012:pg-recovery
      services:
        - name: pg
          lineage: pgdata
          stop_commands: ["systemctl stop postgresql"]
  register: handler_zip

- name: Deploy it
  amazon.aws.lambda:
    name: ec2spot-autorecover
    runtime: python3.12
    handler: recovery.handler.lambda_handler
    role: ec2spot-autorecover-function
    zip_file: "{{ handler_zip.path }}"
    timeout: 900

- name: A package without a configuration (the handler then reads EC2SPOT_HANDLER_CONFIG)
  ec2spot.autorecover.handler_package:
    dest: "{{ playbook_dir }}/.build/ec2spot-handler-bare.zip"
"""

RETURN = r"""
path:
  description: The path of the zip file (O(dest)).
  returned: always
  type: str
  sample: /home/deploy/.build/ec2spot-handler.zip
sha256:
  description: Hexadecimal SHA-256 of the zip's bytes.
  returned: always
  type: str
  sample: 0f3c1f6d1f9e0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8
base64_sha256:
  description:
    - Base64 of the zip's SHA-256 digest, what Lambda reports as C(CodeSha256) for a function deployed from it.
  returned: always
  type: str
  sample: DzwfbR+eCxwtPk9aa3yNng8aKzxNXm9wgZKjtMXW5/g=
size:
  description: Size of the zip in bytes.
  returned: always
  type: int
  sample: 61440
check_mode:
  description:
    - Whether the task ran in check mode (the package was computed, not written). Unlike the variable
      C(ansible_check_mode), which only reflects C(--check), this is also true under the C(check_mode) keyword
      of a task, block, role or play.
  returned: always
  type: bool
  sample: false
config_size:
  description: Size in bytes of the packaged configuration (C(recovery/handler_config.json)); 0 without O(config).
  returned: always
  type: int
  sample: 1843
  version_added: 0.5.0
files:
  description: The zip's entries, in the order they are stored (sorted).
  returned: always
  type: list
  elements: str
  sample:
    - recovery/__init__.py
    - recovery/addresses.py
    - recovery/handler/__init__.py
    - recovery/handler/intake.py
    - recovery/handler/warning.py
"""
