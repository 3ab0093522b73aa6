"""How much each section measures: the full run and the --quick smoke run."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Settings:
    runs: int = 10                   # failover outage: runs per mode
    # failover outage: the paths measured (sections/failover.py MODES); the quick run keeps the agent's
    failover_modes: tuple[str, ...] = ("agent", "agent_secondary", "playbook", "direct")
    cycles: int = 50                 # soak: failover + re-protect cycles
    steady_s: float = 600.0          # steady: seconds under checkpoint load with nothing failing
    window_s: float = 20.0           # cost of protection: seconds per measurement
    delays_ms: tuple[int, ...] = (500, 2000, 5000)
    checkpoints_per_window: int = 10  # checkpoint samples last at least this many delays
    rate: float = 20.0               # HTTP requests/s of the client during a failover
    load_concurrency: int = 8        # "under load": closed-loop HTTP clients
    cleartext_leg: bool = True       # cost of protection: also measure COLO with colo_tls=false (a restart more)

    def sample_seconds(self, delay_ms: int) -> float:
        return max(self.window_s, self.checkpoints_per_window * delay_ms / 1000.0)

    def to_dict(self) -> dict:
        return asdict(self)


FULL = Settings()
QUICK = Settings(runs=1, cycles=2, window_s=5.0, checkpoints_per_window=2, failover_modes=("agent", "agent_secondary"),
                 steady_s=30.0, cleartext_leg=False)
