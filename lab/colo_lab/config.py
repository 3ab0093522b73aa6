"""Fixed facts of the built-in lab: names, links, addresses and paths.

docs/lab-contract.md is the human-readable form of this file; keep both in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("COLO_LAB_CACHE", "/var/cache/colo-lab"))
STATE = Path(os.environ.get("COLO_LAB_STATE", "/var/lib/colo-lab"))

SWITCH_NS = "colo-lab-sw"
CLIENT_NS = "colo-client"
MGMT_IF = "colo-lab0"  # the machine's only added interface: ssh to the hosts
MGMT_ADDR = "10.213.0.1/24"

# In-host mount points of what the lab shares with its hosts.
APT_MOUNT = "/srv/colo-lab/apt"
GUEST_MOUNT = "/srv/colo-lab/guest"


@dataclass(frozen=True)
class Link:
    name: str  # interface name inside a host
    bridge: str  # switch bridge in SWITCH_NS
    subnet: str  # first three octets
    role: str


LINKS = (
    Link("mgmt0", "br-mgmt", "10.213.0", "management"),
    Link("eth0", "br-client", "10.213.1", "client"),
    Link("eth1", "br-fwd", "10.213.2", "forward"),
    Link("eth2", "br-ckpt", "10.213.3", "checkpoint"),
)
LINKS_BY_NAME = {link.name: link for link in LINKS}


@dataclass(frozen=True)
class Host:
    name: str
    octet: int
    group: str

    @property
    def netns(self) -> str:
        return self.name

    def address(self, link: str) -> str:
        return f"{LINKS_BY_NAME[link].subnet}.{self.octet}"

    def mac(self, link: str) -> str:
        """Fixed per interface, like a real NIC's: a rebooted host keeps its MACs, so peers' ARP caches stay right."""
        return f"02:13:00:00:{LINKS.index(LINKS_BY_NAME[link]):02x}:{self.octet:02x}"

    def peer(self, link: str) -> str:
        """The switch-side end of the host's link (at most 15 characters)."""
        return f"{self.name[-1]}-{link}"


HOSTS = (Host("colo-a", 11, "colo_primary"), Host("colo-b", 12, "colo_secondary"))
HOSTS_BY_NAME = {host.name: host for host in HOSTS}

CLIENT_ADDR = "10.213.1.100/24"
GUEST_ADDR = "10.213.1.10"
GUEST_MAC = "52:54:00:13:01:10"
