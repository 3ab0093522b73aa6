"""A resync's progress in a file of the VM's state directory, for whoever asks while it runs.

The module that resyncs holds the VM's QMP monitor (qmp.sock) for the whole copy, and QEMU
serves one client per monitor, so colo.ft.info cannot ask QEMU then: it reads this file.
The file exists only while a resync runs (a module that was killed may leave it: `updated`
tells how fresh it is).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

FILE = "resync.json"


def path(spec: VMSpec) -> str:
    return os.path.join(spec.state_dir, FILE)


class ProgressFile:
    """A replication.Progress callback that writes the copy's progress to `target` (atomically, at most once
    per `every` seconds, and always the first call and the one that finds the copy complete: a copy shorter
    than `every` still shows its end until the protection goes on); remove() when the resync is over."""

    def __init__(self, target: str, every: float = 1.0, clock: Callable[[], float] = time.time):
        self.target, self.every, self.clock = target, every, clock
        self.started: float | None = None
        self.written_at: float | None = None

    def __call__(self, copied: int, total: int) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        complete = 0 < total <= copied
        if self.written_at is not None and now - self.written_at < self.every and not complete:
            return
        elapsed = now - self.started
        data = {"copied_bytes": copied, "total_bytes": total, "started": round(self.started, 3),
                "updated": round(now, 3), "bytes_per_second": round(copied / elapsed) if elapsed > 0 else None}
        tmp = f"{self.target}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.target)
        self.written_at = now

    def remove(self) -> None:
        for name in (self.target, f"{self.target}.tmp"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass


def read(spec: VMSpec) -> dict[str, Any] | None:
    """The progress of the resync running for this VM, or None when none runs (or the file is unreadable)."""
    try:
        with open(path(spec), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
