#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: xen_colo
short_description: Run one side of a Xen COLO pair (the seed's Xen steps)
version_added: 0.2.0
description:
  - The Xen backend of colo.ft (C(colo_backend=xen)). Each state runs the commands still needed, in order, and
    nothing when all is in place; check mode returns the commands that would run.
  - V(ready) (secondary) mounts a ramfs on O(ramfs_dir), creates each VM's active and hidden qcow2 overlays with the
    virtual size of its disk (C(qemu-img)) and loads colo-proxy's C(xt_SECCOLO) with the conntrack and NAT modules
    it needs.
  - V(protected) (primary) loads C(nf_conntrack_ipv4) (kernels < 4.19) and C(xt_PMYCOLO sec_dev=<forward NIC>),
    creates each domain paused from its xl config (C(xl create -p)) unless it exists, and starts
    C(xl remus -c -u <domain> <secondary>) in the background (a transient systemd unit C(colo-ft-xen-<name>), or a
    detached process logging to O(log_dir)) unless one runs for the domain.
  - V(failover) takes over with the Xen tools on the survivor. O(lost=primary) (on the secondary) renames the
    received domain C(<name>--incoming) to C(<name>) and unpauses it; O(lost=secondary) (on the primary) stops the
    domain's C(xl remus) and unpauses the domain if it is paused. O(lost=auto) lets each VM's domains say which
    side this host is (a received C(<name>--incoming) - the secondary's; C(<name>) alone - the primary's).
  - V(stopped) stops the guests on this host - each domain's C(xl remus), then C(xl destroy) of the domain and of a
    received C(<name>--incoming); C(playbooks/failover.yml) uses it to fence a host given up while it still answers.
author:
  - colo.ft maintainers (@colo-ft)
extends_documentation_fragment:
  - colo.ft.colo.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  state:
    description: Which step to run (see the description).
    type: str
    choices: [ready, protected, failover, stopped]
    required: true
  lost:
    description: With O(state=failover), the side that was lost; V(auto) decides from the domains on this host.
    type: str
    choices: [auto, primary, secondary]
    default: auto
  vms:
    description:
      - The guests - entries of C(colo_vms) - each with C(name) and C(disk) (the image, the same path on both hosts).
      - Optional C(xen_active_disk) and C(xen_hidden_disk) place the overlays; the default is
        O(ramfs_dir)/C(<name>-active_disk.img) and C(<name>-hidden_disk.img). Other keys are ignored.
    type: list
    elements: dict
    required: true
  config_dir:
    description: Directory of the xl configs, C(<name>.cfg) each (primary).
    type: path
    default: /etc/xen/colo-ft
  ramfs_dir:
    description: Mount point of the ramfs for the overlays (secondary).
    type: path
    default: /mnt/ramfs
  ramfs_size_mib:
    description: C(size=) given to the ramfs mount, as in the seed (ramfs itself does not enforce it).
    type: int
    default: 2048
  forward_nic:
    description: The NIC of the forward link (C(sec_dev) of C(xt_PMYCOLO)); needed with O(state=protected).
    type: str
  secondary_address:
    description: The secondary's checkpoint-link address, where C(xl remus) replicates to; needed with O(state=protected).
    type: str
  qemu_img:
    description: The qemu-img to create the overlays with.
    type: str
    default: qemu-img
  xl:
    description: The xl command.
    type: str
    default: xl
  log_dir:
    description: Where a detached C(xl remus) logs when systemd is not PID 1.
    type: path
    default: /var/lib/colo-ft
notes:
  - Needs a Xen dom0 with the COLO-capable toolstack, QEMU and colo-proxy (see the README's Xen section); C(xl remus)
    reaches the secondary over ssh as root, so the primary's root must be able to ssh to the secondary.
  - The command sequences are unit tested; nothing here has run against a hypervisor in colo.ft's CI.
seealso:
  - module: colo.ft.source_build
"""

EXAMPLES = r"""
- name: Secondary - ramfs, overlays, kernel proxy
  colo.ft.xen_colo:
    state: ready
    vms:
      - name: hvm_nopv_colo
        disk: /srv/xen/suse-64hvm.img

- name: Primary - kernel proxy, paused domain, COLO
  colo.ft.xen_colo:
    state: protected
    forward_nic: eth1
    secondary_address: 192.168.2.88
    vms:
      - name: hvm_nopv_colo
        disk: /srv/xen/suse-64hvm.img
"""

RETURN = r"""
commands:
  description: The commands run (or that would run in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["modprobe xt_PMYCOLO sec_dev=eth1", "xl create -p /etc/xen/colo-ft/hvm_nopv_colo.cfg"]
reasons:
  description: Why each command is needed, in the same order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.colo.ft.plugins.module_utils.colo import xen_colo
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "required": True, "choices": ["ready", "protected", "failover", "stopped"]},
            "lost": {"type": "str", "default": "auto", "choices": ["auto", "primary", "secondary"]},
            "vms": {"type": "list", "elements": "dict", "required": True},
            "config_dir": {"type": "path", "default": "/etc/xen/colo-ft"},
            "ramfs_dir": {"type": "path", "default": "/mnt/ramfs"},
            "ramfs_size_mib": {"type": "int", "default": 2048},
            "forward_nic": {"type": "str"},
            "secondary_address": {"type": "str"},
            "qemu_img": {"type": "str", "default": "qemu-img"},
            "xl": {"type": "str", "default": "xl"},
            "log_dir": {"type": "path", "default": "/var/lib/colo-ft"},
        },
        required_if=[("state", "protected", ("forward_nic", "secondary_address"))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        vms = [xen_colo.vm_from_entry(v, p["ramfs_dir"], p["config_dir"]) for v in p["vms"]]
        if p["state"] == "ready":
            st = xen_colo.read_state(vms, "secondary", qemu_img=p["qemu_img"])
            cmds = xen_colo.plan_secondary(vms, st, p["ramfs_dir"], p["ramfs_size_mib"], p["qemu_img"])
        elif p["state"] == "protected":
            st = xen_colo.read_state(vms, "primary", xl=p["xl"])
            cmds = xen_colo.plan_primary(vms, st, p["forward_nic"], p["secondary_address"], p["xl"], p["log_dir"])
        elif p["state"] == "failover":
            st = xen_colo.read_state(vms, "failover", xl=p["xl"])
            cmds = xen_colo.plan_failover(p["lost"], vms, st, p["xl"])
        else:
            st = xen_colo.read_state(vms, "stopped", xl=p["xl"])
            cmds = xen_colo.plan_stop(vms, st, p["xl"])
        if not module.check_mode:
            xen_colo.run(cmds)
    except ColoError as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=bool(cmds), commands=[str(c) for c in cmds], reasons=[c.why for c in cmds])


if __name__ == "__main__":
    main()
