"""The test guest boots under TCG and its services work (no lab needed, loopback only).

Builds the guest with lab/guest/build (or uses a prebuilt one from $COLO_GUEST_DIR),
boots it with the machine's QEMU, user-mode networking restricted to the guest
(restrict=on) with host forwards on 127.0.0.1 only, and checks HTTP, the ledger
and that acknowledged records survive killing QEMU.
Needs: apt-get install qemu-system-x86 (and the build's packages, see lab/guest/README.md).
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from colo_lab.ledger import LedgerClient, LedgerProtocolError

REPO = Path(__file__).resolve().parents[2]
QEMU = shutil.which("qemu-system-x86_64")
READY_TIMEOUT = 120  # s; about 5 s on an idle machine


def _die_with_parent():
    # PR_SET_PDEATHSIG: QEMU goes away even if pytest itself is killed.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Guest:
    """One QEMU process running the test guest on a copy of its disk."""

    def __init__(self, guest_dir: Path, workdir: Path):
        self.spec = json.loads((guest_dir / "guest.json").read_text())
        self.dir, self.workdir = guest_dir, workdir
        self.disk = workdir / "disk.qcow2"
        shutil.copyfile(guest_dir / self.spec["disk"], self.disk)  # never touch the build output
        self.http_port, self.ledger_port = free_port(), free_port()
        self.proc = None
        self.boots = 0

    def command(self) -> list[str]:
        s, ip = self.spec, self.spec["ip"].split("/")[0]
        net = ("user,id=n0,restrict=on,net=10.213.1.0/24,host=10.213.1.2,"
               f"hostfwd=tcp:127.0.0.1:{self.http_port}-{ip}:80,"
               f"hostfwd=tcp:127.0.0.1:{self.ledger_port}-{ip}:7000")
        return [QEMU, "-machine", "pc", "-accel", "tcg", "-m", str(s["memory_mib"]),
                "-display", "none", "-monitor", "none", "-no-reboot",
                "-serial", f"file:{self.serial}",
                "-kernel", str(self.dir / s["kernel"]), "-initrd", str(self.dir / s["initrd"]),
                "-append", f"{s['cmdline']} colo.ip={s['ip']}",
                "-drive", f"if=none,id=disk0,file={self.disk},format=qcow2",
                "-device", "virtio-blk-pci,drive=disk0",
                "-netdev", net, "-device", f"{s['nic_model']},netdev=n0,mac={s['mac']},romfile="]

    @property
    def serial(self) -> Path:
        return self.workdir / f"serial{self.boots}.log"

    def console(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def start(self) -> float:
        """Boot and wait for the READY marker; returns the seconds it took."""
        self.boots += 1
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        while self.spec["ready_marker"] not in self.console():
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited ({self.proc.returncode}): {self.proc.stdout.read()!r}\n"
                                     f"console:\n{self.console()[-3000:]}")
            if time.monotonic() - t0 > READY_TIMEOUT:
                raise AssertionError(f"no {self.spec['ready_marker']} after {READY_TIMEOUT}s; "
                                     f"console:\n{self.console()[-3000:]}")
            time.sleep(0.05)
        return time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL by PID: like pulling the plug (no guest shutdown, no flush)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc:
            self.proc.stdout.close()
        self.proc = None

    def http_get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def ledger(self) -> LedgerClient:
        return LedgerClient("127.0.0.1", self.ledger_port, timeout=30)


@pytest.fixture(scope="module")
def guest_dir(tmp_path_factory) -> Path:
    if os.environ.get("COLO_GUEST_DIR"):
        return Path(os.environ["COLO_GUEST_DIR"])
    out = tmp_path_factory.mktemp("guest")
    result = subprocess.run([str(REPO / "lab/guest/build"), str(out)], capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, f"build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def guest(guest_dir, tmp_path_factory):
    if not QEMU:
        pytest.skip("qemu-system-x86_64 missing: apt-get install qemu-system-x86")
    g = Guest(guest_dir, tmp_path_factory.mktemp("run"))
    try:
        print(f"guest READY after {g.start():.1f}s")
        yield g
    finally:
        g.kill()


def test_build_output(guest_dir):
    spec = json.loads((guest_dir / "guest.json").read_text())
    for name in ("kernel", "initrd", "disk"):
        assert (guest_dir / spec[name]).stat().st_size == spec["files"][spec[name]]["size"]
    assert (guest_dir / spec["kernel"]).read_bytes()[:4] == b"\x7fELF"
    assert spec["nic_model"] == "e1000" and spec["disk_interface"] == "virtio-blk"
    assert len(spec["recipe_hash"]) == 64


def test_http_static_page(guest):
    status, body = guest.http_get("/")
    assert status == 200 and "colo.ft test guest" in body


def test_uptime_page_changes(guest):
    pages = []
    for _attempt in range(3):
        status, body = guest.http_get("/cgi-bin/uptime")
        assert status == 200 and "uptime" in body
        pages.append(body)
        time.sleep(0.05)
    assert len(set(pages)) == 3, pages


def test_ledger_refuses_bad_commands(guest):
    with socket.create_connection(("127.0.0.1", guest.ledger_port), timeout=30) as s:
        s.sendall(b"PING\nPUT \nPUT caf\xc3\xa9\nPUT " + b"x" * 401 + b"\nPUT " + b"y" * 5000
                  + b"\nNOPE\nPING\n")
        s.shutdown(socket.SHUT_WR)
        lines = s.makefile("rb").read().decode().splitlines()
    assert lines[0] == "PONG" and lines[-1] == "PONG"
    assert [line.split()[0] for line in lines[1:-1]] == ["ERR"] * 5, lines
    with guest.ledger() as led, pytest.raises(LedgerProtocolError):
        led.put("")


def test_ledger_concurrent_writers_get_unique_ordered_seqs(guest):
    results, errors = {}, []

    def writer(k):
        try:
            with guest.ledger() as led:
                results[k] = led.put_many(f"conc-{k}-{i}" for i in range(50))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for seqs in results.values():
        assert seqs == sorted(seqs)
    acked = {seq: f"conc-{k}-{i}" for k, seqs in results.items() for i, seq in enumerate(seqs)}
    assert len(acked) == 400
    with guest.ledger() as led:
        records = led.get()
    assert [seq for seq, _text in records] == list(range(1, len(records) + 1))
    on_disk = dict(records)
    assert all(on_disk[seq] == text for seq, text in acked.items())


def test_ledger_1000_records_survive_kill(guest):
    texts = [f"rec-{i}-{'z' * (i % 300)}" for i in range(1000)]
    with guest.ledger() as led:
        led.ping()
        before = len(led.get())
        seqs = led.put_many(texts)
        assert seqs == list(range(before + 1, before + 1001))
        records = led.get()
    assert records[before:] == list(zip(seqs, texts))

    guest.kill()  # no clean shutdown: only what ledgerd made durable counts
    print(f"guest READY again after {guest.start():.1f}s")
    with guest.ledger() as led:
        assert led.get() == records
        assert led.put("after reboot") == len(records) + 1
