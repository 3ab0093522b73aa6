"""colo.ft source builds: stamp, plan and steps (pure), and real local builds from a tarball and a git repo."""
from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import build_plan, build_spec
from ansible_collections.colo.ft.plugins.module_utils.colo import source_build as sb


def spec(tmp_path, **kw):
    base = dict(component="demo", source=build_spec.Source(tarball="file:///nowhere/demo-1.0.tar.gz"),
                prefix=str(tmp_path / "prefix"), work_dir=str(tmp_path / "work"), build_user="root")
    base.update(kw)
    return build_spec.BuildSpec(**base)


def plan_for(s, stamp=None, missing=None, patches=()):
    return build_plan.plan(s, build_plan.inputs(s, list(patches)), stamp, missing)


def test_no_stamp_builds(tmp_path):
    p = plan_for(spec(tmp_path))
    assert p.needed and p.reason.startswith("no build stamp at ") and p.reason.endswith("demo.json")


def test_same_inputs_skip_and_changes_are_named(tmp_path):
    s = spec(tmp_path, source=build_spec.Source(git="https://example.invalid/x.git", ref="v1"))
    p = plan_for(s)
    stamp = {"format": build_spec.STAMP_FORMAT, "digest": p.digest, "inputs": p.inputs}
    assert not plan_for(s, stamp).needed
    s2 = spec(tmp_path, source=build_spec.Source(git="https://example.invalid/x.git", ref="v2"), configure_flags=("--x",))
    p2 = plan_for(s2, stamp)
    assert p2.needed and p2.changed_inputs == ("configure", "source.ref")
    assert p2.reason == "inputs changed: configure, source.ref"
    p3 = plan_for(s, stamp, patches=[{"name": "a.patch", "sha256": "0" * 64}])
    assert p3.changed_inputs == ("patches",)
    assert plan_for(s, stamp, missing=["/p/bin/x"]).reason == "installed files missing: /p/bin/x"


def test_every_input_is_in_the_digest(tmp_path):
    base = spec(tmp_path)
    d0 = plan_for(base).digest
    variants = [
        dict(source=build_spec.Source(tarball="file:///nowhere/demo-1.1.tar.gz")),
        dict(source=build_spec.Source(tarball="file:///nowhere/demo-1.0.tar.gz", tarball_sha256="a" * 64)),
        dict(configure_command="./configure"),
        dict(configure_flags=("--enable-replication",)),
        dict(build_command="make all"),
        dict(install_command="make install-strip"),
        dict(prefix=str(tmp_path / "other")),
        dict(environment={"CFLAGS": "-O1"}),
        dict(subdir="src"),
    ]
    digests = {plan_for(spec(tmp_path, **v)).digest for v in variants}
    assert d0 not in digests and len(digests) == len(variants)
    # The build user, work dir and log are not inputs.
    assert plan_for(spec(tmp_path, build_user="someone", work_dir=str(tmp_path / "w2"))).digest == d0


def test_patch_content_is_hashed(tmp_path):
    patch = tmp_path / "fix.patch"
    patch.write_text("one\n")
    s = spec(tmp_path, patches=(str(patch),))
    first = build_plan.patch_digests(s)
    patch.write_text("two\n")
    assert build_plan.patch_digests(s) != first
    with pytest.raises(build_spec.BuildError, match="cannot read patch"):
        build_plan.patch_digests(spec(tmp_path, patches=(str(tmp_path / "missing.patch"),)))


def test_steps_in_order(tmp_path):
    s = spec(tmp_path, source=build_spec.Source(apt_package="iptables", apt_sources=("deb-src http://deb.debian.org/debian bookworm main",)),
             patches=("/p/a.patch", "/p/b.patch"), configure_flags=("--disable-nftables", "CFLAGS=-O2 -g"))
    st = build_plan.steps(s)
    assert [x.name for x in st] == ["fetch", "fetch", "patch a.patch", "patch b.patch", "configure", "build", "install"]
    assert st[0].argv[-1] == "update" and "Dir::Etc::SourceList=" + s.apt_dir + "/sources.list" in st[0].argv
    assert st[1].argv[-2:] == ("source", "iptables")
    assert st[2].argv[-1].endswith("/patches/00-a.patch") and st[3].argv[-1].endswith("/patches/01-b.patch")
    assert st[4].argv == ("/bin/sh", "-ec", "./configure --prefix=\"$PREFIX\" --disable-nftables 'CFLAGS=-O2 -g'")
    assert [x.as_root for x in st] == [False] * 6 + [True]
    # The host's apt configuration is used when no deb-src lines are given.
    st = build_plan.steps(spec(tmp_path, source=build_spec.Source(apt_package="hello", apt_version="2.10-3"), configure_command=""))
    assert [x.argv for x in st[:1]] == [("apt-get", "-q", "source", "hello=2.10-3")]
    assert [x.name for x in st] == ["fetch", "build", "install"]


