"""QEMU processes on this host: pids, command lines, systemd units.

Used by the launcher (launcher.py) to find, start and stop the QEMU of a VM.
"""
from __future__ import annotations

import os
import signal
import time

from ansible_collections.colo.ft.plugins.module_utils.colo import proc
from ansible_collections.colo.ft.plugins.module_utils.colo.argv import opt
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import QMPConnectionError, QMPTimeout
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec


def systemd_is_pid1() -> bool:
    # sd_booted(): this directory exists only when systemd is the init system.
    return os.path.isdir("/run/systemd/system")


def read_cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def same_argv(actual: list[str] | None, expected: list[str]) -> bool:
    """argv equality; systemd-run execs the binary by its absolute path, so argv[0] may differ."""
    if not actual or len(actual) != len(expected):
        return False
    return actual[1:] == expected[1:] and os.path.basename(actual[0]) == os.path.basename(expected[0])


def started_at(pid: int) -> float | None:
    """When the process started (seconds since the epoch, to the clock tick), from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime (fields after comm start at 3)
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (an exited child not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def find_qemu_pids(spec: VMSpec) -> list[int]:
    """QEMU processes whose -qmp option names this VM's socket (pidfile lost or stale)."""
    want = f"unix:{opt(spec.qmp_path)},"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = read_cmdline(int(entry))
        if not argv or "-qmp" not in argv:
            continue
        i = argv.index("-qmp")
        if i + 1 < len(argv) and argv[i + 1].startswith(want) and pid_alive(int(entry)):
            pids.append(int(entry))
    return pids


def read_pidfile(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def release_unit_name(unit: str) -> None:
    """Free the name of a transient unit whose QEMU has ended, so systemd-run can use it again.

    A failed run keeps the name until reset-failed. An inactive one should be collected
    (--collect), but systemd 257 was seen to keep its fragment in /run/systemd/transient for good
    after QEMU quit, and systemd-run then refuses the name ("already loaded or has a fragment file").
    """
    state = proc.run(["systemctl", "show", "-p", "ActiveState", "--value", unit]).stdout.strip()
    if state not in ("inactive", "failed"):
        return
    proc.run(["systemctl", "reset-failed", unit])
    fragment = os.path.join("/run/systemd/transient", unit)
    if os.path.exists(fragment):
        os.unlink(fragment)
        proc.run(["systemctl", "daemon-reload"])


def kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def wait_socket_dead(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with QMPClient(path, timeout=0.5):
                pass
        except (QMPConnectionError, QMPTimeout):
            return
        time.sleep(0.05)
