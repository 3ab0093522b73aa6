"""The guard on the installed QEMU (>= 11): version accepted, COLO pieces found."""
from __future__ import annotations

import os

from ansible_collections.colo.ft.plugins.module_utils.colo import guard
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient

QEMU = os.environ.get("COLO_QEMU", "qemu-system-x86_64")


def test_binary_version():
    v = guard.probe_binary(QEMU)
    assert v.major >= 11
    r = guard.check(QEMU)
    assert r.ok and not r.problems and r.features is None


def test_running_qemu_has_colo(make_spec, launcher):
    spec = make_spec(name="guardvm")
    launcher.start(spec, "plain")
    with QMPClient(spec.qmp_path, timeout=10) as qmp:
        r = guard.check(QEMU, client=qmp)
    assert r.ok, r.problems
    f = r.features
    assert f is not None
    assert f.replication_driver and f.colo_compare and f.x_colo_capability and f.lost_heartbeat
    assert f.missing_types == [] and f.missing_commands == []
    assert r.version is not None and r.version.major >= 11
    assert r.to_dict()["features"]["replication_driver"] is True
