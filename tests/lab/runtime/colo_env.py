"""Environment of the runtime lab tests: VMs started with the real launcher and QEMU.

Both QEMUs run on this host (forward and checkpoint addresses default to
127.0.0.1). Settings come from the environment:

  COLO_RT_GUEST       directory of the test guest (lab/guest/build OUTDIR); default
                      /srv/colo-lab/guest if present, else a firmware-only VM
  COLO_RT_STATE       state root of the VMs, on tmpfs (overlays live there);
                      default /dev/shm/colo-ft-rt
  COLO_RT_FORWARD     primary's forward-link address (default 127.0.0.1)
  COLO_RT_CHECKPOINT  secondary's checkpoint-link address (default 127.0.0.1)
  COLO_RT_PORT_BASE   first of the four COLO ports (default: QEMU docs' 9003...)
  COLO_RT_NET=1       build a client bridge, an isolated bridge and a client veth
                      (10.213.1.100/24) here; refused in the machine's own network
                      namespace (run tests/lab/runtime/run-in-netns)
  COLO_RT_METRICS     JSON file the measurements are written to
  COLO_RT_TLS=0       cleartext COLO channels (default: TLS with a throw-away CA, as the roles set up)
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from colo_lab import x509

from ansible_collections.colo.ft.plugins.module_utils.colo.launcher import Launcher
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

CLIENT_BRIDGE = "rtc-client"
ISOLATED_BRIDGE = "rtc-iso"
CLIENT_VETH = "rtc-cl0"
CLIENT_ADDR = "10.213.1.100/24"
GUEST_IP = "10.213.1.10"
GUEST_MAC = "52:54:00:13:01:10"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 3))


# Inode of the kernel's initial network namespace (PROC_NET_INIT_INO).
INIT_NETNS = "net:[4026531833]"


def in_own_netns() -> bool:
    """True unless this process is in the machine's initial network namespace
    (or PID 1's, where that is readable)."""
    mine = os.readlink("/proc/self/ns/net")
    try:
        if mine == os.readlink("/proc/1/ns/net"):
            return False
    except OSError:
        pass  # PID 1 hidden from us (sandboxes): the initial namespace's fixed inode still tells
    return mine != INIT_NETNS


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res


@dataclass
class Env:
    guest_dir: str | None
    guest: dict[str, Any] | None
    state_root: str
    work: str
    forward: str
    checkpoint: str
    port_base: int | None
    net: bool
    tls: bool = True
    qemu_user: str | None = None
    launcher: Launcher = field(default_factory=lambda: Launcher(use_systemd=False, start_timeout=60))
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_environ(cls) -> Env:
        gdir = os.environ.get("COLO_RT_GUEST") or ("/srv/colo-lab/guest" if os.path.isdir("/srv/colo-lab/guest") else None)
        guest = None
        if gdir:
            with open(os.path.join(gdir, "guest.json"), encoding="utf-8") as f:
                guest = json.load(f)
        state = os.environ.get("COLO_RT_STATE", "/dev/shm/colo-ft-rt")
        pb = os.environ.get("COLO_RT_PORT_BASE")
        return cls(
            guest_dir=gdir,
            guest=guest,
            state_root=state,
            work=os.path.join(state, "work"),
            forward=os.environ.get("COLO_RT_FORWARD", "127.0.0.1"),
            checkpoint=os.environ.get("COLO_RT_CHECKPOINT", "127.0.0.1"),
            port_base=int(pb) if pb else None,
            net=os.environ.get("COLO_RT_NET") == "1",
            tls=os.environ.get("COLO_RT_TLS", "1") != "0",
            # QEMU drops root to this user, as on the lab hosts (COLO_RT_QEMU_USER= empty: QEMU stays root).
            qemu_user=os.environ.get("COLO_RT_QEMU_USER", "colo-qemu") or None,
        )

    def user_up(self) -> None:
        """The system user QEMU runs as (the colo_host role makes it on a host; the chroot is thrown away)."""
        if self.qemu_user and sh("id", "-u", self.qemu_user, check=False).returncode != 0:
            sh("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", self.qemu_user)

    # -- network ---------------------------------------------------------------

    def net_up(self) -> None:
        if not self.net:
            return
        if not in_own_netns():
            raise RuntimeError("COLO_RT_NET=1 in the machine's own network namespace: use run-in-netns")
        self.net_down()
        for br in (CLIENT_BRIDGE, ISOLATED_BRIDGE):
            sh("ip", "link", "add", br, "type", "bridge")
            # The client's address lives in this namespace too: without this the
            # bridges themselves answer the guest's ARP for it with their own MAC,
            # which changes as taps join, and the guest loses the client for the
            # ~30 s its ARP entry lives (a real client is on another host).
            sh("sysctl", "-q", "-w", f"net.ipv4.conf.{br}.arp_ignore=1")
            sh("ip", "link", "set", br, "up")
        sh("ip", "link", "add", CLIENT_VETH, "type", "veth", "peer", "name", CLIENT_VETH + "p")
        sh("ip", "link", "set", CLIENT_VETH + "p", "master", CLIENT_BRIDGE)
        sh("ip", "link", "set", CLIENT_VETH + "p", "up")
        sh("ip", "addr", "add", CLIENT_ADDR, "dev", CLIENT_VETH)
        sh("ip", "link", "set", CLIENT_VETH, "up")

    def net_down(self) -> None:
        if not self.net or not in_own_netns():
            return
        for dev in (CLIENT_VETH, CLIENT_BRIDGE, ISOLATED_BRIDGE):
            sh("ip", "link", "del", dev, check=False)

    # -- VMs ---------------------------------------------------------------------

    def base_image(self) -> str:
        """The disk every VM of a test starts from (guest's, or an empty one)."""
        os.makedirs(self.work, exist_ok=True)
        path = os.path.join(self.work, "base.qcow2")
        if not os.path.exists(path):
            if self.guest_dir:
                shutil.copyfile(os.path.join(self.guest_dir, self.guest["disk"]), path)
            else:
                sh("qemu-img", "create", "-q", "-f", "qcow2", path, "64M")
        return path

    @property
    def ca_dir(self) -> str:
        return os.path.join(self.work, "ca")

    def tls_dir(self) -> str | None:
        """x509 files both QEMUs use (one host: one certificate for its addresses), or None."""
        if not self.tls:
            return None
        path = os.path.join(self.work, "tls")
        if not os.path.exists(os.path.join(path, "server-cert.pem")):
            x509.make_ca(self.ca_dir)
            x509.make_host_dir(self.ca_dir, path, "runtime", sorted({self.forward, self.checkpoint}))
        return path

    def spec(self, name: str, bridge: str | None, firmware_only: bool = False) -> VMSpec:
        disk = os.path.join(self.work, f"{name}.qcow2")
        shutil.copyfile(self.base_image(), disk)
        kw: dict[str, Any] = {}
        if self.guest and not firmware_only:
            g = self.guest
            kw = {
                "boot": "kernel",
                "kernel": os.path.join(self.guest_dir, g["kernel"]),
                "initrd": os.path.join(self.guest_dir, g["initrd"]),
                "append": f"{g['cmdline']} colo.ip={g['ip']}",
                "memory_mib": int(g.get("memory_mib", 256)),
                "nic_model": g.get("nic_model", "e1000"),
            }
        else:
            kw = {"boot": "disk", "memory_mib": 128}
        return VMSpec(
            name=name,
            disk=disk,
            mac=GUEST_MAC,
            accel="tcg",
            bridge=bridge if self.net else None,
            forward_addr=self.forward,
            checkpoint_addr=self.checkpoint,
            port_base=self.port_base,
            state_root=self.state_root,
            tls_dir=self.tls_dir(),
            qemu_user=self.qemu_user,
            **kw,
        )

    def start(self, spec: VMSpec, role: str, paused: bool = False, proxy: bool = True) -> int:
        res = self.launcher.start(spec, role, paused=paused, proxy=proxy)
        assert res.pid, f"no pid for {spec.name}"
        return res.pid

    def has_guest(self, spec: VMSpec) -> bool:
        return spec.boot == "kernel"

    def wait_guest_ready(self, spec: VMSpec, timeout: float = 90.0) -> float:
        """Seconds until the guest printed its ready marker on the serial console."""
        marker = (self.guest or {}).get("ready_marker", "COLO-GUEST READY")
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                with open(spec.serial_path, errors="replace") as f:
                    if marker in f.read():
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"guest {spec.name} not ready after {timeout}s")

    def pid(self, spec: VMSpec) -> int | None:
        return self.launcher.status(spec).pid

    def stop(self, spec: VMSpec) -> None:
        self.launcher.stop(spec, timeout=5.0, remove_tap=True)

    def record(self, key: str, value: Any) -> None:
        self.metrics[key] = value
        path = os.environ.get("COLO_RT_METRICS") or os.path.join(REPO, "tests", "output", "runtime-colo-metrics.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old: dict[str, Any] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                try:
                    old = json.load(f)
                except ValueError:
                    old = {}
        old[key] = value
        with open(path, "w", encoding="utf-8") as f:
            json.dump(old, f, indent=2, sort_keys=True)


def connect(spec: VMSpec) -> QMPClient:
    q = QMPClient(spec.qmp_path, timeout=30.0)
    q.connect()
    return q


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    for _attempt in range(200):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
                    return
        except OSError:
            return
        time.sleep(0.01)


# -- guest services ------------------------------------------------------------------


def http_get(path: str = "/", timeout: float = 2.0) -> str:
    with socket.create_connection((GUEST_IP, 80), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {GUEST_IP}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    text = data.decode(errors="replace")
    if not text.startswith("HTTP/1.") or " 200 " not in text.split("\r\n", 1)[0]:
        raise RuntimeError(f"bad HTTP answer: {text[:80]!r}")
    return text


def ledger(cmds: list[str], timeout: float = 10.0) -> list[str]:
    """Send ledger commands on one connection; returns all answer lines."""
    with socket.create_connection((GUEST_IP, 7000), timeout=timeout) as s:
        f = s.makefile("rwb")
        out: list[str] = []
        for c in cmds:
            f.write(c.encode() + b"\n")
            f.flush()
            while True:
                line = f.readline().decode().rstrip("\n")
                if not line:
                    raise RuntimeError(f"ledger closed the connection after {c!r}")
                out.append(line)
                if not c.startswith("GET") or line.startswith("END"):
                    break
        return out


class Prober(threading.Thread):
    """HTTP GET / in a loop; remembers (start time, ok) of every request."""

    def __init__(self, interval: float = 0.05, timeout: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.timeout = interval, timeout
        self.results: list[tuple[float, float, bool]] = []  # (start, end, ok)
        self._stop_ev = threading.Event()

    def run(self) -> None:
        while not self._stop_ev.is_set():
            t = time.monotonic()
            try:
                http_get("/", self.timeout)
                ok = True
            except Exception:  # noqa: BLE001 - any failure is a failed request; the thread must live on
                ok = False
            self.results.append((t, time.monotonic(), ok))
            self._stop_ev.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(5)

    def first_ok_after(self, t: float) -> float | None:
        """End time of the first successful request started after t."""
        return next((end for start, end, ok in self.results if ok and start >= t), None)

    def failures(self) -> int:
        return sum(1 for result in self.results if not result[2])
