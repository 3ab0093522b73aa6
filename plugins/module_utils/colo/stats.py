"""Checkpoint statistics: each COLO checkpoint pauses the primary (a STOP..RESUME pair).

Pauses are measured by QEMU's own event timestamps, from the events a listener
(QMPClient.listen) collected while it was open.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient

PAUSE_EVENTS = ("STOP", "RESUME")


@dataclass
class CheckpointStats:
    """Checkpoints seen in a window: each is a STOP..RESUME pause of the primary."""

    window_s: float = 0.0
    pauses_ms: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.pauses_ms)

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.pauses_ms) if self.pauses_ms else None

    @property
    def p99_ms(self) -> float | None:
        return percentile(self.pauses_ms, 99)

    @property
    def max_ms(self) -> float | None:
        return max(self.pauses_ms) if self.pauses_ms else None

    @property
    def per_second(self) -> float | None:
        return self.count / self.window_s if self.window_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": _round(self.window_s),
            "count": self.count,
            "pause_p50_ms": _round(self.p50_ms),
            "pause_p99_ms": _round(self.p99_ms),
            "pause_max_ms": _round(self.max_ms),
            "per_second": _round(self.per_second),
        }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): a value that was measured, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def pauses_from_events(events: list[dict[str, Any]], since: float = 0.0, until: float | None = None) -> list[float]:
    """Pause (ms) of every STOP followed by RESUME, by QEMU's event timestamps.

    since/until cut the events by those timestamps (UNIX seconds); other events are ignored.
    """
    pauses: list[float] = []
    stopped: float | None = None
    for ev in events:
        t = QMPClient.event_time(ev)
        if t < since or (until is not None and t > until):
            continue
        if ev.get("event") == "STOP":
            stopped = t
        elif ev.get("event") == "RESUME" and stopped is not None:
            pauses.append((t - stopped) * 1000.0)
            stopped = None
    return pauses


def sample_checkpoints(qmp: QMPClient, seconds: float) -> CheckpointStats:
    """Watch the primary for `seconds` and report the checkpoints it made.

    A pause cut by the start or the end of the window is not counted.
    """
    with qmp.listen(PAUSE_EVENTS) as listener:
        listener.drain(seconds)
    return CheckpointStats(seconds, pauses_from_events(listener.events))
