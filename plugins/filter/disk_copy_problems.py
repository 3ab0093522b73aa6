# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter: whether the secondary's image of a VM can take the resync of the primary's, asked of the runtime."""

from __future__ import annotations

DOCUMENTATION = r"""
name: disk_copy_problems
short_description: What keeps a secondary's disk image from taking the primary's resync
version_added: 0.2.0
description:
  - The secondary's disk image is never copied from the primary - protection starts with a full resync
    (C(drive-mirror) with C(sync=full)) that writes the whole disk into it. So the image at the VM's disk path on the
    secondary needs only the VM's C(disk_format) and the virtual size of the primary's image, and must be a
    standalone image (no backing file); a missing one is created empty and sparse by the C(colo_secondary) role.
  - Returns one sentence per problem, naming the VM and what to fix, an empty list when there is none - the
    runtime's own rule (C(images.disk_copy_problems)), so the role refuses before anything changes.
  - The primary's image may have a backing file (the resync copies what the guest sees, the whole chain); its
    format must be the VM's C(disk_format).
author: colo.ft contributors
positional: secondary, vm
options:
  _input:
    description: C(qemu-img info --output=json) of the primary's image (its disk, or the C(disk_source) it is copied
      from), parsed.
    type: dict
    required: true
  secondary:
    description: C(qemu-img info --output=json) of the image already at the disk path on the secondary, parsed;
      V(null) when there is none (then one would be created).
    type: dict
  vm:
    description: The VM's C(colo_vms) entry (its C(name), C(disk) and C(disk_format) are read).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Refuse a secondary image the resync cannot fill
  ansible.builtin.assert:
    that: __problems | length == 0
    fail_msg: "{{ __problems | join('; ') }}"
  vars:
    __problems: "{{ primary_info.stdout | from_json | colo.ft.disk_copy_problems(none, colo_vms[0]) }}"
"""

RETURN = r"""
_value:
  description: One sentence per problem, naming the VM and what to fix.
  type: list
  elements: str
"""

import dataclasses

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.module_utils.colo.images import disk_copy_problems as runtime_problems
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

DEFAULT_FORMAT = next(f.default for f in dataclasses.fields(VMSpec) if f.name == "disk_format")


def disk_copy_problems(primary, secondary=None, vm=None) -> list[str]:
    if not isinstance(primary, dict) or not (secondary is None or isinstance(secondary, dict)):
        raise AnsibleFilterError("colo.ft.disk_copy_problems: expected the parsed qemu-img info of the primary's image "
                                 "(and of the secondary's, or none)")
    if not isinstance(vm, dict) or not vm.get("disk"):
        raise AnsibleFilterError(f"colo.ft.disk_copy_problems: expected a colo_vms entry with a disk, got {vm!r}")
    return runtime_problems(str(vm.get("name", "?")), vm["disk"], vm.get("disk_format") or DEFAULT_FORMAT,
                            primary, secondary)


class FilterModule:
    def filters(self):
        return {"disk_copy_problems": disk_copy_problems}
