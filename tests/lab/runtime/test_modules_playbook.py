"""Every colo.ft module for real, through ansible-playbook, on one host (playbooks/colo_modules.yml).

Primary and secondary QEMU side by side (two state roots): start, checkpoint ready and protected, a new
checkpoint interval, info, failover lost=secondary, re-protection, failover lost=primary, stop; each
changing step in check mode first (predicts, changes nothing), for real, and again (changed=false).
In the runtime stage the ansible-playbook is Debian 13's ansible-core (2.19, the oldest this collection
supports), from the lab image's repository; the collection is this checkout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir))
PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks", "colo_modules.yml")


def _why_not() -> str | None:
    if not os.environ.get("COLO_RT_NET"):
        return "needs a network namespace of its own (run-in-netns)"
    if not os.environ.get("COLO_RT_GUEST"):
        return "needs the test guest (run-in-netns --guest)"
    if not shutil.which("ansible-playbook"):
        return "ansible-playbook not installed"
    return None


@pytest.fixture
def collections():
    """A collections path that holds this checkout as colo.ft."""
    d = tempfile.mkdtemp(prefix="colo-rt-ac-")
    os.makedirs(os.path.join(d, "ansible_collections", "colo"))
    os.symlink(REPO, os.path.join(d, "ansible_collections", "colo", "ft"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_every_module_with_check_mode_and_idempotence(collections):
    why = _why_not()
    if why:
        pytest.skip(why)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               COLO_GUEST=os.environ["COLO_RT_GUEST"], ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    version = subprocess.run(["ansible-playbook", "--version"], capture_output=True, text=True, check=True).stdout
    print(version.splitlines()[0])
    res = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", PLAYBOOK], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    print(res.stdout[-6000:], res.stderr[-3000:])
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    recap = res.stdout[res.stdout.rindex("PLAY RECAP"):]
    assert "failed=0" in recap and "unreachable=0" in recap, recap
