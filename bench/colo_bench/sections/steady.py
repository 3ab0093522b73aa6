"""Steady state: a protected pair under checkpoint load, the agents watching, nothing failing - and no failover.

8 closed-loop HTTP clients (each request a new connection, so colo-compare forces checkpoints all along) and
ledger writes on one connection run for Settings.steady_s while the colo.ft agents are active (not paused).
A failover log entry written on either host inside the window is a false failover. After the window the pair
must be protected with the same layout and the same QEMU processes, the primary must have checkpointed all
along (colo.ft.info samples it over the window) and every acknowledged ledger record must be on the guest's disk.
Everything is reported, not asserted, so that a false failover shows in the results (the quick test checks them).
"""
from __future__ import annotations

import time

from colo_lab.config import HOSTS_BY_NAME
from colo_lab.testing import ClientLoad

from colo_bench import pair
from colo_bench.sections.checkpoints import under_load
from colo_bench.settings import Settings


def _logs() -> dict[str, list[dict]]:
    return {h: pair.failover_log(h) for h in HOSTS_BY_NAME}


def new_entries(before: dict[str, list[dict]], after: dict[str, list[dict]], start: float, end: float) -> list[dict]:
    """Failover log entries in `after` and not in `before` that were written (`at`, UNIX time) in [start, end]."""
    return [entry for host, entries in after.items() for entry in entries
            if entry not in before.get(host, []) and start <= entry.get("at", 0) <= end]


def run(settings: Settings) -> dict:
    pair.ensure_protected()
    pair.set_maintenance(False)
    assert pair.agents_active(), "the colo.ft agents do not run, or are paused"
    primary, _secondary = pair.layout()
    qemus_before = pair.qemus()
    load, sample_error = None, None
    with ClientLoad("steady") as ledger:
        ledger.wait_acks(20)
        logs_before = _logs()
        start, t0 = time.time(), time.monotonic()
        try:
            load = under_load(primary, settings.steady_s, settings.load_concurrency)
        except AssertionError as error:  # colo.ft.info failed on the primary (gone?): reported with the rest
            sample_error = str(error)[-2000:]
        duration = time.monotonic() - t0
    lost = ledger.lost()
    qemus_after = pair.qemus()
    false_failovers = new_entries(logs_before, _logs(), start, time.time())
    http = load.pop("load") if load else None
    return {
        "duration_s": round(duration, 1),
        "checkpoint_delay_ms": qemus_before[primary]["checkpoint_delay_ms"],
        "false_failovers": false_failovers,
        "pair_unchanged": qemus_after == qemus_before,
        "qemus_before": qemus_before, "qemus_after": qemus_after,
        "checkpoints": load["checkpoints"] if load else 0,
        "checkpoint_sample": load, "sample_error": sample_error,
        "http": http, "req_per_s": http["req_per_s"] if http else None,
        "ledger": {"acked": len(ledger.acked), "lost": len(lost), "errors": ledger.errors,
                   "longest_gap_s": round(ledger.longest_gap(t0), 3)},
    }
