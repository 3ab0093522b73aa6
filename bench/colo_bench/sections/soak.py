"""Soak: failover + re-protect cycles in a row, ledger writes all along, connections held open.

Unattended: the colo.ft agents fail over (nobody runs failover.yml) and, once the crashed host is restarted,
re-protect the pair by themselves (nobody runs reprotect.yml).

Cycles alternate the lost side: even cycles crash the primary's host (the secondary takes over),
odd ones the secondary's (the primary goes on alone); both hosts die in turn. One writer connection
and a few idle connections are opened before the first cycle and must all work after the last.
"""
from __future__ import annotations

import time

from colo_lab.config import GUEST_ADDR
from colo_lab.ledger import LedgerClient, LedgerError
from colo_lab.testing import ClientLoad, client_netns

from colo_bench import pair, stats
from colo_bench.settings import Settings

IDLE_CONNECTIONS = 4


def run(settings: Settings) -> dict:
    pair.ensure_protected()
    pair.set_maintenance(False)
    with client_netns():
        idle = [LedgerClient(GUEST_ADDR, timeout=120) for _i in range(IDLE_CONNECTIONS)]
    for conn in idle:
        conn.ping()
    cycles = []
    with ClientLoad("soak") as ledger:
        ledger.wait_acks(20)
        for k in range(settings.cycles):
            primary, secondary = pair.layout()
            lost_side = "primary" if k % 2 == 0 else "secondary"
            dead, survivor = (primary, secondary) if lost_side == "primary" else (secondary, primary)
            t0 = time.monotonic()
            crashed = pair.crash(dead)
            pair.wait_agent_failover(survivor, crashed)
            failover_s = time.monotonic() - crashed
            ledger.wait_acks(10)
            gap = ledger.longest_gap(crashed)
            reprotect_s = pair.repair_and_reprotect(dead)
            ledger.wait_acks(10)
            assert not ledger.errors, ledger.errors
            cycles.append({"cycle": k + 1, "lost_side": lost_side, "dead": dead, "ledger_gap_s": round(gap, 3),
                           "failover_s": round(failover_s, 2), "reprotect_s": round(reprotect_s, 2),
                           "cycle_s": round(time.monotonic() - t0, 2)})
    lost = ledger.lost()
    alive = 0
    for conn in [ledger.held, *idle]:
        try:
            conn.ping()
            alive += 1
        except LedgerError:
            pass
        finally:
            conn.close()
    # The writer's connection carried every write: it survived if it never failed.
    alive += 0 if ledger.errors else 1
    return {
        "cycles": cycles,
        "acked_records": len(ledger.acked), "lost_records": len(lost), "ledger_errors": ledger.errors,
        "connections": IDLE_CONNECTIONS + 2, "connections_survived": alive,
        "cycle_s": stats.summary([c["cycle_s"] for c in cycles], 2),
        "ledger_gap_s": stats.summary([c["ledger_gap_s"] for c in cycles]),
    }
