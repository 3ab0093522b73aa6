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
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from ansible_collections.colo.ft.plugins.module_utils.colo import proc
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError

STAMP_FORMAT = 1
DEFAULT_CONFIGURE = './configure --prefix="$PREFIX"'
DEFAULT_BUILD = 'make -j"$JOBS"'
DEFAULT_INSTALL = "make install"
DEFAULT_BUILD_USER = "colo-build"
DEFAULT_WORK_DIR = "/var/tmp/colo-ft-build"
DEFAULT_TIMEOUT = 4 * 3600.0
# PATH of the build commands (the caller's PATH may be a venv's or a login's).
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


class BuildError(ColoError):
    """A source build could not be planned or one of its commands failed."""

    def __init__(self, msg: str, log_file: str | None = None, log_tail: str | None = None):
        super().__init__(msg)
        self.log_file = log_file
        self.log_tail = log_tail


@dataclass(frozen=True)
class Source:
    """Where the source comes from: exactly one of git, tarball, apt_package."""

    git: str = ""
    ref: str = ""
    git_depth: int = 1
    tarball: str = ""
    tarball_sha256: str = ""
    apt_package: str = ""
    apt_version: str = ""
    # deb-src lines for a private apt configuration; empty = the host's own apt sources.
    apt_sources: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        kinds = [k for k, v in (("git", self.git), ("tarball", self.tarball), ("apt", self.apt_package)) if v]
        return kinds[0] if len(kinds) == 1 else ""

    def describe(self) -> str:
        if self.kind == "git":
            return f"git {self.git} at {self.ref}"
        if self.kind == "tarball":
            return f"tarball {self.tarball}"
        if self.kind == "apt":
            return f"Debian source package {self.apt_package}" + (f" {self.apt_version}" if self.apt_version else "")
        return "no source"


@dataclass(frozen=True)
class BuildSpec:
    component: str
    source: Source
    prefix: str = "/usr/local"
    patches: tuple[str, ...] = ()
    configure_command: str = DEFAULT_CONFIGURE
    configure_flags: tuple[str, ...] = ()
    build_command: str = DEFAULT_BUILD
    install_command: str = DEFAULT_INSTALL
    environment: dict[str, str] = field(default_factory=dict)
    subdir: str = ""
    build_user: str = DEFAULT_BUILD_USER
    work_dir: str = DEFAULT_WORK_DIR
    stamp_dir: str = ""
    log_file: str = ""
    creates: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    # -- paths

    @property
    def component_dir(self) -> str:
        return os.path.join(self.work_dir, self.component)

    @property
    def source_dir(self) -> str:
        return os.path.join(self.component_dir, "src")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.source_dir, self.subdir) if self.subdir else self.source_dir

    @property
    def download_dir(self) -> str:
        return os.path.join(self.component_dir, "download")

    @property
    def patch_dir(self) -> str:
        return os.path.join(self.component_dir, "patches")

    @property
    def apt_dir(self) -> str:
        return os.path.join(self.component_dir, "apt")

    @property
    def stamp_file(self) -> str:
        d = self.stamp_dir or os.path.join(self.prefix, "share", "colo-ft", "builds")
        return os.path.join(d, f"{self.component}.json")

    @property
    def log_path(self) -> str:
        return self.log_file or os.path.join(self.work_dir, f"{self.component}.log")

    def creates_paths(self) -> list[str]:
        return [p if os.path.isabs(p) else os.path.join(self.prefix, p) for p in self.creates]

    def configure_line(self) -> str:
        if not self.configure_command:
            return ""
        return " ".join([self.configure_command] + [shlex.quote(f) for f in self.configure_flags])

    # -- checks

    def problems(self) -> list[str]:
        p = []
        if not COMPONENT_RE.match(self.component or ""):
            p.append(f"component {self.component!r} must be 1-64 letters, digits, '.', '_', '+' or '-'")
        kinds = [k for k, v in (("git", self.source.git), ("tarball", self.source.tarball),
                                ("apt_package", self.source.apt_package)) if v]
        if len(kinds) != 1:
            p.append("give exactly one source: git (with ref), tarball or apt_package"
                     + (f" (got {', '.join(kinds)})" if kinds else ""))
        if self.source.git and not self.source.ref:
            p.append("a git source needs a ref (tag, branch or commit)")
        if self.source.tarball_sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", self.source.tarball_sha256):
            p.append("tarball_sha256 must be 64 hex digits")
        if self.source.git_depth < 0:
            p.append("git_depth must be >= 0 (0 = full history)")
        for line in self.source.apt_sources:
            if not line.strip().startswith("deb-src"):
                p.append(f"apt_sources line {line!r} is not a deb-src line")
        for name, path in (("prefix", self.prefix), ("work_dir", self.work_dir)):
            if not os.path.isabs(path or ""):
                p.append(f"{name} must be an absolute path, not {path!r}")
        if self.subdir and (os.path.isabs(self.subdir) or ".." in self.subdir.split("/")):
            p.append(f"subdir {self.subdir!r} must be a relative path inside the source tree")
        if not self.build_command:
            p.append("build_command is empty")
        for patch in self.patches:
            if not os.path.isabs(patch):
                p.append(f"patch {patch!r} must be an absolute path")
        return p

    def validate(self) -> "BuildSpec":
        problems = self.problems()
        if problems:
            raise BuildError(f"cannot build {self.component or '?'}: " + "; ".join(problems))
        return self


