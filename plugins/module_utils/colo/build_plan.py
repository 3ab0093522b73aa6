"""The pure half of source_build.py: inputs and their digest, the stamp, the plan and the steps.

plan() says whether a build is needed and why, without touching anything; steps() lists the
commands a build runs. Stdlib only, no Ansible imports.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

from ansible_collections.colo.ft.plugins.module_utils.colo.build_spec import STAMP_FORMAT, BuildError, BuildSpec


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
