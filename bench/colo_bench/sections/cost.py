"""What protection costs while nothing fails: the same guest unprotected, under COLO with TLS (the
default) and under COLO in cleartext (not in the quick run), one run.

Under COLO first (the pair as site.yml leaves it, TLS on every channel), then the pair is restarted
with colo_tls=false (stop.yml, site.yml) and measured again, then protection is stopped (secondary VM
stopped, colo.ft.checkpoint state=unprotected on the primary: the guest keeps running alone on the same
host) and measured again; stop.yml and site.yml leave a protected pair with TLS behind.
Each COLO leg also samples the idle checkpoint pauses, so TLS's cost shows per checkpoint too.
"""
from __future__ import annotations

import time

from colo_lab.config import GUEST_ADDR
from colo_lab.ledger import LedgerClient
from colo_lab.testing import client_netns, run_module

from colo_bench import http, pair, stats
from colo_bench.sections.checkpoints import KEYS as PAUSE_KEYS
from colo_bench.settings import Settings

CONCURRENCY = (1, 8)


def ledger_writes(seconds: float) -> dict:
    """One connection, one durable write at a time (each acknowledged only once on the disk)."""
    with client_netns():
        led = LedgerClient(GUEST_ADDR, timeout=30)
    latencies = []
    with led:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            t0 = time.monotonic()
            led.put(f"cost-{i}")
            latencies.append((time.monotonic() - t0) * 1000.0)
            i += 1
        elapsed = time.monotonic() - start
    lat = stats.summary(latencies, 2)
    return {"writes": len(latencies), "writes_per_s": round(len(latencies) / elapsed, 2),
            "latency_p50_ms": lat["median"], "latency_p99_ms": lat["p99"]}


def measure(settings: Settings) -> dict:
    out = {f"http_c{c}": http.closed_loop(c, settings.window_s) for c in CONCURRENCY}
    out["ledger"] = ledger_writes(settings.window_s)
    return out


def measure_colo(primary: str, settings: Settings) -> dict:
    """measure() under COLO, and the idle checkpoints before it (colo.ft.info's sample on the primary)."""
    info = pair.sample(primary, settings.sample_seconds(2000))
    return {"idle_checkpoints": {k: info[k] for k in PAUSE_KEYS}, **measure(settings)}


def unprotect(primary: str, secondary: str) -> None:
    rc, results = run_module(secondary, "colo.ft.vm", {"name": pair.VM, "state": "stopped"})
    assert rc == 0, results
    rc, results = run_module(primary, "colo.ft.checkpoint", {"name": pair.VM, "state": "unprotected"})
    assert rc == 0, results
    assert pair.modes()[primary] == "none"


def ratios(colo: dict, plain: dict) -> dict:
    out = {}
    for c in CONCURRENCY:
        a, b = colo[f"http_c{c}"], plain[f"http_c{c}"]
        for key in ("req_per_s", "latency_p50_ms", "latency_p99_ms"):
            out[f"http_c{c}_{key}"] = stats.ratio(a[key], b[key])
    for key in ("writes_per_s", "latency_p50_ms", "latency_p99_ms"):
        out[f"ledger_{key}"] = stats.ratio(colo["ledger"][key], plain["ledger"][key])
    return out


def run(settings: Settings) -> dict:
    primary, secondary = pair.ensure_protected()
    # Protection is stopped and started on purpose here: the agents must not take that for a fault.
    pair.set_maintenance(True)
    pair.set_checkpoint_delay(primary, 2000)
    colo = measure_colo(primary, settings)
    cleartext = None
    if settings.cleartext_leg:
        primary, secondary = pair.restart_protected("-e", "colo_tls=false")[0]
        cleartext = measure_colo(primary, settings)
    unprotect(primary, secondary)
    plain = measure(settings)
    restore_s = pair.restart_protected()[1]
    pair.set_maintenance(False)
    out = {"checkpoint_delay_ms": 2000, "colo": colo, "unprotected": plain,
           "colo_over_unprotected": ratios(colo, plain), "restore_s": round(restore_s, 2)}
    if cleartext is not None:
        out.update(colo_cleartext=cleartext, cleartext_over_unprotected=ratios(cleartext, plain),
                   tls_over_cleartext=ratios(colo, cleartext))
    return out
