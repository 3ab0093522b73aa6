"""The lab's wiring: network namespaces, veth cables and switch bridges.

Every switch lives in SWITCH_NS, so the machine's own namespace gets a single management veth.
A host's namespace is made fresh each time the host boots (a power cut loses runtime network
state, as on a real host); the switch side never changes while the lab is up.
"""

from __future__ import annotations

from pathlib import Path

from .config import CLIENT_ADDR, CLIENT_NS, HOSTS, LINKS, MGMT_ADDR, MGMT_IF, SWITCH_NS, Host
from .util import LabError, run


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def link_exists(name: str, netns: str | None = None) -> bool:
    return run(["ip", "link", "show", name], check=False, capture=True, netns=netns).returncode == 0


def _add_netns(name: str) -> None:
    if not netns_exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], netns=name)


def _cable(near: str, near_ns: str | None, far: str, far_ns: str, mac: str | None = None) -> None:
    """A veth pair: `near` in near_ns (None: the machine), `far` in far_ns."""
    argv = ["ip", "link", "add", near]
    if near_ns:
        argv += ["netns", near_ns]
    if mac:
        argv += ["address", mac]
    run(argv + ["type", "veth", "peer", "name", far, "netns", far_ns])


def ensure_switches() -> None:
    _add_netns(SWITCH_NS)
    for link in LINKS:
        if not link_exists(link.bridge, SWITCH_NS):
            run(["ip", "link", "add", link.bridge, "type", "bridge"], netns=SWITCH_NS)
        run(["ip", "link", "set", link.bridge, "up"], netns=SWITCH_NS)
    if not link_exists(MGMT_IF):
        _cable(MGMT_IF, None, "mgmt-up", SWITCH_NS)
        run(["ip", "addr", "add", MGMT_ADDR, "dev", MGMT_IF])
    run(["ip", "link", "set", MGMT_IF, "up"])
    _plug("mgmt-up", "br-mgmt")
    _add_netns(CLIENT_NS)
    if not link_exists("eth0", CLIENT_NS):
        _cable("eth0", CLIENT_NS, "client-eth0", SWITCH_NS)
        run(["ip", "addr", "add", CLIENT_ADDR, "dev", "eth0"], netns=CLIENT_NS)
    run(["ip", "link", "set", "eth0", "up"], netns=CLIENT_NS)
    _plug("client-eth0", "br-client")


def _plug(port: str, bridge: str) -> None:
    run(["ip", "link", "set", port, "master", bridge, "up"], netns=SWITCH_NS)


def ensure_host_net(host: Host) -> None:
    """Create the host's namespace with its four links, if it is not there already."""
    if netns_exists(host.netns) and link_exists("mgmt0", host.netns):
        return
    _add_netns(host.netns)
    for link in LINKS:
        peer = host.peer(link.name)
        if link_exists(peer, SWITCH_NS):  # left over from an interrupted start
            run(["ip", "link", "del", peer], netns=SWITCH_NS)
        _cable(link.name, host.netns, peer, SWITCH_NS, mac=host.mac(link.name))
        _plug(peer, link.bridge)
        run(["ip", "addr", "add", f"{host.address(link.name)}/24", "dev", link.name], netns=host.netns)
        run(["ip", "link", "set", link.name, "up"], netns=host.netns)


def drop_host_net(host: Host) -> None:
    """Delete the host's namespace; its veths (and their switch ends) go with it."""
    if netns_exists(host.netns):
        run(["ip", "netns", "del", host.netns])
    for link in LINKS:  # a namespace still held by a process keeps its veths: remove them
        peer = host.peer(link.name)
        if netns_exists(SWITCH_NS) and link_exists(peer, SWITCH_NS):
            run(["ip", "link", "del", peer], netns=SWITCH_NS, check=False, capture=True)


def set_port(port: str, up: bool) -> None:
    """Cut or heal a cable by taking its switch-side end down or up (both ends lose carrier)."""
    if not link_exists(port, SWITCH_NS):
        raise LabError(f"no such lab link end {port}: is the lab up?")
    run(["ip", "link", "set", port, "up" if up else "down"], netns=SWITCH_NS)


def port_is_up(port: str) -> bool:
    out = run(["ip", "-o", "link", "show", port], capture=True, check=False, netns=SWITCH_NS).stdout
    return "state DOWN" not in out and ",UP" in out


def teardown() -> None:
    for host in HOSTS:
        drop_host_net(host)
    for name in (CLIENT_NS, SWITCH_NS):
        if netns_exists(name):
            run(["ip", "netns", "del", name])
    if link_exists(MGMT_IF):
        run(["ip", "link", "del", MGMT_IF], check=False, capture=True)