@pytest.mark.parametrize("kw, msg", [
    (dict(component="a b"), "component"),
    (dict(source=build_spec.Source()), "exactly one source"),
    (dict(source=build_spec.Source(git="x", tarball="y")), "got git, tarball"),
    (dict(source=build_spec.Source(git="https://x")), "needs a ref"),
    (dict(source=build_spec.Source(apt_package="x", apt_sources=("deb http://x bookworm main",))), "not a deb-src"),
    (dict(prefix="usr/local"), "prefix must be an absolute"),
    (dict(subdir="../x"), "subdir"),
    (dict(patches=("rel.patch",)), "absolute"),
])
def test_bad_specs_are_refused(tmp_path, kw, msg):
    with pytest.raises(build_spec.BuildError, match=msg):
        spec(tmp_path, **kw).validate()


# -- real builds (local sources, a few seconds) ------------------------------------------------

MAKEFILE = "all:\n\tprintf '%s\\n' \"$$(cat VERSION)\" > out.txt\ninstall:\n\tmkdir -p $(PREFIX)/share\n\tcp out.txt $(PREFIX)/share/demo.txt\n"


def make_tarball(path, version="1.0"):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in (("Makefile", MAKEFILE), ("VERSION", version)):
            data = text.encode()
            info = tarfile.TarInfo(f"demo-{version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_tarball_build_patch_stamp_rebuild(tmp_path):
    tarball = tmp_path / "demo-1.0.tar.gz"
    make_tarball(tarball)
    patch = tmp_path / "v.patch"
    patch.write_text("--- a/VERSION\n+++ b/VERSION\n@@ -1 +1 @@\n-1.0\n\\ No newline at end of file\n+1.0-colo\n")
    s = spec(tmp_path, source=build_spec.Source(tarball=tarball.as_uri()), configure_command="", patches=(str(patch),),
             creates=("share/demo.txt",))
    res = sb.Builder(s).run(check=True)
    assert res.changed and not os.path.exists(s.stamp_file) and len(res.steps) == 5
    res = sb.Builder(s).run()
    assert res.changed and res.resolved == build_plan.file_sha256(str(tarball))
    assert (tmp_path / "prefix/share/demo.txt").read_text() == "1.0-colo\n"
    stamp = json.loads(open(s.stamp_file, encoding="utf-8").read())
    assert stamp["digest"] == res.plan.digest and stamp["inputs"]["patches"][0]["name"] == "v.patch"
    assert "== " in open(s.log_path, encoding="utf-8").read()
    assert not sb.Builder(s).run().changed
    # A deleted install is rebuilt; a changed patch is rebuilt.
    os.unlink(tmp_path / "prefix/share/demo.txt")
    assert sb.Builder(s).run(check=True).plan.reason.startswith("installed files missing")
    assert sb.Builder(s).run().changed
    patch.write_text(patch.read_text().replace("1.0-colo", "1.0-colo2"))
    p = sb.Builder(s).run(check=True).plan
    assert p.needed and p.changed_inputs == ("patches",)
    sb.Builder(s).run()
    assert (tmp_path / "prefix/share/demo.txt").read_text() == "1.0-colo2\n"


def test_git_build_and_failure_tail(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Makefile").write_text(MAKEFILE)
    (repo / "VERSION").write_text("git-1")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@e")
    for argv in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "one"], ["git", "tag", "v1"]):
        subprocess.run(argv, cwd=repo, env=env, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    s = spec(tmp_path, source=build_spec.Source(git=str(repo), ref="v1"), configure_command="")
    res = sb.Builder(s).run()
    assert res.resolved == head and (tmp_path / "prefix/share/demo.txt").read_text() == "git-1\n"
    bad = spec(tmp_path, component="bad", source=build_spec.Source(git=str(repo), ref="v1"), configure_command="",
               build_command="echo about to fail; exit 3")
    with pytest.raises(build_spec.BuildError, match=r"build of bad failed \(exit 3\)") as exc:
        sb.Builder(bad).run()
    assert "about to fail" in exc.value.log_tail and exc.value.log_file == bad.log_path
    assert not os.path.exists(bad.stamp_file)
