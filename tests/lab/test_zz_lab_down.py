"""Taking the lab down leaves nothing of it on the machine (kept last by conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from colo_lab.config import CLIENT_NS, FREEZER, MACHINES, MGMT_IF, STATE, STRANGER_NS, SWITCH_NS
from colo_lab.testing import lab_cmd


@pytest.mark.lab_down
def test_down_leaves_nothing(lab):
    lab_cmd("down")
    assert not STATE.exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(STATE) not in mounts
    for name in [h.netns for h in MACHINES] + [CLIENT_NS, STRANGER_NS, SWITCH_NS]:
        assert not Path(f"/run/netns/{name}").exists(), name
    assert not Path(f"/sys/class/net/{MGMT_IF}").exists()
    assert not FREEZER.exists()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        assert str(STATE).encode() not in cmdline, f"process {proc.name} of the lab still runs"
    # down is safe to repeat, e.g. after an interrupted run.
    lab_cmd("down")
