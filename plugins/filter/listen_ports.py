# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter: the TCP ports QEMU COLO listens on for each VM, per role, as the runtime computes them."""

from __future__ import annotations

DOCUMENTATION = r"""
name: listen_ports
short_description: The TCP ports QEMU COLO listens on for each VM of colo_vms, in either role
version_added: 0.2.0
description:
  - Returns, for every VM description (the roles' C(colo_vms)), the TCP ports its QEMU listens on as a COLO
    primary and as a COLO secondary, computed by the runtime (C(port_base), the explicit ports and their
    defaults) - the same ports M(colo.ft.vm) opens.
  - A primary listens on its mirror and compare ports on its forward-link address (the secondary connects to
    them); a secondary listens on its migration and NBD ports on its checkpoint-link address (the primary
    connects to them). After a failover and C(reprotect.yml) the roles swap, so a host may listen on either set.
  - The C(colo_host) role builds its firewall from this list.
  - The entries are expected to be valid (see the C(colo.ft.vm_problems) filter); an entry that M(colo.ft.vm)
    would refuse is an error.
author: colo.ft contributors
positional: role_keys
extends_documentation_fragment:
  - colo.ft.colo.vm_entries
"""

EXAMPLES = r"""
- name: Show the COLO ports of every VM
  ansible.builtin.debug:
    msg: "{{ item.vm }} listens on {{ item.port }} ({{ item.purpose }}) as {{ item.role }}"
  loop: "{{ colo_vms | colo.ft.listen_ports(['disk_source', 'ready_host', 'ready_port']) }}"
"""

RETURN = r"""
_value:
  description: One entry per VM, role and port, in the order of the VMs.
  type: list
  elements: dict
  contains:
    vm:
      description: The VM's name.
      type: str
    role:
      description: V(primary) (the port is on the forward link) or V(secondary) (on the checkpoint link).
      type: str
    purpose:
      description: V(mirror), V(compare), V(migration) or V(NBD).
      type: str
    port:
      description: The TCP port.
      type: int
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.module_utils.colo.argv import listen_ports as runtime_listen_ports
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec
from ansible_collections.colo.ft.plugins.module_utils.module_base import spec_from_vm_dict, vm_entry_options


def listen_ports(entries, role_keys=()) -> list[dict]:
    if not isinstance(entries, list):
        raise AnsibleFilterError(f"colo.ft.listen_ports: expected a list of VM descriptions, got {type(entries).__name__}")
    ports: list[dict] = []
    for index, entry in enumerate(entries, 1):
        found = vm_entry_options(entry, index, role_keys)
        if found is None:
            raise AnsibleFilterError(f"colo.ft.listen_ports: colo_vms entry {index} is not a mapping: {entry!r}")
        vm, label = found
        try:
            spec = spec_from_vm_dict(vm, label).validate()
        except InvalidSpec as exc:
            raise AnsibleFilterError(f"colo.ft.listen_ports: {exc}") from None
        for role in ("primary", "secondary"):
            ports += [{"vm": spec.name, "role": role, "purpose": purpose, "port": port}
                      for purpose, _address, port in runtime_listen_ports(spec, role)]
    return ports


class FilterModule:
    def filters(self):
        return {"listen_ports": listen_ports}
