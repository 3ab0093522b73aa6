"""The Ansible inventory and ssh config the lab writes for its hosts."""

from __future__ import annotations

import json
from pathlib import Path

from .config import GUEST_ADDR, GUEST_MAC, GUEST_MOUNT, HOSTS, STATE
from .hosts import SSH_KEY, SSH_OPTS

INVENTORY = STATE / "inventory.yml"


def _host_vars(host) -> dict:
    return {
        "ansible_host": host.address("mgmt0"),
        "colo_client_nic": "eth0", "colo_client_address": host.address("eth0"),
        "colo_forward_nic": "eth1", "colo_forward_address": host.address("eth1"),
        "colo_checkpoint_nic": "eth2", "colo_checkpoint_address": host.address("eth2"),
    }


def write_inventory() -> Path:
    groups: dict = {}
    for host in HOSTS:
        groups.setdefault(host.group, {"hosts": {}})["hosts"][host.name] = _host_vars(host)
    inventory = {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(SSH_KEY),
            "ansible_ssh_common_args": " ".join(SSH_OPTS[:6]),  # no host-key checks for throw-away hosts
            "ansible_python_interpreter": "/usr/bin/python3",
            "colo_lab": True,
            "colo_lab_guest_dir": GUEST_MOUNT,
            "colo_lab_guest_address": GUEST_ADDR,
            "colo_lab_guest_mac": GUEST_MAC,
        },
        "children": groups,
    }}
    # JSON is valid YAML: no YAML library needed on the machine's Python.
    INVENTORY.write_text(json.dumps(inventory, indent=2) + "\n")
    return INVENTORY
