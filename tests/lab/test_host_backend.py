"""colo_host follows the backend: the QEMU COLO guard runs for QEMU COLO and not for Xen COLO."""

from __future__ import annotations

import re

import pytest
from colo_lab.testing import ansible, recap

pytestmark = pytest.mark.usefixtures("lab")

GUARD = "TASK [colo.ft.colo_host : Check that this QEMU can run COLO]"


def guard_results(*extra: str) -> tuple[list[str], dict]:
    result = ansible("ansible-playbook", "tests/lab/playbooks/colo_host_only.yml", "--check", *extra)
    block = result.stdout.split(GUARD, 1)[1].split("TASK [", 1)[0]
    return re.findall(r"^(ok|skipping|changed|failed): \[(colo-[ab])\]", block, re.M), recap(result.stdout)


def test_qemu_backend_runs_the_guard():
    found, counts = guard_results()
    assert sorted(found) == [("ok", "colo-a"), ("ok", "colo-b")]
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values())


def test_xen_backend_skips_the_guard_and_qemu():
    found, counts = guard_results("-e", "colo_backend=xen")
    assert sorted(found) == [("skipping", "colo-a"), ("skipping", "colo-b")]
    assert all(c["failed"] == 0 for c in counts.values())
