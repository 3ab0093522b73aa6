"""site.yml from bare lab hosts, then again: wall times and changed counts."""
from __future__ import annotations

import time

from colo_lab.testing import lab_cmd, wait_http

from colo_bench import pair
from colo_bench.settings import Settings


def run(_settings: Settings) -> dict:
    lab_cmd("down")
    t0 = time.monotonic()
    lab_cmd("up")
    up_s = time.monotonic() - t0
    first_s, first = pair.timed_playbook("site.yml")
    wait_http()
    again_s, again = pair.timed_playbook("site.yml")
    primary, secondary = pair.layout()
    return {
        "lab_up_s": round(up_s, 2),
        "site_bare_s": round(first_s, 2),
        "site_bare_changed": {h: c["changed"] for h, c in first.items()},
        "site_rerun_s": round(again_s, 2),
        "site_rerun_changed": {h: c["changed"] for h, c in again.items()},
        "layout": {"primary": primary, "secondary": secondary},
    }
