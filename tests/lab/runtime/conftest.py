"""Fixtures for the runtime tests that run a real QEMU (>= 11).

tests/conftest.py makes `ansible_collections.colo.ft` importable under plain pytest.
"""
from __future__ import annotations

import os
import shutil
import sys
import subprocess
import tempfile
import uuid

import pytest

# -- fixtures for tests that run a real QEMU (>= 11) -----------------------------------
# Needs root, /dev/net/tun, `ip`, qemu-system-x86_64 and qemu-img. The tests create
# their own bridge/taps (no carrier, no traffic: the guest is firmware only) and
# remove them; run them inside a network namespace or a lab host.

QEMU = os.environ.get("COLO_QEMU", "qemu-system-x86_64")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which(QEMU) or not shutil.which("qemu-img"):
        return f"{QEMU}/qemu-img not installed"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    if not shutil.which("ip"):
        return "no ip (iproute2)"
    from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
    from ansible_collections.colo.ft.plugins.module_utils.colo.guard import probe_binary
    try:
        version = probe_binary(QEMU)
    except ColoError as exc:
        return str(exc)
    if version.major < 11:
        # e.g. a Debian 12 machine (QEMU 7.2): use run-in-netns --chroot with a trixie tree
        return f"QEMU {version} found, these tests need >= 11 (see run-in-netns --chroot)"
    return None


def pytest_collection_modifyitems(config, items):
    # This hook sees every collected item of the session: mark only ours.
    why = _missing()
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    if why:
        for item in items:
            if str(item.path).startswith(here):
                item.add_marker(pytest.mark.skip(reason=f"real-QEMU test: {why}"))


@pytest.fixture
def workdir():
    """Short path (unix sockets are limited to 108 bytes), removed afterwards."""
    d = tempfile.mkdtemp(prefix="colo-rt-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def disk(workdir):
    path = os.path.join(workdir, "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"], check=True)
    return path


@pytest.fixture
def bridge():
    name = "ctbr" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], check=False)


@pytest.fixture
def taps():
    """Names of taps to delete after the test."""
    names: list[str] = []
    yield names
    for n in names:
        subprocess.run(["ip", "link", "del", n], check=False, capture_output=True)


@pytest.fixture
def make_spec(workdir, disk, taps):
    """VMSpec factory: firmware-only guest (no kernel) on the test disk, own tap name."""
    from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

    def make(name: str = "rtvm", state: str = "state", **kw):
        tap = kw.pop("tap", "ct" + uuid.uuid4().hex[:8])
        taps.append(tap)
        base = dict(name=name, disk=disk, mac="52:54:00:13:01:10", boot="disk", memory_mib=64,
                    qemu_binary=QEMU, forward_addr="127.0.0.1", checkpoint_addr="127.0.0.1",
                    state_root=os.path.join(workdir, state), tap=tap)
        base.update(kw)
        return VMSpec(**base)
    return make


@pytest.fixture
def launcher():
    """Daemon-mode launcher (chroots and containers without systemd) that stops what it started."""
    from ansible_collections.colo.ft.plugins.module_utils.colo.launcher import Launcher

    use_systemd = {"1": True, "0": False}.get(os.environ.get("COLO_USE_SYSTEMD", ""), None)
    lau = Launcher(use_systemd=use_systemd, start_timeout=30)
    started = []
    orig = lau.start

    def start(spec, role, **kw):
        started.append(spec)
        return orig(spec, role, **kw)
    lau.start = start  # type: ignore[method-assign]
    yield lau
    for spec in started:
        try:
            lau.stop(spec, timeout=5)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass


# -- the COLO environment of the sequence tests (colo_env.py) ------------------------------


@pytest.fixture(scope="module")
def env():
    """colo_env.Env from the environment: network, QEMU user, TLS files; per test module."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from colo_env import Env  # pylint: disable=import-outside-toplevel  # needs the path above

    e = Env.from_environ()
    os.makedirs(e.work, exist_ok=True)
    e.net_up()
    e.user_up()
    yield e
    e.net_down()


@pytest.fixture
def vms(env):  # pylint: disable=redefined-outer-name  # the fixture above
    """Specs of the VMs a test starts; all stopped (and their taps removed) afterwards."""
    specs = []
    yield specs
    for s in specs:
        env.stop(s)
