"""Failover outage: power-cut a host under load; outage = crash to the first answer.

A client sends 20 HTTP requests/s (each its own connection) and writes ledger records one at a time
on one connection; a second ledger connection stays idle. A host is power-cut (silently: its links go
dark first) and the survivor takes over, through:
* agent: the colo.ft agents alone (corosync + the arbiter's vote; docs/agent.md), nobody acting;
* agent_secondary: the same, but the *secondary's* host dies (the primary's output was held until its
  agent released it);
* playbook: failover.yml (probe, fencing, colo.ft.failover: what an operator runs), agents paused;
* direct: the runtime's failover called directly on the survivor (armed before the crash), agents paused.
Modes alternate run by run; after each run the crashed host is restarted and the guest protected again (by
the agents themselves, or reprotect.yml while they are paused), so the hosts take turns dying.
"""
from __future__ import annotations

import time

from colo_lab.ledger import LedgerError
from colo_lab.testing import ClientLoad

from colo_bench import http, pair, stats
from colo_bench.settings import Settings

MODES = ("agent", "agent_secondary", "playbook", "direct")


def one_run(mode: str, index: int, settings: Settings) -> dict:
    pair.set_maintenance(mode in ("playbook", "direct"))
    primary, secondary = pair.layout()
    dead, survivor = (secondary, primary) if mode == "agent_secondary" else (primary, secondary)
    runner = pair.DirectFailover(survivor) if mode == "direct" else None
    with http.PacedClient(settings.rate) as client, ClientLoad(f"fo-{mode}-{index}") as ledger:
        client.wait_answers(20)
        ledger.wait_acks(20)
        crashed = pair.crash(dead)
        if runner:
            step_s = runner.go()["duration_s"]
        elif mode == "playbook":
            step_s, counts = pair.timed_playbook("failover.yml")
            assert counts[survivor]["failed"] == 0, counts
        else:
            step_s = pair.wait_agent_failover(survivor, crashed)
        took_over = time.monotonic() - crashed
        client.wait_answers(60, after=crashed)  # ~3 s of service after the first answer (for the plot)
        ledger.wait_acks(20)
    lost = ledger.lost()
    held_ok = True
    try:
        ledger.held.ping()
    except LedgerError:
        held_ok = False
    outage = http.first_answer_after(client.samples, crashed)
    run = {
        "mode": mode, "dead": dead, "survivor": survivor,
        "outage_s": round(outage, 3),
        "ledger_gap_s": round(ledger.longest_gap(crashed), 3),
        "failover_step_s": round(step_s, 3),       # failover.yml wall time, the runtime call, or the agent's step
        "took_over_s": round(took_over, 3),         # crash to the end of the failover step
        "lost_records": len(lost), "ledger_errors": ledger.errors, "held_connection_ok": held_ok,
        "timeline": [[round(s.sent - crashed, 3), None if s.latency is None else round(s.latency * 1000, 1)]
                     for s in sorted(client.samples, key=lambda s: s.sent)],
    }
    run["reprotect_s"] = round(pair.repair_and_reprotect(dead), 2)
    return run


def summarise(runs: list[dict], modes: tuple[str, ...]) -> dict:
    out = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        out[mode] = {
            "runs": len(mine),
            "outage_s": stats.summary([r["outage_s"] for r in mine]),
            "ledger_gap_s": stats.summary([r["ledger_gap_s"] for r in mine]),
            "failover_step_s": stats.summary([r["failover_step_s"] for r in mine]),
            "lost_records": sum(r["lost_records"] for r in mine),
            "held_connections_ok": sum(r["held_connection_ok"] for r in mine),
        }
    return out


def run(settings: Settings) -> dict:
    pair.ensure_protected()
    unknown = set(settings.failover_modes) - set(MODES)
    assert not unknown, f"unknown failover modes {sorted(unknown)}; known: {MODES}"
    runs = [one_run(mode, i, settings) for i in range(settings.runs) for mode in settings.failover_modes]
    return {"rate": settings.rate, "runs": runs, "summary": summarise(runs, settings.failover_modes)}
