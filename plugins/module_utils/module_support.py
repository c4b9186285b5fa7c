# -*- coding: utf-8 -*-
# Copyright: ec2spot.autorecover contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules share: AWS clients with the core's retry policy, and core errors as failures.

The only Ansible-aware code between a module and the recovery core. The core raises
``RecoveryError``; the module fails with the same message the handler would log, plus
the error's code and details under ``error`` for callers that branch on it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.aws import RETRY_CONFIG
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import RecoveryError


def client(module, service):
    """An AnsibleAWSModule client using the core's botocore retry configuration."""
    return module.client(service, config=RETRY_CONFIG)


def run(module, action):
    """Run ``action()``; a ``RecoveryError`` fails the module with its message and details."""
    try:
        return action()
    except RecoveryError as error:
        module.fail_json(msg=error.message, error=error.to_dict())
