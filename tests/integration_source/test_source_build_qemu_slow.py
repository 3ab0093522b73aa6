"""Slow: QEMU >= 11.1 built from source through colo.ft.source_build with the colo_host defaults' flags.

Not in the default CI run (tens of minutes on 2 cores): COLO_FT_SLOW=1 tests/run source. The source is
Debian's qemu source package (upstream git is not reachable everywhere), fetched with a private apt
configuration from COLO_FT_QEMU_APT_SUITE (default trixie-backports), pinned with COLO_FT_QEMU_APT_VERSION
when the mirror's pool lacks the newest one; set COLO_FT_QEMU_GIT (and COLO_FT_QEMU_REF) to build from git.
Build dependencies (meson's needs, glib, pixman, ...) must be installed.

The built binary then goes through colo.ft.info: a real QEMU started from the prefix reports the COLO
features (replication driver, colo-compare, x-colo, x-colo-lost-heartbeat), and the version policy's verdict
is checked against the version that was built.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from colo_lab.image import debian_mirror

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
# COLO_FT_DEBIAN_MIRROR, or else the mirror this machine's apt sources use (COLO_LAB_MIRROR does as well).
MIRROR = os.environ.get("COLO_FT_DEBIAN_MIRROR") or debian_mirror()

pytestmark = [
    pytest.mark.skipif(os.environ.get("COLO_FT_SLOW") != "1", reason="slow (QEMU build): set COLO_FT_SLOW=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="source builds install as root"),
]


def build_python(work: str) -> str:
    """A Python with meson >= 1.5 for QEMU's configure (a venv from PyPI)."""
    venv = os.path.join(work, "build-python")
    if not os.path.exists(os.path.join(venv, "bin", "meson")):
        subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True)  # readable by the build user
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "meson==1.9.0"], check=True)
    return os.path.join(venv, "bin", "python3")


def test_qemu_with_replication(work, run_module):
    work = os.environ.get("COLO_FT_QEMU_WORK") or work
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
        suite = os.environ.get("COLO_FT_QEMU_APT_SUITE", "trixie-backports")
        # Debian's +ds tarball drops QEMU's bundled meson wheel and configure only looks offline; a host
        # meson older than 1.5 (Debian 12) is replaced by a Python that has one (Debian 13's meson is new enough).
        # It also drops the firmware blobs (Debian ships them as seabios, ipxe-qemu, ...), as debian/rules does.
        args["configure_flags"] = [*args["configure_flags"], f"--python={build_python(work)}",
                                   "--disable-install-blobs"]
        args.update(apt_package="qemu", apt_version=os.environ.get("COLO_FT_QEMU_APT_VERSION", ""), apt_sources=[
            f"deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} {suite} main"])
    built, cold = run_module(args)
    assert built["changed"], built
    out = subprocess.run([os.path.join(prefix, "bin/qemu-system-x86_64"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    major, minor = map(int, re.search(r"version (\d+)\.(\d+)", out).groups())
    wanted = os.environ.get("COLO_FT_QEMU_APT_VERSION") or os.environ.get("COLO_FT_QEMU_REF") or ""
    if wanted:
        assert re.sub(r"^\d+:|^v", "", wanted).split("+")[0] in out, (wanted, out)
    # A real QEMU from the prefix answers the feature probe: everything COLO needs is compiled in.
    info = run_module({"qemu_binary": os.path.join(prefix, "bin/qemu-system-x86_64")}, "colo.ft.info")[0]
    feats = info["qemu"]["features"]
    needed = ("replication", "colo_compare", "x_colo", "lost_heartbeat")
    assert feats["source"] == "probe" and all(feats[k] for k in needed), feats
    # The version policy is applied to what was built: >= 11.1 is accepted, older ones refused with the reason.
    assert info["qemu"]["supported"] == ((major, minor) >= (11, 1)), info["qemu"]
    again, rerun = run_module(args)
    assert not again["changed"]
    with open(os.path.join(REPO, "tests/output/source-build-qemu-metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"cold_build_s": round(cold, 1), "rerun_s": round(rerun, 1), "resolved": built["resolved"],
                   "version": out.splitlines()[0], "supported": info["qemu"]["supported"],
                   "reason": info["qemu"]["reason"]}, f, indent=2)
