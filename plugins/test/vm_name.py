# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test: is the value a VM name the runtime accepts? One rule: the runtime's own regex."""

from __future__ import annotations

DOCUMENTATION = r"""
name: vm_name
short_description: Is the value a VM name that colo.ft accepts?
version_added: 0.2.0
description:
  - True for a name of letters, digits, C(_), C(.) and C(-) that starts with a letter and has at most 48
    characters, such as C(web0) or C(db-1.prod).
  - The rule is the one M(colo.ft.vm) applies (the same regular expression, imported from the collection's
    runtime), so the inventory is refused before any host changes, for the same reason the module would refuse it.
author: colo.ft contributors
options:
  _input:
    description: The value to test.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse a bad guest name
  ansible.builtin.assert:
    that: item.name is colo.ft.vm_name
  loop: "{{ colo_vms }}"
"""

RETURN = r"""
_value:
  description: Whether the value is a valid VM name.
  type: bool
"""

from ansible_collections.colo.ft.plugins.module_utils.colo.vm import NAME_RE


def vm_name(value) -> bool:
    return isinstance(value, str) and NAME_RE.match(value) is not None


class TestModule:
    def tests(self):
        return {"vm_name": vm_name}
