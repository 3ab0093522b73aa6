"""The lab's wiring: network namespaces, veth cables and switch bridges.

Every switch lives in SWITCH_NS, so the machine's own namespace gets a single management veth.
A host's namespace is made fresh each time the host boots (a power cut loses runtime network
state, as on a real host); the switch side never changes while the lab is up, except that a crash
takes the host's switch ports down first (unplug_host), so that its dying kernel sends nothing.
"""

from __future__ import annotations

from pathlib import Path

from .config import (CLIENT_ADDR, CLIENT_NS, LINKS, LINKS_BY_NAME, MACHINES, MGMT_ADDR, MGMT_IF, STRANGER_NS, STRANGER_OCTET,
                     SWITCH_NS, Host)
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
    _ensure_stranger()


def _ensure_stranger() -> None:
    """STRANGER_NS: a machine that is neither host, with an address on the forward and the checkpoint link."""
    _add_netns(STRANGER_NS)
    for name in ("eth1", "eth2"):
        link = LINKS_BY_NAME[name]
        if not link_exists(name, STRANGER_NS):
            _cable(name, STRANGER_NS, f"stranger-{name}", SWITCH_NS)
            run(["ip", "addr", "add", f"{link.subnet}.{STRANGER_OCTET}/24", "dev", name], netns=STRANGER_NS)
        run(["ip", "link", "set", name, "up"], netns=STRANGER_NS)
        _plug(f"stranger-{name}", link.bridge)


def _plug(port: str, bridge: str) -> None:
    run(["ip", "link", "set", port, "master", bridge, "up"], netns=SWITCH_NS)


def ensure_host_net(host: Host) -> None:
    """Create the host's namespace with its links, if it is not there already."""
    if netns_exists(host.netns) and link_exists("mgmt0", host.netns):
        return
    _add_netns(host.netns)
    for link in (LINKS_BY_NAME[name] for name in host.links):
        peer = host.peer(link.name)
        if link_exists(peer, SWITCH_NS):  # left over from an interrupted start
            run(["ip", "link", "del", peer], netns=SWITCH_NS)
        _cable(link.name, host.netns, peer, SWITCH_NS, mac=host.mac(link.name))
        _plug(peer, link.bridge)
        run(["ip", "addr", "add", f"{host.address(link.name)}/24", "dev", link.name], netns=host.netns)
        run(["ip", "link", "set", link.name, "up"], netns=host.netns)


def link_names(ip_link_output: str) -> set[str]:
    """Interface names in `ip -o link show` output ("5: a-eth0@if4: <...>" gives a-eth0)."""
    names = set()
    for line in ip_link_output.splitlines():
        fields = line.split(": ", 2)
        if len(fields) >= 2 and fields[0].strip().isdigit():
            names.add(fields[1].split("@", 1)[0])
    return names


def ports_down_batch(ports: list[str]) -> str:
    """An `ip -batch` script that takes the given links down."""
    return "".join(f"link set {port} down\n" for port in ports)


def unplug_host(host: Host) -> list[str]:
    """Take the switch-side end of every cable of the host down, all in one `ip -batch`; the ports taken down.

    From then on the switches drop whatever the host sends (a veth whose peer is down delivers
    nothing), so no FIN, RST or ARP reply of its kernel reaches a peer: what a power cut does to a NIC.
    """
    if not netns_exists(SWITCH_NS):
        return []
    present = link_names(run(["ip", "-o", "link", "show"], capture=True, netns=SWITCH_NS).stdout)
    ports = [host.peer(name) for name in host.links if host.peer(name) in present]
    if ports:
        run(["ip", "-batch", "-"], input=ports_down_batch(ports), capture=True, netns=SWITCH_NS)
    return ports


def drop_host_net(host: Host) -> None:
    """Delete the host's namespace; its veths (and their switch ends) go with it."""
    if netns_exists(host.netns):
        run(["ip", "netns", "del", host.netns])
    for name in host.links:  # a namespace still held by a process keeps its veths: remove them
        peer = host.peer(name)
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


def set_isolated(port: str, isolated: bool) -> None:
    """Isolate a client-switch port: isolated ports reach no other isolated port, but every other port still."""
    if not link_exists(port, SWITCH_NS):
        raise LabError(f"no such lab link end {port}: is the lab up?")
    run(["bridge", "link", "set", "dev", port, "isolated", "on" if isolated else "off"], netns=SWITCH_NS)


def port_is_isolated(port: str) -> bool:
    out = run(["bridge", "-d", "link", "show", "dev", port], capture=True, check=False, netns=SWITCH_NS).stdout
    return "isolated on" in out


def teardown() -> None:
    for host in MACHINES:
        drop_host_net(host)
    for name in (CLIENT_NS, STRANGER_NS, SWITCH_NS):
        if netns_exists(name):
            run(["ip", "netns", "del", name])
    if link_exists(MGMT_IF):
        run(["ip", "link", "del", MGMT_IF], check=False, capture=True)
