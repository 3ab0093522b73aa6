"""The test guest (lab/guest/build) boots with the launcher's argv and answers HTTP.

Skipped unless the guest files exist (COLO_RT_GUEST or COLO_GUEST_DIR, default /srv/colo-lab/guest as in
docs/lab-contract.md). The guest gets an address of a private test subnet on a bridge
the test creates, so nothing leaves the test's own bridge.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

GUEST = os.environ.get("COLO_RT_GUEST") or os.environ.get("COLO_GUEST_DIR", "/srv/colo-lab/guest")
NET = "192.168.213"
pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(GUEST, f)) for f in ("vmlinux", "initrd.img", "disk.qcow2", "guest.json")),
    reason=f"test guest not found in {GUEST} (build it with lab/guest/build)")


def http_get(host: str, timeout: float) -> tuple[str, float]:
    t = time.monotonic()
    with socket.create_connection((host, 80), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0].decode(), time.monotonic() - t


def wait_ready(serial: str, marker: str, timeout: float) -> float:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if os.path.exists(serial) and marker in open(serial, errors="replace").read():
            return time.monotonic() - t
        time.sleep(0.1)
    raise AssertionError(f"no {marker!r} on the serial console within {timeout}s:\n" + open(serial).read()[-2000:])


@pytest.fixture
def guest(workdir):
    meta = json.load(open(os.path.join(GUEST, "guest.json")))
    disk = os.path.join(workdir, "guest.qcow2")
    shutil.copyfile(os.path.join(GUEST, "disk.qcow2"), disk)
    return meta, disk


@pytest.mark.parametrize("role,proxy", [("plain", True), ("primary", False)])
def test_guest_boots_and_serves(role, proxy, guest, make_spec, launcher, bridge, capsys):
    meta, disk = guest
    spec = _guest_spec(meta, disk, make_spec, bridge, f"g{role}")
    t = time.monotonic()
    launcher.start(spec, role, proxy=proxy)
    boot = wait_ready(spec.serial_path, meta["ready_marker"], 120)
    status, first = "", 0.0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:   # ARP/first connection may need a moment
        try:
            status, first = http_get(f"{NET}.10", timeout=10)
            break
        except OSError:
            time.sleep(0.5)
    assert status.startswith("HTTP/1.") and " 200" in status, status
    again = [http_get(f"{NET}.10", timeout=10)[1] for _req in range(5)]
    with capsys.disabled():
        print(f"\n  {role} (proxy={proxy}): ready {boot:.1f}s after start ({time.monotonic() - t:.1f}s total); "
              f"first GET {first * 1000:.0f} ms, next GETs " + ", ".join(f"{x * 1000:.0f}" for x in again) + " ms")


def test_primary_with_proxy_is_silent_until_protected(guest, make_spec, launcher, bridge):
    """QEMU 11 behaviour the launcher's proxy=False exists for: colo-compare keeps the
    guest's output until a checkpoint, so without a secondary nothing comes out."""
    meta, disk = guest
    spec = _guest_spec(meta, disk, make_spec, bridge, "gproxy")
    launcher.start(spec, "primary")
    wait_ready(spec.serial_path, meta["ready_marker"], 120)
    with pytest.raises(OSError):
        http_get(f"{NET}.10", timeout=8)


def _guest_spec(meta, disk, make_spec, bridge, name):
    subprocess.run(["ip", "addr", "add", f"{NET}.1/24", "dev", bridge], check=True)
    return make_spec(name=name, disk=disk, boot="kernel", kernel=os.path.join(GUEST, meta["kernel"]),
                     initrd=os.path.join(GUEST, meta["initrd"]), memory_mib=meta["memory_mib"],
                     mac=meta["mac"], nic_model=meta["nic_model"], bridge=bridge,
                     append=f"{meta['cmdline']} colo.ip={NET}.10/24")
