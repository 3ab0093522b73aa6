"""Taking the lab down leaves nothing of it on the machine (kept last by conftest)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from colo_lab.config import CLIENT_NS, FREEZER, MACHINES, MGMT_IF, STATE, STRANGER_NS, SWITCH_NS
from colo_lab.testing import lab_cmd


# STATE or a path under it, not another instance's directory (/var/lib/colo-lab-3 when STATE is /var/lib/colo-lab).
OURS = re.compile(re.escape(str(STATE)).encode() + rb"(?=[/\s\0]|$)")


@pytest.mark.lab_down
def test_down_leaves_nothing(lab):
    lab_cmd("down")
    assert not STATE.exists()
    mounts = Path("/proc/self/mounts").read_bytes()
    assert not OURS.search(mounts), [line for line in mounts.splitlines() if OURS.search(line)]
    for name in [h.netns for h in MACHINES] + [CLIENT_NS, STRANGER_NS, SWITCH_NS]:
        assert not Path(f"/run/netns/{name}").exists(), name
    assert not Path(f"/sys/class/net/{MGMT_IF}").exists()
    assert not FREEZER.exists()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        assert not OURS.search(cmdline), f"process {proc.name} of the lab still runs"
    # down is safe to repeat, e.g. after an interrupted run.
    lab_cmd("down")
