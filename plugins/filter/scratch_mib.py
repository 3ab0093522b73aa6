# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter: the size of a secondary's scratch tmpfs, by the runtime's rule."""

from __future__ import annotations

DOCUMENTATION = r"""
name: scratch_mib
short_description: The size in MiB of a COLO secondary's scratch tmpfs for its disks
version_added: 0.2.0
description:
  - The active and hidden overlays of a COLO secondary live on a tmpfs. Its size is twice the virtual size of
    every disk plus O(slack_mib), by the runtime's rule (the colo.ft agent sizes the tmpfs it mounts after a
    reboot by the same rule).
author: colo.ft contributors
positional: slack_mib
options:
  _input:
    description: The virtual sizes of the disks, in bytes.
    type: list
    elements: int
    required: true
  slack_mib:
    description: MiB added to the overlays' room.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: Size of the scratch tmpfs for two 1 GiB disks
  ansible.builtin.debug:
    msg: "{{ [1073741824, 1073741824] | colo.ft.scratch_mib(64) }}"  # 4160
"""

RETURN = r"""
_value:
  description: The size in MiB.
  type: int
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.module_utils.colo.host import scratch_mib as runtime_scratch_mib


def scratch_mib(virtual_sizes, slack_mib) -> int:
    try:
        return runtime_scratch_mib([int(size) for size in virtual_sizes], int(slack_mib))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"colo.ft.scratch_mib: {exc}") from None


class FilterModule:
    def filters(self):
        return {"scratch_mib": scratch_mib}
