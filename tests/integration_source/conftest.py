"""Helpers of the source-build tests: run a colo.ft module on localhost, a work dir the build user can enter."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))


def _ansible_env() -> dict:
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")


def _run_module(args: dict, name: str = "colo.ft.source_build", check: bool = False,
                timeout: float = 7500) -> tuple[dict, float]:
    """Run a colo.ft module on localhost (ansible ad-hoc); its result and the wall time. Fails the test when
    the module fails."""
    env = _ansible_env()
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-m", name,
            "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}"] + (["--check"] if check else [])
    t0 = time.monotonic()
    res = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.monotonic() - t0
    out = res.stdout
    assert "=> {" in out, out + res.stderr
    result = json.loads(out[out.index("=> {") + 3:])
    assert res.returncode == 0, json.dumps(result, indent=2)
    return result, elapsed


def _run_playbook(playbook: str, extra_vars: dict, check: bool = False, timeout: float = 7500) -> str:
    """Run one of tests/integration_source/playbooks on localhost; its output. Fails the test when it fails."""
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            os.path.join(os.path.dirname(__file__), "playbooks", playbook), "-e", json.dumps(extra_vars),
            "-e", f"ansible_python_interpreter={sys.executable}"] + (["--check"] if check else [])
    res = subprocess.run(argv, cwd=REPO, env=_ansible_env(), capture_output=True, text=True, timeout=timeout,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


@pytest.fixture()
def run_playbook():
    return _run_playbook


@pytest.fixture()
def run_module():
    return _run_module


@pytest.fixture()
def work():
    # Not under pytest's tmp_path: the build user must be able to enter it.
    d = tempfile.mkdtemp(prefix="colo-ft-source-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
