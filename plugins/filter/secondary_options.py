# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter: colo.ft.vm's options to start each VM of colo_vms as a COLO secondary on a host."""

from __future__ import annotations

DOCUMENTATION = r"""
name: secondary_options
short_description: colo.ft.vm's options to start each VM of colo_vms as the COLO secondary of a host
version_added: 0.2.0
description:
  - Returns, by VM name, the options of M(colo.ft.vm) (its O(colo.ft.vm#module:vm) dict) that start the VM as the
    secondary on a host - the entry without the roles' own keys, placed with the given bridge, addresses, user,
    x509 directory, and the active and hidden overlays in O(scratch_dir).
  - The C(colo_secondary) role starts its VMs with them, and the C(colo_cluster) role gives them to the colo.ft
    agent, which starts a secondary the same way when it re-protects the pair by itself.
author: colo.ft contributors
positional: role_keys, scratch_dir
options:
  _input:
    description: The VM descriptions (the roles' C(colo_vms)).
    type: list
    elements: dict
    required: true
  role_keys:
    description: Keys of an entry that the roles use themselves and do not pass to M(colo.ft.vm).
    type: list
    elements: str
    required: true
  scratch_dir:
    description: The directory of the overlays (C(<name>-active.qcow2), C(<name>-hidden.qcow2)).
    type: str
    required: true
  bridge:
    description: The isolated bridge of the secondary's tap.
    type: str
    required: true
  forward_address:
    description: The primary's forward-link address.
    type: str
    required: true
  checkpoint_address:
    description: This host's checkpoint-link address.
    type: str
    required: true
  qemu_user:
    description: The user QEMU drops root to (empty or null keeps root).
    type: str
  tls_dir:
    description: The x509 directory of the COLO channels (empty or null is cleartext).
    type: str
"""

EXAMPLES = r"""
- name: Start the secondaries
  colo.ft.vm:
    name: "{{ item.key }}"
    vm: "{{ item.value }}"
    role: secondary
  loop: >-
    {{ colo_vms | colo.ft.secondary_options(['ready_port'], '/var/lib/colo-ft/scratch', bridge='br1',
       forward_address='10.0.1.1', checkpoint_address='10.0.2.2') | dict2items }}
"""

RETURN = r"""
_value:
  description: VM name to the options of M(colo.ft.vm) (unset ones left out), in the order of the VMs.
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.module_utils.module_base import vm_entry_options


def secondary_options(entries, role_keys, scratch_dir, bridge, forward_address, checkpoint_address,
                      qemu_user=None, tls_dir=None) -> dict:
    if not isinstance(entries, list):
        raise AnsibleFilterError("colo.ft.secondary_options: expected a list of VM descriptions, "
                                 f"got {type(entries).__name__}")
    out: dict = {}
    for index, entry in enumerate(entries, 1):
        found = vm_entry_options(entry, index, role_keys)
        if found is None:
            raise AnsibleFilterError(f"colo.ft.secondary_options: colo_vms entry {index} is not a mapping: {entry!r}")
        vm, _label = found
        placement = {"bridge": bridge, "forward_address": forward_address, "checkpoint_address": checkpoint_address,
                     "qemu_user": qemu_user or None, "tls_dir": tls_dir or None,
                     "active_disk": f"{scratch_dir}/{vm['name']}-active.qcow2",
                     "hidden_disk": f"{scratch_dir}/{vm['name']}-hidden.qcow2"}
        out[vm["name"]] = {**vm, **{k: v for k, v in placement.items() if v is not None}}
    return out


class FilterModule:
    def filters(self):
        return {"secondary_options": secondary_options}
