"""The failover log of a VM: every take-over, release and self-fence, on disk.

LOG_DIR/<vm>.jsonl (on disk: it outlives a power cut, unlike the VM's state directory in /run) holds
one JSON object per line, oldest first: when (UTC, ISO 8601), vm, host, action (took_over: this side
took the guest over after losing its primary; released: this primary stopped waiting for a lost
secondary; fenced: this side stopped its guest because it lost quorum, so that the other side may
take over; reprotected: the agent protected this guest again towards a new secondary), why, by (the agent or
colo.ft.failover), and the QEMU the entry is about: qemu_pid and
the boot_id of the host's kernel (a pid is unique only within one boot).

A fenced QEMU is given up: the other side may run the guest by now, so nothing may resume this
one (given_up(); the failover planners refuse it). A QEMU started afterwards is another process and
is not given up: re-protection stops the given-up QEMU and starts a fresh secondary.
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

LOG_DIR = "/var/lib/colo-ft/failovers"
ACTIONS = ("took_over", "released", "fenced", "reprotected")
# What a failover plan's lost side means for this side's entry.
ACTION_OF_LOST = {"primary": "took_over", "secondary": "released"}


def path(spec: VMSpec, log_dir: str = LOG_DIR) -> str:
    return os.path.join(log_dir, f"{spec.name}.jsonl")


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def append(spec: VMSpec, action: str, why: str, by: str, qemu_pid: int | None,
           log_dir: str = LOG_DIR) -> dict[str, Any]:
    """Write one entry (flushed and fsynced before it returns: a fence must outlive a power cut)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown failover log action {action!r}")
    now = time.time()
    entry = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "at": round(now, 3), "vm": spec.name,
             "host": socket.gethostname(), "action": action, "why": why, "by": by, "qemu_pid": qemu_pid,
             "boot_id": boot_id()}
    os.makedirs(log_dir, mode=0o700, exist_ok=True)
    fd = os.open(path(spec, log_dir), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def entries(spec: VMSpec, log_dir: str = LOG_DIR) -> list[dict[str, Any]]:
    """Every entry, oldest first; a torn last line (power cut while writing) is skipped."""
    try:
        with open(path(spec, log_dir)) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def last(spec: VMSpec, log_dir: str = LOG_DIR) -> dict[str, Any] | None:
    found = entries(spec, log_dir)
    return found[-1] if found else None


def _newest_of(spec: VMSpec, qemu_pid: int | None, actions: tuple[str, ...], log_dir: str) -> dict[str, Any] | None:
    """The newest entry with one of `actions` about this very QEMU (its pid in this boot)."""
    if qemu_pid is None:
        return None
    now = boot_id()
    for entry in reversed(entries(spec, log_dir)):
        if entry.get("action") in actions and entry.get("qemu_pid") == qemu_pid and entry.get("boot_id") == now:
            return entry
    return None


def given_up(spec: VMSpec, qemu_pid: int | None, log_dir: str = LOG_DIR) -> dict[str, Any] | None:
    """The fence entry of this very QEMU (its pid in this boot), if it was given up; None otherwise."""
    return _newest_of(spec, qemu_pid, ("fenced",), log_dir)


def decision(spec: VMSpec, qemu_pid: int | None, log_dir: str = LOG_DIR) -> dict[str, Any] | None:
    """The newest take-over or release of this very QEMU: a guest it serves alone by a decision (the agent's under
    quorum, or failover.yml's), not because QEMU left COLO by itself."""
    return _newest_of(spec, qemu_pid, ("took_over", "released"), log_dir)
