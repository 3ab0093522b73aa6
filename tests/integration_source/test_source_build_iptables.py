"""A real source build through the colo.ft.source_build module: iptables, the seed's component.

From the Debian source package (apt-get source, with deb-src lines in a private apt configuration of
the module: the machine's apt sources stay as they are), with a patch, installed to a prefix. Then the
rerun is skipped by the build stamp, and a changed patch rebuilds. About a minute per build on 2 cores.
Needs root (the build runs as the module's unprivileged build user, the install as root) and Debian's
mirror. Timings go to tests/output/source-build-metrics.json.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from colo_lab.image import debian_mirror

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
# COLO_FT_DEBIAN_MIRROR, or else the mirror this machine's apt sources use (COLO_LAB_MIRROR does as well).
MIRROR = os.environ.get("COLO_FT_DEBIAN_MIRROR") or debian_mirror()
PATCH = """\
--- a/COLO-FT-PATCH
+++ b/COLO-FT-PATCH
@@ -0,0 +1 @@
+colo-ft test patch {version}
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="source builds install as root")


def codename() -> str:
    with open("/etc/os-release", encoding="utf-8") as f:
        info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    return info.get("VERSION_CODENAME", "").strip('"') or "bookworm"


def test_iptables_from_debian_source_with_patch_stamp_and_rebuild(work, run_module, run_playbook):
    patch = os.path.join(work, "colo-ft.patch")
    with open(patch, "w", encoding="utf-8") as f:
        f.write(PATCH.format(version="v1"))
    prefix = os.path.join(work, "prefix")
    args = {
        "component": "iptables",
        "apt_package": "iptables",
        "apt_sources": [f"deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} {codename()} main"],
        "patches": [patch],
        "configure_command": './configure --prefix="$PREFIX"',
        "configure_flags": ["--disable-nftables"],
        "install_command": 'make install && install -m 0644 COLO-FT-PATCH "$PREFIX/share/COLO-FT-PATCH"',
        "prefix": prefix,
        "work_dir": os.path.join(work, "build"),
        "creates": ["sbin/xtables-legacy-multi"],
    }
    metrics = {}

    plan, _elapsed = run_module(args, check=True)
    assert plan["changed"] and plan["reason"].startswith("no build stamp")
    assert not os.path.exists(prefix)

    first, metrics["cold_build_s"] = run_module(args)
    assert first["changed"] and first["resolved"], first
    assert first["build_user"] == "colo-build"
    version = subprocess.run([os.path.join(prefix, "sbin/xtables-legacy-multi"), "iptables", "-V"],
                             capture_output=True, text=True, check=True).stdout
    assert version.startswith("iptables v"), version
    with open(os.path.join(prefix, "share/COLO-FT-PATCH"), encoding="utf-8") as f:
        assert f.read() == "colo-ft test patch v1\n"
    # Built as the unprivileged user, installed as root.
    assert os.stat(os.path.join(first["source_dir"], "Makefile")).st_uid != 0
    with open(first["stamp_file"], encoding="utf-8") as f:
        stamp = json.load(f)
    assert stamp["digest"] == first["digest"] and stamp["resolved"] == first["resolved"]

    again, metrics["rerun_s"] = run_module(args)
    assert not again["changed"] and again["reason"].startswith("built already"), again

    with open(patch, "w", encoding="utf-8") as f:
        f.write(PATCH.format(version="v2"))
    plan, _elapsed = run_module(args, check=True)
    assert plan["changed"] and plan["changed_inputs"] == ["patches"], plan
    rebuilt, metrics["rebuild_after_patch_change_s"] = run_module(args)
    assert rebuilt["changed"] and rebuilt["reason"] == "inputs changed: patches"
    with open(os.path.join(prefix, "share/COLO-FT-PATCH"), encoding="utf-8") as f:
        assert f.read() == "colo-ft test patch v2\n"

    # The same inputs through the colo_host role: its variables plus colo_host_iptables_build_options, whose
    # Debian source replaces the role's default git source. Nothing to build; no templated task args.
    role_vars = {
        "colo_host_iptables_build_packages": [],
        "colo_host_iptables_configure_command": args["configure_command"],
        "colo_host_iptables_configure_flags": args["configure_flags"],
        "colo_host_iptables_patches": args["patches"],
        "colo_host_iptables_prefix": prefix,
        "colo_host_source_work_dir": args["work_dir"],
        "colo_host_iptables_build_options": {k: args[k] for k in ("apt_package", "apt_sources", "install_command",
                                                                  "creates")},
    }
    for check in (True, False):
        out = run_playbook("colo_host_source_iptables.yml", role_vars, check=check)
        assert "changed=0" in out and "failed=0" in out, out
        assert "template for task args" not in out, out

    metrics = {k: round(v, 1) for k, v in metrics.items()}
    metrics["resolved"] = first["resolved"]
    os.makedirs(os.path.join(REPO, "tests/output"), exist_ok=True)
    with open(os.path.join(REPO, "tests/output/source-build-metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
