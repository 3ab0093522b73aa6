"""colo.ft.bridge's plan: the ip -batch lines from a snapshot of the links (pure)."""
from __future__ import annotations

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import bridges
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError

LINKS = bridges.Links(
    links={"eth0": {"ifname": "eth0", "flags": ["UP"]}, "eth1": {"ifname": "eth1", "flags": []},
           "br1": {"ifname": "br1", "flags": ["UP"], "linkinfo": {"info_kind": "bridge"}},
           "tun0": {"ifname": "tun0", "flags": ["UP"], "linkinfo": {"info_kind": "tun"}}},
    addrs={"eth0": ["10.213.1.11/24"], "eth1": [], "br1": [], "tun0": []})


def test_a_new_bridge_takes_the_port_and_its_address():
    assert bridges.plan(LINKS, "br0", "present", ["eth0"], "eth0") == [
        "link add br0 type bridge", "link set br0 up", "link set eth0 master br0",
        "addr flush dev eth0", "addr add 10.213.1.11/24 dev br0"]


def test_a_bridge_as_asked_needs_nothing():
    done = bridges.Links(links={**LINKS.links, "eth1": {"ifname": "eth1", "flags": ["UP"], "master": "br1"}},
                         addrs=LINKS.addrs)
    assert bridges.plan(done, "br1", "present", ["eth1"], None) == []
    assert done.describe("br1") == {"name": "br1", "ports": ["eth1"], "addresses": [], "up": True}
    assert bridges.plan(done, "br1", "absent", [], None) == ["link del br1"]
    assert bridges.plan(done, "br9", "absent", [], None) == []


@pytest.mark.parametrize("name,ports,match", [
    ("br-with-a-long-name", [], "not a valid interface name"),
    ("tun0", [], "tun0 exists and is not a bridge"),
    ("br0", ["eth7"], "interface eth7 does not exist"),
])
def test_refusals(name, ports, match):
    with pytest.raises(ColoError, match=match):
        bridges.plan(LINKS, name, "present", ports, None)
