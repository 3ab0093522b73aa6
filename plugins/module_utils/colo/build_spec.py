"""What to build (BuildSpec, Source) and how it is checked: the input of source_build.py.

Stdlib only, no Ansible imports.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

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
