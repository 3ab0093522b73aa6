"""Host plumbing (host.py) with `ip` and `qemu-img` stood in for."""
from __future__ import annotations

import json
import subprocess

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import host
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec


class FakeIp:
    """`ip` over a dict of links; records the commands run."""

    def __init__(self, links):
        self.links = links
        self.ran = []

    def __call__(self, argv, timeout=60.0, **kw):
        self.ran.append(argv)
        if argv[:5] == ["ip", "-j", "-d", "link", "show"]:
            name = argv[-1]
            if name not in self.links:
                return subprocess.CompletedProcess(argv, 1, "", f'Device "{name}" does not exist.\n')
            return subprocess.CompletedProcess(argv, 0, json.dumps([self.links[name]]), "")
        if argv[:3] == ["ip", "link", "set"] and "master" in argv:
            name = argv[argv.index("dev") + 1] if "dev" in argv else argv[3]
            self.links.setdefault(name, {"ifname": name})["master"] = argv[-1]
        return subprocess.CompletedProcess(argv, 0, "", "")


@pytest.fixture
def ip(monkeypatch):
    fake = FakeIp({"br-client": {"ifname": "br-client", "linkinfo": {"info_kind": "bridge"}},
                   "br-iso": {"ifname": "br-iso", "linkinfo": {"info_kind": "bridge"}},
                   "tap0": {"ifname": "tap0", "master": "br-iso", "linkinfo": {"info_kind": "tun"}},
                   "eth0": {"ifname": "eth0"}})
    monkeypatch.setattr(host.proc, "run", fake)
    return fake


def make(**kw) -> VMSpec:
    base = dict(name="guest1", disk="/var/lib/colo/guest1.qcow2", mac="52:54:00:13:01:10", boot="disk",
                bridge="br-client", forward_addr="127.0.0.1")
    base.update(kw)
    return VMSpec(**base)


def test_link_info_and_bridge_of(ip):
    assert host.link_info("nothere") is None
    assert host.link_info("tap0")["master"] == "br-iso"
    assert host.bridge_of("tap0") == "br-iso" and host.bridge_of("eth0") is None
    with pytest.raises(ColoError, match="network interface nothere not found: .*Device"):
        host.bridge_of("nothere")


def test_move_tap(ip):
    assert host.move_tap("tap0", "br-client") == ["ip link set tap0 master br-client (was br-iso)"]
    assert host.move_tap("tap0", "br-client") == []


def test_plumb_tap(ip):
    host.plumb_tap(make())
    assert ip.ran[-3:] == [["ip", "tuntap", "add", "dev", "colo-guest1", "mode", "tap"],
                           ["ip", "link", "set", "dev", "colo-guest1", "master", "br-client"],
                           ["ip", "link", "set", "dev", "colo-guest1", "up"]]
    ip.ran.clear()
    host.plumb_tap(make(tap="tap0"))  # exists: not created again
    assert ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"] not in ip.ran
    with pytest.raises(LaunchError, match="bridge br-none does not exist"):
        host.plumb_tap(make(bridge="br-none"))
    with pytest.raises(LaunchError, match="interface eth0 exists and is not a tap"):
        host.plumb_tap(make(tap="eth0"))


def test_create_overlays_reports_unreadable_image(tmp_path, monkeypatch):
    def fail(argv, timeout=60.0, **kw):
        return subprocess.CompletedProcess(argv, 1, "", "Could not open 'x'")
    monkeypatch.setattr(host.proc, "run", fail)
    monkeypatch.setattr("ansible_collections.colo.ft.plugins.module_utils.colo.host.proc.run", fail)
    with pytest.raises(LaunchError, match="cannot read the disk image size: qemu-img info .* failed: Could not open"):
        host.create_overlays(make(state_root=str(tmp_path)))


def test_check_ports_free_names_the_busy_port():
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = make(mirror_port=port, compare_port=port + 1 if port < 65535 else port - 1)
        with pytest.raises(LaunchError, match=f"mirror port {port} on 127.0.0.1"):
            host.check_ports_free(spec, "primary")
