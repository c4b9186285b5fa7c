# Copyright: ec2spot.autorecover maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: handler_section_keys
short_description: The keys the interruption handler takes in a service's standby or watchdog section
version_added: 0.4.0
author:
  - ec2spot.autorecover maintainers (@ec2spot)
description:
  - The keys of a section of a service in the handler configuration, as the handler's own parser defines them
    (C(plugins/module_utils/recovery/standby.py), C(watchdog.py)), sorted. C(deploy.yml) passes a service's
    settings to the handler through this list instead of a copy of it.
options:
  _input:
    description: The section, V(standby) or V(watchdog).
    type: string
    required: true
"""

EXAMPLES = r"""
- name: The handler's part of a service's standby settings
  ansible.builtin.set_fact:
    handler_standby: "{{ service.standby | dict2items | selectattr('key', 'in', 'standby' | ec2spot.autorecover.handler_section_keys) | items2dict }}"
"""

RETURN = r"""
_value:
  description: The section's keys, sorted.
  type: list
  elements: string
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ec2spot.autorecover.plugins.module_utils.recovery import standby, watchdog

SECTIONS = {"standby": standby.SECTION_KEYS, "watchdog": watchdog.SECTION_KEYS}


def handler_section_keys(section):
    """The keys the handler takes in ``section`` of a service."""
    if section not in SECTIONS:
        raise AnsibleFilterError(f"handler_section_keys: {section!r} is not a section of a service (standby, watchdog)")
    return sorted(SECTIONS[section])


class FilterModule:
    """ec2spot.autorecover filters."""

    def filters(self):
        return {"handler_section_keys": handler_section_keys}
