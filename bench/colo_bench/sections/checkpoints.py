"""Checkpoint pauses, rate and causes for several checkpoint delays, idle and under load.

The delay is changed in place on the protected pair (colo.ft.checkpoint); colo.ft.info on the
primary counts the STOP/RESUME pairs in its window, and each checkpoint's cause (the timer or what
colo-compare found: checkpoint_causes). Load: closed-loop HTTP clients.
"""
from __future__ import annotations

import threading

from colo_bench import http, pair
from colo_bench.settings import Settings

KEYS = ("checkpoints", "checkpoints_per_second", "pause_p50_ms", "pause_p99_ms", "pause_max_ms")


def _sample(primary: str, seconds: float) -> dict:
    info = pair.sample(primary, seconds, causes=True)
    return {"window_s": round(seconds, 1), **{k: info[k] for k in KEYS}, "causes": info["checkpoint_causes"]}


def under_load(primary: str, seconds: float, concurrency: int) -> dict:
    load: dict = {}
    # The load outlasts the sample window on both ends.
    worker = threading.Thread(target=lambda: load.update(http.closed_loop(concurrency, seconds + 8)), daemon=True)
    worker.start()
    try:
        out = _sample(primary, seconds)
    finally:
        worker.join()
    out["load"] = {k: load.get(k) for k in ("concurrency", "req_per_s", "errors")}
    return out


def run(settings: Settings) -> dict:
    primary, _secondary = pair.ensure_protected()
    rows = []
    try:
        for delay in settings.delays_ms:
            pair.set_checkpoint_delay(primary, delay)
            seconds = settings.sample_seconds(delay)
            rows.append({"delay_ms": delay, "idle": _sample(primary, seconds),
                         "load": under_load(primary, seconds, settings.load_concurrency)})
    finally:
        pair.set_checkpoint_delay(primary, 2000)
    return {"primary": primary, "rows": rows}
