#!/usr/bin/python
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bridge
short_description: Linux bridges for COLO guests (runtime state, iproute2)
version_added: 0.1.0
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


class _Links:
    """The host's links and addresses as iproute2 reports them."""

    def __init__(self, module: AnsibleModule) -> None:
        self._module = module
        self.links = {link["ifname"]: link for link in self._ip_json("-d", "link", "show")}
        self.addrs = {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                                       if a.get("family") == "inet"]
                      for link in self._ip_json("addr", "show")}

    def _ip_json(self, *args: str) -> list:
        rc, out, err = self._module.run_command(["ip", "-j", *args], check_rc=False)
        if rc != 0:
            self._module.fail_json(msg=f"ip -j {' '.join(args)} failed: {err.strip()}")
        return json.loads(out or "[]")

    def require(self, name: str) -> None:
        if name not in self.links:
            self._module.fail_json(msg=f"interface {name} does not exist on this host")

    def describe(self, bridge: str) -> dict:
        if bridge not in self.links:
            return {}
        return {"name": bridge,
                "ports": sorted(n for n, link in self.links.items() if link.get("master") == bridge),
                "addresses": self.addrs.get(bridge, []),
                "up": "UP" in self.links[bridge].get("flags", [])}


def _plan(links: _Links, name: str, state: str, ports: list[str], address_from: str | None) -> list[str]:
    """The `ip -batch` lines that bring the host to the wanted state (empty: nothing to do)."""
    if state == "absent":
        return [f"link del {name}"] if name in links.links else []
    plan = []
    if name not in links.links:
        plan.append(f"link add {name} type bridge")
    bridge = links.links.get(name, {})
    if "UP" not in bridge.get("flags", []):
        plan.append(f"link set {name} up")
    for port in ports:
        links.require(port)
        if links.links[port].get("master") != name:
            plan.append(f"link set {port} master {name}")
        if "UP" not in links.links[port].get("flags", []):
            plan.append(f"link set {port} up")
    if address_from:
        links.require(address_from)
        moving = links.addrs.get(address_from, [])
        if moving:
            plan.append(f"addr flush dev {address_from}")
            plan += [f"addr add {a} dev {name}" for a in moving if a not in links.addrs.get(name, [])]
    return plan


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
    name, state = module.params["name"], module.params["state"]
    if len(name) > 15 or not name.replace("-", "").replace("_", "").isalnum():
        module.fail_json(msg=f"bridge name {name!r} is not a valid interface name (at most 15 letters, digits, - or _)")
    links = _Links(module)
    before = links.describe(name)
    if before and links.links[name].get("linkinfo", {}).get("info_kind") not in (None, "bridge"):
        module.fail_json(msg=f"{name} exists and is not a bridge")
    plan = _plan(links, name, state, module.params["ports"], module.params["address_from"])
    after = before
    if plan and not module.check_mode:
        rc, _out, err = module.run_command(["ip", "-batch", "-"], data="\n".join(plan) + "\n", check_rc=False)
        if rc != 0:
            module.fail_json(msg=f"could not set up bridge {name}: {err.strip()}", commands=plan)
        after = _Links(module).describe(name)
    module.exit_json(changed=bool(plan), bridge=after, commands=plan,
                     diff={"before": json.dumps(before, indent=1) + "\n",
                           "after": json.dumps(after if not module.check_mode else {"planned": plan}, indent=1) + "\n"})


if __name__ == "__main__":
    main()
