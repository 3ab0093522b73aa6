"""Confined QEMU with a real QEMU: seccomp on, privileges dropped to qemu_user, the files QEMU reopens
handed to that user, and the launcher's refusal when the user cannot reach them."""
from __future__ import annotations

import os
import pwd
import stat
import sys

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import LaunchError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from colo_env import Env  # noqa: E402

USER = "colo-qemu"


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.fixture
def qemu_user():
    env = Env.from_environ()
    env.qemu_user = USER
    env.user_up()
    return pwd.getpwnam(USER)


def test_refused_when_the_user_cannot_reach_the_state_root(make_spec, launcher, workdir, qemu_user):
    os.chmod(workdir, 0o700)  # mkdtemp's mode: root only
    spec = make_spec(name="conf0", qemu_user=USER)
    with pytest.raises(LaunchError, match=f"runs QEMU as {USER}, who cannot search {workdir}"):
        launcher.start(spec, "secondary")
    assert not os.path.exists(spec.state_dir)  # refused before anything changed


def test_secondary_runs_unprivileged_under_seccomp(make_spec, launcher, workdir, qemu_user):
    os.chmod(workdir, 0o711)
    spec = make_spec(name="conf1", qemu_user=USER)
    res = launcher.start(spec, "secondary")
    status = proc_status(res.pid)
    assert status["Uid"].split() == [str(qemu_user.pw_uid)] * 4
    assert status["Gid"].split() == [str(qemu_user.pw_gid)] * 4
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1"
    assert "-sandbox" in res.argv and f"user={USER}" in res.argv

    # QEMU's own files: the image and overlays it reopens, the directory of its hot-added sockets
    for path in (spec.disk, spec.active_path, spec.hidden_path, spec.qemu_dir):
        assert os.stat(path).st_uid == qemu_user.pw_uid, path
    # the launcher's: its group may traverse the state directory, not list or write it; spec.json stays root's
    st = os.stat(spec.state_dir)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, qemu_user.pw_gid, 0o710)
    assert os.stat(spec.spec_path).st_uid == 0
