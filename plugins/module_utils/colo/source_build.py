"""Building a component (QEMU, iptables, a kernel, Xen, ...) from source, once per set of inputs.

Stdlib only, no Ansible imports (the module colo.ft.source_build is a thin layer over it).

A build is: fetch the source (a git URL and ref, a tarball URL, or a Debian source package with
``apt-get source``) into a fresh tree, apply the patches with ``patch -p1``, run the configure, build
and install commands. Everything but the install runs as an unprivileged build user when the caller
is root (a system user, created when missing); the install runs as the caller.

A stamp (JSON) records the sha256 of every input that decides the result: the source (URL, ref or
package and version, tarball checksum), the content of every patch, the commands and flags, the
prefix and the environment. A later call with the same inputs (and the stamp in place, and every
``creates`` path present) does nothing. ``plan()`` says whether a build is needed and why, without
touching anything; ``steps()`` lists the commands it would run. Both are pure.

Progress goes to a log file (one header line per command, then its output).
"""
from __future__ import annotations

import datetime
import json
import os
import pwd
import shlex
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import proc
from ansible_collections.colo.ft.plugins.module_utils.colo.build_plan import (
    Plan,
    Step,
    file_sha256,
    inputs,
    patch_digests,
    plan,
    read_stamp,
    steps,
    tail,
    tarball_name,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.build_spec import SAFE_PATH, STAMP_FORMAT, BuildError, BuildSpec


@dataclass
class Result:
    changed: bool
    plan: Plan
    steps: list[str]
    resolved: str = ""
    elapsed_s: float = 0.0
    build_user: str = ""


class Builder:
    """Runs a BuildSpec. check=True plans only."""

    def __init__(self, spec: BuildSpec, force: bool = False):
        self.spec = spec.validate()
        self.force = force
        self.is_root = os.geteuid() == 0
        self._log = None

    # -- planning

    def plan(self) -> Plan:
        inp = inputs(self.spec, patch_digests(self.spec))
        missing = [p for p in self.spec.creates_paths() if not os.path.lexists(p)]
        return plan(self.spec, inp, read_stamp(self.spec.stamp_file), missing, self.force)

    def user_name(self) -> str:
        """Who runs the unprivileged steps: the build user as root, else the caller."""
        if self.is_root:
            return self.spec.build_user
        return pwd.getpwuid(os.geteuid()).pw_name

    def run(self, check: bool = False) -> Result:
        p = self.plan()
        described = [s.describe() for s in steps(self.spec)]
        if not p.needed or check:
            return Result(p.needed, p, described if p.needed else [], build_user=self.user_name())
        t0 = time.monotonic()
        resolved = self._build()
        self._write_stamp(p, resolved, time.monotonic() - t0)
        return Result(True, p, described, resolved, round(time.monotonic() - t0, 1), self.user_name())

    # -- acting

    def _ids(self) -> tuple[int, int]:
        if not self.is_root:
            return os.geteuid(), os.getegid()
        user = self.spec.build_user
        if user == "root":
            return 0, 0
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            res = proc.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                            self.spec.work_dir, "--shell", "/usr/sbin/nologin", user])
            if res.returncode != 0:
                raise BuildError(f"cannot create build user {user}: {res.stderr.strip()}") from None
            self._note(f"created system user {user}")
            pw = pwd.getpwnam(user)
        return pw.pw_uid, pw.pw_gid

    def _note(self, line: str) -> None:
        if self._log:
            stamp = datetime.datetime.now().strftime("%H:%M:%S")
            self._log.write(f"== {stamp} {line}\n")
            self._log.flush()

    def _env(self) -> dict[str, str]:
        s = self.spec
        env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": s.component_dir, "PREFIX": s.prefix,
               "JOBS": str(os.cpu_count() or 1), "SRC_DIR": s.source_dir, "WORK_DIR": s.component_dir,
               "COMPONENT": s.component}
        env.update({str(k): str(v) for k, v in s.environment.items()})
        return env

    def _exec(self, step: Step, uid: int, gid: int) -> None:
        s = self.spec
        self._note(step.describe())
        kwargs: dict[str, Any] = {}
        if self.is_root and not step.as_root and uid != 0:
            kwargs.update(user=uid, group=gid, extra_groups=[])
        try:
            res = proc.run(list(step.argv), timeout=s.timeout, cwd=step.cwd, env=self._env(), stdin=subprocess.DEVNULL,
                           stdout=self._log, stderr=subprocess.STDOUT, umask=0o022, **kwargs)
        except subprocess.TimeoutExpired:
            self._note(f"timed out after {s.timeout:.0f} s")
            raise self._failed(f"{step.name} of {s.component} timed out after {s.timeout:.0f} s") from None
        except OSError as exc:
            self._note(f"cannot run: {exc}")
            raise self._failed(f"{step.name} of {s.component} could not run {step.argv[0]}: {exc}") from None
        if res.returncode != 0:
            self._note(f"exit {res.returncode}")
            raise self._failed(f"{step.name} of {s.component} failed (exit {res.returncode}): {shlex.join(step.argv)}")

    def _failed(self, msg: str) -> BuildError:
        if self._log:
            self._log.flush()
        return BuildError(f"{msg}; log: {self.spec.log_path}", self.spec.log_path, tail(self.spec.log_path))

    def _mkdir(self, path: str, uid: int, gid: int) -> None:
        os.makedirs(path, exist_ok=True)
        if self.is_root:
            os.chown(path, uid, gid)

    def _build(self) -> str:
        s = self.spec
        os.makedirs(s.work_dir, mode=0o755, exist_ok=True)
        os.makedirs(os.path.dirname(s.log_path), exist_ok=True)
        with open(s.log_path, "w", encoding="utf-8") as log:
            self._log = log
            try:
                return self._build_logged()
            finally:
                self._log = None

    def _build_logged(self) -> str:
        s = self.spec
        uid, gid = self._ids()
        self._note(f"building {s.component} from {s.source.describe()} into {s.prefix} "
                   f"as {self.user_name()} (install as {'root' if self.is_root else self.user_name()})")
        # A fresh tree every time: a build never sees leftovers of another set of inputs.
        for d in (s.source_dir, s.download_dir, s.patch_dir):
            shutil.rmtree(d, ignore_errors=True)
        for d in (s.component_dir, s.download_dir, s.patch_dir):
            self._mkdir(d, uid, gid)
        if s.source.kind == "tarball":
            self._download(uid, gid)
        if s.source.kind == "apt" and s.source.apt_sources:
            self._apt_config(uid, gid)
        for i, patch in enumerate(s.patches):
            copy = os.path.join(s.patch_dir, f"{i:02d}-{os.path.basename(patch)}")
            shutil.copyfile(patch, copy)
            if self.is_root:
                os.chown(copy, uid, gid)
        resolved = ""
        for step in steps(s):
            if step.name == "configure" or (step.name == "build" and not s.configure_command):
                if not os.path.isdir(s.run_dir):
                    raise self._failed(f"subdir {s.subdir} does not exist in the source of {s.component}")
            self._exec(step, uid, gid)
            if step.argv[:2] == ("apt-get", "-q") and step.argv[-2] == "source":
                resolved = self._adopt_apt_tree()
        if s.source.kind == "git":
            res = proc.run(["git", "-C", s.source_dir, "rev-parse", "HEAD"], **self._as_build_user(uid, gid))
            resolved = res.stdout.strip()
        elif s.source.kind == "tarball":
            resolved = file_sha256(os.path.join(s.download_dir, tarball_name(s.source.tarball)))
        self._note(f"done ({resolved or 'no version'})")
        return resolved

    def _as_build_user(self, uid: int, gid: int) -> dict[str, Any]:
        if self.is_root and uid != 0:
            return {"user": uid, "group": gid, "extra_groups": [], "env": self._env()}
        return {"env": self._env()}

    def _download(self, uid: int, gid: int) -> None:
        s = self.spec
        url = s.source.tarball
        dest = os.path.join(s.download_dir, tarball_name(url))
        self._note(f"download {url}")
        try:
            # A plain opener (http, https, file): this library does not use Ansible's module_utils.
            with urllib.request.build_opener().open(url, timeout=120) as r, open(dest, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except (OSError, ValueError) as exc:
            raise self._failed(f"cannot download {url}: {exc}") from None
        got = file_sha256(dest)
        self._note(f"sha256 {got}")
        if s.source.tarball_sha256 and got != s.source.tarball_sha256.lower():
            raise self._failed(f"{url} has sha256 {got}, expected {s.source.tarball_sha256.lower()}")
        if self.is_root:
            os.chown(dest, uid, gid)

    def _apt_config(self, uid: int, gid: int) -> None:
        """A private apt configuration: only our deb-src lines, our own lists (the host's stay untouched)."""
        a = self.spec.apt_dir
        for d in (a, f"{a}/sources.list.d", f"{a}/lists", f"{a}/lists/partial", f"{a}/cache",
                  f"{a}/cache/archives", f"{a}/cache/archives/partial"):
            self._mkdir(d, uid, gid)
        path = f"{a}/sources.list"
        with open(path, "w", encoding="utf-8") as f:
            f.write("# written by colo.ft source_build; used only with -o Dir::Etc::SourceList\n")
            f.write("\n".join(self.spec.source.apt_sources) + "\n")
        if self.is_root:
            os.chown(path, uid, gid)

    def _adopt_apt_tree(self) -> str:
        """Move the tree apt-get source unpacked to src/; returns the package version (from the .dsc)."""
        s = self.spec
        entries = os.listdir(s.download_dir)
        dirs = [e for e in entries if os.path.isdir(os.path.join(s.download_dir, e))]
        dscs = sorted(e for e in entries if e.endswith(".dsc"))
        if len(dirs) != 1:
            raise self._failed(f"apt-get source {s.source.apt_package} unpacked {len(dirs)} trees, expected one")
        os.rename(os.path.join(s.download_dir, dirs[0]), s.source_dir)
        version = dscs[0][:-4].split("_", 1)[1] if dscs and "_" in dscs[0] else ""
        self._note(f"source package {dscs[0] if dscs else '?'} unpacked to {s.source_dir}")
        return version

    def _write_stamp(self, p: Plan, resolved: str, elapsed: float) -> None:
        s = self.spec
        data = {
            "format": STAMP_FORMAT,
            "component": s.component,
            "digest": p.digest,
            "inputs": p.inputs,
            "resolved": resolved,
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(elapsed, 1),
            "log_file": s.log_path,
        }
        d = os.path.dirname(s.stamp_file)
        os.makedirs(d, mode=0o755, exist_ok=True)
        tmp = f"{s.stamp_file}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, s.stamp_file)
