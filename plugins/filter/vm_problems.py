# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter: what the runtime would refuse in a list of VM descriptions, asked before anything changes."""

from __future__ import annotations

DOCUMENTATION = r"""
name: vm_problems
short_description: The problems colo.ft would refuse in a list of VM descriptions (colo_vms)
version_added: 0.2.0
description:
  - Returns one sentence per problem found in the VM descriptions (the roles' C(colo_vms)), an empty list when
    there is none.
  - Each entry is read as M(colo.ft.vm) reads its O(colo.ft.vm#module:vm) option (unknown keys, wrong types and
    choices are refused alike) and checked with the runtime's own validation (name rule, MAC, paths, ports, the
    ranges of the COLO settings such as C(compare_timeout) or C(checkpoint_delay_ms)), so the inventory is
    refused before any host changes, for the same reasons the module would refuse it later.
  - Then the VMs are checked against each other with the runtime's rule of what two VMs of a pair cannot share
    (name, MAC, disk and, with the V(qemu) backend, tap and COLO ports).
  - With O(backend=xen) an entry is only checked for unknown keys and types (the Xen backend does not run
    M(colo.ft.vm)) and the VMs for shared names, MACs and disks.
author: colo.ft contributors
positional: backend, role_keys
extends_documentation_fragment:
  - colo.ft.colo.vm_entries
options:
  backend:
    description: V(qemu) (QEMU COLO) or V(xen).
    type: str
    default: qemu
"""

EXAMPLES = r"""
- name: Refuse VM descriptions that colo.ft.vm would refuse
  ansible.builtin.assert:
    that: __problems | length == 0
    fail_msg: "{{ __problems | join('; ') }}"
  vars:
    __problems: "{{ colo_vms | colo.ft.vm_problems('qemu', ['disk_source', 'ready_host', 'ready_port']) }}"
"""

RETURN = r"""
_value:
  description: One sentence per problem, naming the VM (or its position in the list) and what to fix.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec, clashes
from ansible_collections.colo.ft.plugins.module_utils.dict_options import validated_subset
from ansible_collections.colo.ft.plugins.module_utils.module_base import VM_SPEC_ARGS, spec_from_vm_dict, vm_entry_options


def vm_problems(entries, backend: str = "qemu", role_keys=()) -> list[str]:
    if backend not in ("qemu", "xen"):
        raise AnsibleFilterError(f"colo.ft.vm_problems: backend must be qemu or xen, not {backend!r}")
    if not isinstance(entries, list):
        return [f"colo_vms must be a list of VM descriptions, got {type(entries).__name__}"]
    problems: list[str] = []
    specs: list[VMSpec] = []
    for index, entry in enumerate(entries, 1):
        found = vm_entry_options(entry, index, role_keys)
        if found is None:
            problems.append(f"colo_vms entry {index} must be a mapping of VM options, got {entry!r}")
            continue
        vm, label = found
        try:
            if backend == "qemu":
                spec = spec_from_vm_dict(vm, label)
                problems += [f"{label}: {p}" for p in spec.problems()]
            else:
                validated_subset(vm, {"name": {"type": "str"}, **VM_SPEC_ARGS}, label)
                spec = VMSpec(name=vm.get("name"), disk=vm.get("disk"), mac=vm.get("mac"))
        except InvalidSpec as exc:
            also = f" (and the roles read {', '.join(role_keys)})" if role_keys and "unknown keys" in str(exc) else ""
            problems.append(f"{exc}{also}")
            continue
        specs.append(spec)
    return problems + clashes(specs, host_resources=backend == "qemu")


class FilterModule:
    def filters(self):
        return {"vm_problems": vm_problems}
