"""The Ansible inventory and ssh config the lab writes for its hosts."""

from __future__ import annotations

import json
from pathlib import Path

from .config import ARBITER, GUEST_ADDR, GUEST_MAC, GUEST_MOUNT, HOSTS, STATE
from .hosts import KEEPALIVE_OPTS, SSH_KEY, SSH_OPTS

INVENTORY = STATE / "inventory.yml"


def _host_vars(host) -> dict:
    return {
        "ansible_host": host.address("mgmt0"),
        "colo_client_nic": "eth0", "colo_client_address": host.address("eth0"),
        "colo_forward_nic": "eth1", "colo_forward_address": host.address("eth1"),
        "colo_checkpoint_nic": "eth2", "colo_checkpoint_address": host.address("eth2"),
    }


def _guest_vm(guest: dict) -> dict:
    """The lab's test guest as a colo_vms entry (see the roles' argument specs)."""
    return {
        "name": "guest0",
        "memory_mib": guest["memory_mib"],
        "mac": GUEST_MAC,
        "nic_model": guest["nic_model"],
        "disk": "/var/lib/colo-ft/images/guest0.qcow2",
        "disk_source": f"{GUEST_MOUNT}/{guest['disk']}",
        "boot": "kernel",
        "kernel": f"{GUEST_MOUNT}/{guest['kernel']}",
        "initrd": f"{GUEST_MOUNT}/{guest['initrd']}",
        "append": f"{guest['cmdline']} colo.ip={GUEST_ADDR}/24",
        "accel": "tcg",  # /dev/kvm here is a paravirtual KVM that stock guest kernels fail on
        # Protect only a booted guest: the ledger answers once the guest is up.
        "ready_host": GUEST_ADDR,
        "ready_port": guest["services"]["ledger"],
    }


def write_inventory(guest_dir: Path) -> Path:
    groups: dict = {}
    for host in HOSTS:
        groups.setdefault(host.group, {"hosts": {}})["hosts"][host.name] = _host_vars(host)
    groups[ARBITER.group] = {"hosts": {ARBITER.name: {"ansible_host": ARBITER.address("mgmt0"),
                                                      "colo_client_address": ARBITER.address("eth0")}}}
    inventory = {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(SSH_KEY),
            # No host-key checks for throw-away hosts; keepalives end an ssh master (ControlPersist) whose host
            # crashed, which hears no FIN and would otherwise hang every later task on that host.
            "ansible_ssh_common_args": " ".join(SSH_OPTS[:6] + KEEPALIVE_OPTS),
            "ansible_python_interpreter": "/usr/bin/python3",
            # The hosts' only package source is the lab's repository, which holds QEMU 11.
            "colo_host_enable_backports": False,
            "colo_host_qemu_release": "",
            "colo_vms": [_guest_vm(json.loads((guest_dir / "guest.json").read_text()))],
            "colo_lab_guest_address": GUEST_ADDR,
        },
        "children": groups,
    }}
    # JSON is valid YAML: no YAML library needed on the machine's Python.
    INVENTORY.write_text(json.dumps(inventory, indent=2) + "\n")
    return INVENTORY