# -- inputs, digest, stamp, plan (pure) --------------------------------------------------------


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def patch_digests(spec: BuildSpec, sha256: Callable[[str], str] = file_sha256) -> list[dict[str, str]]:
    """[{name, sha256}] of the patches in order; BuildError naming a missing one."""
    out = []
    for path in spec.patches:
        try:
            out.append({"name": os.path.basename(path), "sha256": sha256(path)})
        except OSError as exc:
            raise BuildError(f"cannot read patch {path} for {spec.component}: {exc.strerror or exc}") from None
    return out


def inputs(spec: BuildSpec, patches: list[dict[str, str]]) -> dict[str, Any]:
    """Every input that decides what gets installed (not the build user, work dir or log)."""
    src = spec.source
    source: dict[str, Any] = {"type": src.kind}
    if src.kind == "git":
        source.update(url=src.git, ref=src.ref)
    elif src.kind == "tarball":
        source.update(url=src.tarball, sha256=src.tarball_sha256.lower())
    elif src.kind == "apt":
        source.update(package=src.apt_package, version=src.apt_version, apt_sources=list(src.apt_sources))
    return {
        "component": spec.component,
        "source": source,
        "patches": patches,
        "configure": spec.configure_line(),
        "build": spec.build_command,
        "install": spec.install_command,
        "prefix": spec.prefix,
        "subdir": spec.subdir,
        "environment": dict(sorted(spec.environment.items())),
    }


def digest(inp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inp, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def changed_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the inputs that differ, e.g. ['patches', 'source.ref']."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        else:
            out.append(key)
    return out


@dataclass(frozen=True)
class Plan:
    needed: bool
    reason: str
    digest: str
    inputs: dict[str, Any]
    changed_inputs: tuple[str, ...] = ()


def plan(spec: BuildSpec, inp: dict[str, Any], stamp: dict[str, Any] | None,
         missing: list[str] | None = None, force: bool = False) -> Plan:
    """Is a build needed? stamp: the recorded stamp or None; missing: creates paths not there."""
    d = digest(inp)
    if force:
        return Plan(True, "forced", d, inp)
    if not stamp:
        return Plan(True, f"no build stamp at {spec.stamp_file}", d, inp)
    if stamp.get("digest") != d:
        diff = changed_inputs(stamp.get("inputs") or {}, inp)
        return Plan(True, "inputs changed: " + (", ".join(diff) or "stamp format"), d, inp, tuple(diff))
    if missing:
        return Plan(True, "installed files missing: " + ", ".join(missing), d, inp)
    return Plan(False, f"built already with these inputs (stamp {spec.stamp_file})", d, inp)


def apt_options(spec: BuildSpec) -> list[str]:
    """apt-get options for a private apt configuration (only the given deb-src lines, own lists)."""
    if not spec.source.apt_sources:
        return []
    a = spec.apt_dir
    return ["-o", f"Dir::Etc::SourceList={a}/sources.list", "-o", f"Dir::Etc::SourceParts={a}/sources.list.d",
            "-o", f"Dir::State::Lists={a}/lists", "-o", f"Dir::Cache={a}/cache", "-o", "Debug::NoLocking=1"]


@dataclass(frozen=True)
class Step:
    """One command: argv run in cwd, as root (install) or as the build user."""

    name: str
    argv: tuple[str, ...]
    cwd: str
    as_root: bool = False

    def describe(self) -> str:
        who = "root" if self.as_root else "build user"
        return f"{self.name} [{who}, in {self.cwd}]: {shlex.join(self.argv)}"


def steps(spec: BuildSpec) -> list[Step]:
    """The commands of a build, in order (a tarball is downloaded by the builder itself)."""
    src, s = spec.source, spec
    out: list[Step] = []
    if src.kind == "git":
        git = ["git", "-C", s.source_dir]
        depth = ["--depth", str(src.git_depth)] if src.git_depth else []
        out += [Step("fetch", ("git", "init", "-q", s.source_dir), s.component_dir),
                Step("fetch", tuple(git + ["remote", "add", "origin", src.git]), s.component_dir),
                Step("fetch", tuple(git + ["fetch", "-q"] + depth + ["origin", src.ref]), s.component_dir),
                Step("fetch", tuple(git + ["checkout", "-q", "FETCH_HEAD"]), s.component_dir)]
    elif src.kind == "tarball":
        archive = os.path.join(s.download_dir, tarball_name(src.tarball))
        out += [Step("fetch", ("mkdir", "-p", s.source_dir), s.component_dir),
                Step("fetch", ("tar", "-xf", archive, "-C", s.source_dir, "--strip-components=1"), s.component_dir)]
    elif src.kind == "apt":
        opts = apt_options(spec)
        if opts:
            out.append(Step("fetch", tuple(["apt-get", "-q"] + opts + ["update"]), s.component_dir))
        pkg = src.apt_package + (f"={src.apt_version}" if src.apt_version else "")
        out.append(Step("fetch", tuple(["apt-get", "-q"] + opts + ["source", pkg]), s.download_dir))
    for i, patch in enumerate(s.patches):
        copy = os.path.join(s.patch_dir, f"{i:02d}-{os.path.basename(patch)}")
        out.append(Step(f"patch {os.path.basename(patch)}",
                        ("patch", "-p1", "--forward", "--batch", "-i", copy), s.source_dir))
    if s.configure_command:
        out.append(Step("configure", ("/bin/sh", "-ec", s.configure_line()), s.run_dir))
    out.append(Step("build", ("/bin/sh", "-ec", s.build_command), s.run_dir))
    if s.install_command:
        out.append(Step("install", ("/bin/sh", "-ec", s.install_command), s.run_dir, as_root=True))
    return out


def tarball_name(url: str) -> str:
    name = os.path.basename(urllib.parse.urlparse(url).path) or "source.tar"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def read_stamp(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == STAMP_FORMAT else None


def tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


# -- the builder (acts) -----------------------------------------------------------------------


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
