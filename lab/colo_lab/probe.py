"""How soon after a fault the guest answers a new client: fresh ledger PINGs, one every `interval`.

A request that was in flight at the fault is answered only when TCP retransmits it (backing off to
seconds), which measures TCP more than the failover. The figure users feel after a host dies is
when a request sent *after* the fault is answered: Prober starts a new connection and PING every
`interval` seconds, each in its own thread, and keeps (sent, answered) for those answered.
"""

from __future__ import annotations

import threading
import time

from .config import GUEST_ADDR
from .ledger import LedgerClient, LedgerError
from .testing import client_netns


class Prober:
    def __init__(self, interval: float = 0.05, timeout: float = 2.0):
        self.interval, self.timeout = interval, timeout
        self.answered: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            threading.Thread(target=self._probe, daemon=True).start()
            self._stop.wait(self.interval)

    def _probe(self) -> None:
        sent = time.monotonic()
        try:
            with client_netns():
                client = LedgerClient(GUEST_ADDR, timeout=self.timeout)
            with client:
                client.ping()
        except (LedgerError, OSError):
            return
        with self._lock:
            self.answered.append((sent, time.monotonic()))

    def first_answer_after(self, t0: float, wait: float = 30.0) -> float:
        """Seconds from t0 to the first answer to a probe sent after t0 (waits up to `wait` seconds for one)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                after = [answered for sent, answered in self.answered if sent >= t0]
            if after:
                return min(after) - t0
            time.sleep(0.05)
        raise AssertionError(f"no new client request was answered within {wait:g} s of the fault")
