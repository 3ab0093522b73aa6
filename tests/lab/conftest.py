"""Fixtures for tests that run on the built-in lab (root only; see lab/README.md).

The lab is brought up once per session and left up between test files, which is how a person
uses it too; test_zz_lab_down.py, kept last, takes it down and checks that nothing is left.
Helpers shared with benchmarks live in lab/colo_lab/testing.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from colo_lab.inventory import INVENTORY
from colo_lab.testing import lab_cmd


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_down: takes the lab down; runs after every other lab test")


# The lab is one shared pair of hosts: files run in this order (stable within a file), and taking the
# lab down comes last of all.
# test_large_disk.py runs site.yml with the inventory's layout (colo-a primary): before the failovers of test_colo.py
# and test_ha.py, which leave the roles swapped (site.yml then refuses, rightly).
ORDER = ["test_lab.py", "test_cluster.py", "test_guest_unprotected.py", "test_bad_input.py", "test_large_disk.py",
         "test_colo.py", "test_ha.py"]
# Files that run inside another file's scenario, after the test named: {file: (host file, test)}. test_firewall.py
# needs a protected pair and the agents paused, which test_colo.py has made by then; it leaves the pair as it
# found it (colo-a primary, colo-b secondary). So it needs no fresh lab and no site.yml from bare hosts (~2 min).
INSIDE = {"test_firewall.py": ("test_colo.py", "test_maintenance_switch_pauses_the_agents")}


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return ("lab_down" in item.keywords, ORDER.index(name) if name in ORDER else len(ORDER))
    items.sort(key=rank)
    for name, (host, after) in INSIDE.items():
        guests = [item for item in items if item.path.name == name]
        anchor = next((item for item in items if item.path.name == host and item.name == after), None)
        if guests and anchor is not None:
            rest = [item for item in items if item.path.name != name]
            at = rest.index(anchor) + 1
            items[:] = rest[:at] + guests + rest[at:]


@pytest.fixture(scope="session")
def lab() -> Path:
    """The lab, up; returns its Ansible inventory path."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root: they create namespaces, mounts and containers")
    lab_cmd("up")
    assert INVENTORY.exists()
    return INVENTORY


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item: fixtures that gather evidence look at it after the test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
