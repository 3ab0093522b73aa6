"""Fixed facts of the built-in lab: names, links, addresses and paths.

docs/lab-contract.md is the human-readable form of this file; keep both in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Several labs can run side by side (e.g. two engineers on one machine): COLO_LAB_INSTANCE=N
# (0-9) gives lab N its own names, state and addresses (10.213+N.x.y). The image cache is shared.
INSTANCE = int(os.environ.get("COLO_LAB_INSTANCE", "0"))
if not 0 <= INSTANCE <= 9:
    raise SystemExit("colo-lab: COLO_LAB_INSTANCE must be a number from 0 to 9")
_SUFFIX = f"-{INSTANCE}" if INSTANCE else ""
NET = f"10.{213 + INSTANCE}"

CACHE = Path(os.environ.get("COLO_LAB_CACHE", "/var/cache/colo-lab"))
STATE = Path(os.environ.get("COLO_LAB_STATE", f"/var/lib/colo-lab{_SUFFIX}"))
FREEZER = Path(f"/sys/fs/cgroup/freezer/colo-lab{_SUFFIX}")

SWITCH_NS = f"colo-lab-sw{_SUFFIX}"
CLIENT_NS = f"colo-client{_SUFFIX}"
# A third machine on the forward and checkpoint links (neither host): the firewall tests connect from it.
STRANGER_NS = f"colo-stranger{_SUFFIX}"
MGMT_IF = f"colo-lab{INSTANCE}"  # the machine's only added interface: ssh to the hosts
MGMT_ADDR = f"{NET}.0.1/24"

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
    Link("mgmt0", "br-mgmt", f"{NET}.0", "management"),
    Link("eth0", "br-client", f"{NET}.1", "client"),
    Link("eth1", "br-fwd", f"{NET}.2", "forward"),
    Link("eth2", "br-ckpt", f"{NET}.3", "checkpoint"),
)
LINKS_BY_NAME = {link.name: link for link in LINKS}


@dataclass(frozen=True)
class Host:
    name: str
    octet: int
    group: str
    links: tuple[str, ...] = tuple(link.name for link in LINKS)  # the interfaces it has

    @property
    def netns(self) -> str:
        return f"{self.name}{_SUFFIX}"

    def address(self, link: str) -> str:
        return f"{LINKS_BY_NAME[link].subnet}.{self.octet}"

    def mac(self, link: str) -> str:
        """Fixed per interface, like a real NIC's: a rebooted host keeps its MACs, so peers' ARP caches stay right."""
        return f"02:13:00:00:{LINKS.index(LINKS_BY_NAME[link]):02x}:{self.octet:02x}"

    def peer(self, link: str) -> str:
        """The switch-side end of the host's link (at most 15 characters)."""
        return f"{self.name[-1]}-{link}"


HOSTS = (Host("colo-a", 11, "colo_primary"), Host("colo-b", 12, "colo_secondary"))  # the COLO pair
HOSTS_BY_NAME = {host.name: host for host in HOSTS}
# The third machine: the quorum witness (corosync-qnetd), on the management net and the client switch only.
ARBITER = Host("colo-arbiter", 13, "colo_arbiter", ("mgmt0", "eth0"))
MACHINES = (*HOSTS, ARBITER)  # every container of the lab
MACHINES_BY_NAME = {host.name: host for host in MACHINES}

CLIENT_ADDR = f"{NET}.1.100/24"
STRANGER_OCTET = 99  # its address on eth1 and eth2 (the forward and checkpoint links)
GUEST_ADDR = f"{NET}.1.10"
GUEST_MAC = "52:54:00:13:01:10"
