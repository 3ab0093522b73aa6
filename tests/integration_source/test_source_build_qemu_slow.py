"""Slow: QEMU >= 11.1 built from source through colo.ft.source_build with the colo_host defaults' flags.

Not in the default CI run (tens of minutes on 2 cores): COLO_FT_SLOW=1 tests/run source. The source is
Debian's qemu source package from trixie-backports (11.1.x; upstream git is not reachable everywhere),
fetched with a private apt configuration; set COLO_FT_QEMU_GIT (and COLO_FT_QEMU_REF) to build from git.
Build dependencies (meson's needs, glib, pixman, ...) must be installed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
MIRROR = os.environ.get("COLO_FT_DEBIAN_MIRROR", "http://deb.debian.org/debian")

pytestmark = [
    pytest.mark.skipif(os.environ.get("COLO_FT_SLOW") != "1", reason="slow (QEMU build): set COLO_FT_SLOW=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="source builds install as root"),
]


def module(args: dict) -> tuple[dict, float]:
    """Run colo.ft.source_build on localhost (ansible ad-hoc); its result and the wall time."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-m", "colo.ft.source_build",
            "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}"]
    t0 = time.monotonic()
    res = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=7500, check=False)
    out = res.stdout
    assert "=> {" in out, out + res.stderr
    result = json.loads(out[out.index("=> {") + 3:])
    assert res.returncode == 0, json.dumps(result, indent=2)
    return result, time.monotonic() - t0


def test_qemu_with_replication():
    work = os.environ.get("COLO_FT_QEMU_WORK") or tempfile.mkdtemp(prefix="colo-ft-qemu-", dir="/var/tmp")
    os.chmod(work, 0o755)
    prefix = os.path.join(work, "prefix")
    args = {
        "component": "qemu",
        "configure_flags": ["--target-list=x86_64-softmmu", "--enable-replication", "--disable-docs"],
        "prefix": prefix,
        "work_dir": os.path.join(work, "build"),
        "creates": ["bin/qemu-system-x86_64", "bin/qemu-img"],
        "timeout": 7200,
    }
    if os.environ.get("COLO_FT_QEMU_GIT"):
        args.update(git=os.environ["COLO_FT_QEMU_GIT"], ref=os.environ.get("COLO_FT_QEMU_REF", "v11.1.0"))
    else:
        args.update(apt_package="qemu", apt_sources=[
            f"deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} trixie-backports main"])
    built, cold = module(args)
    assert built["changed"], built
    out = subprocess.run([os.path.join(prefix, "bin/qemu-system-x86_64"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    major, minor = map(int, re.search(r"version (\d+)\.(\d+)", out).groups())
    assert (major, minor) >= (11, 1), out
    # The replication block driver is there (the COLO disk needs it).
    drivers = subprocess.run([os.path.join(prefix, "bin/qemu-img"), "--help"], capture_output=True, text=True,
                             check=False).stdout
    assert "replication" in drivers or "quorum" in drivers
    again, rerun = module(args)
    assert not again["changed"]
    with open(os.path.join(REPO, "tests/output/source-build-qemu-metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"cold_build_s": round(cold, 1), "rerun_s": round(rerun, 1), "resolved": built["resolved"],
                   "version": out.splitlines()[0]}, f, indent=2)
