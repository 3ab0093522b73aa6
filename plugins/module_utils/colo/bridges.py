"""The host's bridges (colo.ft.bridge): what is there, and the `ip -batch` lines to reach what is asked.

read() takes one snapshot of the links and IPv4 addresses; plan() decides from it (pure), so check
mode lists the same lines a real run sends.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.host import ip_json


@dataclass(frozen=True)
class Links:
    """`ip -j -d link` by interface name, and each interface's IPv4 addresses (CIDR)."""

    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    addrs: dict[str, list[str]] = field(default_factory=dict)

    def describe(self, bridge: str) -> dict[str, Any]:
        if bridge not in self.links:
            return {}
        return {"name": bridge,
                "ports": sorted(n for n, link in self.links.items() if link.get("master") == bridge),
                "addresses": self.addrs.get(bridge, []),
                "up": "UP" in self.links[bridge].get("flags", [])}


def read() -> Links:
    return Links(
        links={link["ifname"]: link for link in ip_json("-d", "link", "show")},
        addrs={link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                                if a.get("family") == "inet"]
               for link in ip_json("addr", "show")})


def plan(links: Links, name: str, state: str, ports: list[str], address_from: str | None) -> list[str]:
    """The `ip -batch` lines that bring the host to the wanted state (empty: nothing to do)."""
    if len(name) > 15 or not name.replace("-", "").replace("_", "").isalnum():
        raise ColoError(f"bridge name {name!r} is not a valid interface name (at most 15 letters, digits, - or _)")
    if name in links.links and links.links[name].get("linkinfo", {}).get("info_kind") not in (None, "bridge"):
        raise ColoError(f"{name} exists and is not a bridge")
    if state == "absent":
        return [f"link del {name}"] if name in links.links else []
    for iface in [*ports, *([address_from] if address_from else [])]:
        if iface not in links.links:
            raise ColoError(f"interface {iface} does not exist on this host")
    lines = []
    if name not in links.links:
        lines.append(f"link add {name} type bridge")
    if "UP" not in links.links.get(name, {}).get("flags", []):
        lines.append(f"link set {name} up")
    for port in ports:
        if links.links[port].get("master") != name:
            lines.append(f"link set {port} master {name}")
        if "UP" not in links.links[port].get("flags", []):
            lines.append(f"link set {port} up")
    moving = links.addrs.get(address_from, []) if address_from else []
    if moving:
        lines.append(f"addr flush dev {address_from}")
        lines += [f"addr add {a} dev {name}" for a in moving if a not in links.addrs.get(name, [])]
    return lines
