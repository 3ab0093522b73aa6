"""Summaries of measured values (the runtime's nearest-rank percentile, so bench and colo.ft.info agree)."""
from __future__ import annotations

import statistics

from ansible_collections.colo.ft.plugins.module_utils.colo.stats import percentile


def summary(values: list[float], digits: int = 3) -> dict:
    """n, median, p99, min, max of values (None for each when there are none)."""
    if not values:
        return {"n": 0, "median": None, "p99": None, "min": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), digits),
            "p99": round(percentile(values, 99), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, rounded; None when either is missing or b is 0."""
    return round(a / b, 3) if a is not None and b else None
