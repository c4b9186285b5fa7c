# Copyright: ec2spot.autorecover maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: handler_config_error
short_description: Why the interruption handler would refuse a configuration, or an empty string
version_added: 0.4.0
author:
  - ec2spot.autorecover maintainers (@ec2spot)
description:
  - Parses a handler configuration (the document the control plane puts in C(EC2SPOT_HANDLER_CONFIG)) with the
    handler's own parser (C(plugins/module_utils/recovery/config.py)) on the controller.
  - Returns the handler's refusal, word for word, or an empty string when the handler would accept it. The
    C(control_plane) role checks this before it creates or changes anything, so a configuration the handler refuses
    never deploys (it would otherwise fail at the function's first cold start).
options:
  _input:
    description: The configuration, as a mapping or as JSON text.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Refuse a handler configuration the handler would refuse
  ansible.builtin.assert:
    that: (control_plane_handler_config | ec2spot.autorecover.handler_config_error) == ''
    fail_msg: "{{ control_plane_handler_config | ec2spot.autorecover.handler_config_error }}"
"""

RETURN = r"""
_value:
  description: The handler's refusal, or an empty string when it accepts the configuration.
  type: string
"""

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import config as handler_config
from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery.errors import RecoveryError


def handler_config_error(document):
    """The handler's refusal of ``document``, or ``""``: the handler's parser decides, nothing else."""
    try:
        handler_config.parse(document)
    except RecoveryError as error:
        return error.message
    return ""


class FilterModule:
    """ec2spot.autorecover filters."""

    def filters(self):
        return {"handler_config_error": handler_config_error}
