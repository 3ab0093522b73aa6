#!/usr/bin/python
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bridge
short_description: Linux bridges for COLO guests (runtime state, iproute2)
version_added: 0.2.0
description:
  - Creates or removes a Linux bridge, puts NICs on it and moves a NIC's IPv4 addresses onto it.
  - A COLO host needs two bridges. C(br0) is on the client NIC, where the primary guest's tap joins the client
    network, and an isolated C(br1) without ports, where the secondary guest's tap waits until a
    failover moves it to C(br0).
  - Changes the running network only (like C(ip link)); it writes no distribution network
    configuration, so a host that reboots needs the role (or this module) to run again.
author:
  - colo.ft maintainers (@colo-ft)
options:
  name:
    description: Name of the bridge.
    type: str
    required: true
  state:
    description: Whether the bridge exists.
    type: str
    choices: [present, absent]
    default: present
  ports:
    description:
      - Interfaces that must be ports of the bridge. Other ports are left alone (the guests' taps join
        and leave bridges on their own).
    type: list
    elements: str
    default: []
  address_from:
    description:
      - Interface whose IPv4 addresses move to the bridge (flushed there and added to the bridge in one
        C(ip -batch), so a connection through it survives). Usually the client NIC that is also a port.
    type: str
notes:
  - Supports check mode and diff mode.
requirements:
  - iproute2 (C(ip) with JSON output) on the managed host.
"""

EXAMPLES = r"""
- name: Client bridge on eth0, taking over eth0's address
  colo.ft.bridge:
    name: br0
    ports: [eth0]
    address_from: eth0

- name: Isolated bridge for the secondary guest
  colo.ft.bridge:
    name: br1
"""

RETURN = r"""
bridge:
  description: The bridge after the run (empty when absent).
  returned: always
  type: dict
  sample: {"name": "br0", "ports": ["eth0"], "addresses": ["10.213.1.11/24"], "up": true}
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.colo.ft.plugins.module_utils.colo import bridges
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "ports": {"type": "list", "elements": "str", "default": []},
            "address_from": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        links = bridges.read()
        before = links.describe(p["name"])
        lines = bridges.plan(links, p["name"], p["state"], p["ports"], p["address_from"])
    except ColoError as exc:
        module.fail_json(msg=str(exc))
    after = before
    if lines and not module.check_mode:
        rc, _out, err = module.run_command(["ip", "-batch", "-"], data="\n".join(lines) + "\n", check_rc=False)
        if rc != 0:
            module.fail_json(msg=f"could not set up bridge {p['name']}: {err.strip()}", commands=lines)
        after = bridges.read().describe(p["name"])
    module.exit_json(changed=bool(lines), bridge=after, commands=lines,
                     diff={"before": json.dumps(before, indent=1) + "\n",
                           "after": json.dumps(after if not module.check_mode else {"planned": lines}, indent=1) + "\n"})


if __name__ == "__main__":
    main()
