"""Fixtures for tests that run on the built-in lab (root only; see lab/README.md).

The lab is brought up once per session and left up between test files, which is how a person
uses it too; test_zz_lab_down.py, kept last, takes it down and checks that nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from colo_lab.config import CLIENT_NS, GUEST_ADDR
from colo_lab.inventory import INVENTORY

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "lab/colo-lab"


def lab_cmd(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([str(LAB), *args], text=True, capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"colo-lab {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def on_host(host: str, command: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return lab_cmd("ssh", host, command, check=check, timeout=timeout)


def in_client(*argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return lab_cmd("client", *argv, check=check, timeout=timeout)


def pytest_configure(config):
    config.addinivalue_line("markers", "lab_down: takes the lab down; runs after every other lab test")


def pytest_collection_modifyitems(items):
    # Taking the lab down must come after every other lab test, whatever the file order.
    items.sort(key=lambda item: "lab_down" in item.keywords)


@pytest.fixture(scope="session")
def lab() -> Path:
    """The lab, up; returns its Ansible inventory path."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root: they create namespaces, mounts and containers")
    lab_cmd("up")
    assert INVENTORY.exists()
    return INVENTORY


def ansible(*argv: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run an Ansible command-line tool from the project's venv against the lab."""
    tool, *rest = argv
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    result = subprocess.run([str(REPO / ".venv/bin" / tool), "-i", str(INVENTORY), *rest], text=True,
                            capture_output=True, timeout=timeout, cwd=REPO, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result


@contextlib.contextmanager
def client_netns():
    """Run the body in the client namespace: sockets made here stay there, even after the block."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{CLIENT_NS}") as client:
        os.setns(client.fileno(), os.CLONE_NEWNET)
        try:
            yield
        finally:
            os.setns(home.fileno(), os.CLONE_NEWNET)


def http_get(path: str, timeout: float = 10) -> str:
    """GET from the test guest, as a client on the client switch."""
    with client_netns():
        with urllib.request.urlopen(f"http://{GUEST_ADDR}{path}", timeout=timeout) as reply:
            return reply.read().decode()


def wait_http(path: str = "/", timeout: float = 120) -> str:
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(path, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def recap(output: str) -> dict:
    """PLAY RECAP counters per host from ansible-playbook's output."""
    counts = {}
    for line in output.splitlines():
        if " : ok=" in line:
            host, rest = line.split(" : ", 1)
            counts[host.strip()] = {k: int(v) for k, v in (kv.split("=") for kv in rest.split())}
    return counts
