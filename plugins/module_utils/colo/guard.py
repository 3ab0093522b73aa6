"""Refuse QEMU builds that are known not to run COLO reliably.

Measured (docs/qemu-colo.md, "QEMU versions"): 11.1.3 runs COLO cleanly; 10.0.x/10.1.x fail with
"Received invalid message 0x0000" (with return-path) or deadlock the primary
after checkpoint 2 (without); 7.2 deadlocks at checkpoint 2-3 under TCG. The
releases in between were not tested, so anything before 11 is refused. A build must also have the COLO pieces compiled in:
the `replication` block driver, the `colo-compare` object, the `x-colo`
migration capability and `x-colo-lost-heartbeat`.

The guard owns feature probing: from a running VM over QMP, or from a short-lived
`-machine none` QEMU started for it (probe_features_offline, qemu_report).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import proc
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import PROXY_QOM_TYPES
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, UnsupportedQemu
from ansible_collections.colo.ft.plugins.module_utils.colo.process import pid_alive
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

MIN_VERSION = (11, 0, 0)
TESTED_VERSION = (11, 1, 3)
INSTALL_HINT = (
    "install QEMU >= 11.1 (Debian 13: apt-get install -t trixie-backports qemu-system-x86), "
    "or set the unsafe override (allow_unsupported_qemu) if you know what you are doing"
)

# (major, minor) -> why; checked before the generic minimum so the message names the bug.
KNOWN_BROKEN: dict[tuple[int, int], str] = {
    (10, 0): 'COLO fails with "Received invalid message 0x0000" (with return-path) '
             "or the primary deadlocks after checkpoint 2 (without)",
    (10, 1): 'COLO fails with "Received invalid message 0x0000" (with return-path) '
             "or the primary deadlocks after checkpoint 2 (without)",
    (7, 2): "under TCG the primary deadlocks at checkpoint 2-3 (BQL held by the COLO thread) "
            "and the secondary's memory is corrupted when guest RAM is a multiple of 256 KiB",
}

# Commands the COLO sequences issue.
REQUIRED_COMMANDS = (
    "x-colo-lost-heartbeat", "query-colo-status", "migrate-set-capabilities", "migrate-set-parameters",
    "migrate", "migrate-incoming", "nbd-server-start", "nbd-server-add", "nbd-server-stop",
    "drive-mirror", "block-job-cancel", "blockdev-add", "blockdev-del", "x-blockdev-change",
    "object-add", "object-del", "chardev-add", "chardev-remove",
)

_VERSION_RE = re.compile(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?(?:\s*\(([^)]*)\))?")


@dataclass(frozen=True)
class QemuVersion:
    major: int
    minor: int
    micro: int = 0
    package: str = ""

    @property
    def tuple(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.micro)

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.micro}"
        return f"{s} ({self.package})" if self.package else s


@dataclass
class QemuFeatures:
    """COLO pieces found in a running QEMU (from QMP introspection)."""

    replication_driver: bool = False
    colo_compare: bool = False
    x_colo_capability: bool = False
    lost_heartbeat: bool = False
    missing_types: list[str] = field(default_factory=list)
    missing_commands: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return (self.replication_driver and self.x_colo_capability
                and not self.missing_types and not self.missing_commands)

    def problems(self) -> list[str]:
        out = []
        if not self.replication_driver:
            out.append("block driver 'replication' is missing (QEMU built without CONFIG_REPLICATION)")
        if not self.x_colo_capability:
            out.append("migration capability 'x-colo' is missing (QEMU built without COLO)")
        if self.missing_types:
            out.append("object types missing: " + ", ".join(self.missing_types))
        if self.missing_commands:
            out.append("QMP commands missing: " + ", ".join(self.missing_commands))
        return out


@dataclass
class GuardResult:
    ok: bool                              # True: safe to use for COLO (or overridden)
    version: QemuVersion | None
    features: QemuFeatures | None         # None when only the binary was probed
    problems: list[str] = field(default_factory=list)   # why it is refused
    warnings: list[str] = field(default_factory=list)   # allowed, but worth saying
    overridden: bool = False              # refused problems ignored on request

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["version"] = str(self.version) if self.version else None
        return d


def parse_version_output(text: str) -> QemuVersion:
    """Parse `qemu-system-x86_64 --version` output."""
    m = _VERSION_RE.search(text)
    if not m:
        raise UnsupportedQemu(f"cannot read a QEMU version from {text.strip()[:200]!r}")
    return QemuVersion(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), (m.group(4) or "").strip())


def version_problems(version: QemuVersion) -> tuple[list[str], list[str]]:
    """(problems, warnings) for a version, from what was measured."""
    problems: list[str] = []
    warnings: list[str] = []
    why = KNOWN_BROKEN.get((version.major, version.minor))
    if why:
        problems.append(f"QEMU {version} is known broken for COLO: {why}")
    elif version.tuple < MIN_VERSION:
        problems.append(
            f"QEMU {version} is older than 11, which colo.ft requires: 7.2 deadlocks at checkpoint 2-3 under TCG "
            "and 10.0/10.1 break COLO; other releases before 11 were not tested"
        )
    elif version.tuple[:2] < TESTED_VERSION[:2]:
        warnings.append(f"QEMU {version} is not tested with COLO; 11.1.3 is")
    return problems, warnings


def probe_binary(binary: str = "qemu-system-x86_64", timeout: float = 10.0,
                 prefix: list[str] | None = None) -> QemuVersion:
    """Run `BINARY --version` (prefix: e.g. ["chroot", ROOT]) and parse it."""
    argv = [*(prefix or []), binary, "--version"]
    try:
        out = proc.run(argv, timeout=timeout)
    except FileNotFoundError:
        raise UnsupportedQemu(f"{binary} not found: {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise ColoError(f"{binary} --version did not answer within {timeout:g}s") from None
    if out.returncode != 0:
        raise UnsupportedQemu(f"{binary} --version failed ({out.returncode}): {out.stderr.strip()[:300]}")
    return parse_version_output(out.stdout)


def version_from_qmp(client: QMPClient) -> QemuVersion:
    v = client.execute("query-version")
    q = v.get("qemu", {})
    return QemuVersion(int(q.get("major", 0)), int(q.get("minor", 0)), int(q.get("micro", 0)),
                       str(v.get("package", "")).strip())


def _enum_values(entry: dict[str, Any]) -> set[str]:
    # QEMU >= 8 lists enum members as [{"name": ...}]; older ones as "values".
    if "members" in entry:
        return {m["name"] for m in entry["members"] if isinstance(m, dict) and "name" in m}
    return set(entry.get("values", []))


def features_from_schema(schema: list[dict[str, Any]], qom_types: list[str]) -> QemuFeatures:
    """Find the COLO pieces in query-qmp-schema and qom-list-types answers.

    Type names are masked in the schema, so the block driver and migration
    capability enums are recognised by values they always carry.
    """
    commands = {e["name"] for e in schema if e.get("meta-type") == "command"}
    feats = QemuFeatures()
    for entry in schema:
        if entry.get("meta-type") != "enum":
            continue
        values = _enum_values(entry)
        if {"qcow2", "nbd", "quorum"} <= values and "replication" in values:
            feats.replication_driver = True
        if {"return-path", "x-colo"} <= values:
            feats.x_colo_capability = True
    types = set(qom_types)
    feats.colo_compare = "colo-compare" in types
    feats.lost_heartbeat = "x-colo-lost-heartbeat" in commands
    feats.missing_types = [t for t in PROXY_QOM_TYPES if t not in types]
    feats.missing_commands = [c for c in REQUIRED_COMMANDS if c not in commands]
    return feats


def probe_features(client: QMPClient) -> QemuFeatures:
    schema = client.execute("query-qmp-schema")
    types = [t["name"] for t in client.execute("qom-list-types", {"abstract": False})]
    return features_from_schema(schema, types)


def evaluate(version: QemuVersion | None, features: QemuFeatures | None = None,
             allow_unsupported: bool = False) -> GuardResult:
    problems: list[str] = []
    warnings: list[str] = []
    if version is not None:
        problems, warnings = version_problems(version)
    if features is not None:
        problems += features.problems()
    ok = not problems
    overridden = False
    if problems and allow_unsupported:
        ok, overridden = True, True
        warnings = [f"UNSAFE override: {p}" for p in problems] + warnings
    return GuardResult(ok, version, features, problems, warnings, overridden)


def check(binary: str | None = "qemu-system-x86_64", client: QMPClient | None = None,
          allow_unsupported: bool = False, prefix: list[str] | None = None) -> GuardResult:
    """Probe the binary and/or a running QEMU; raise UnsupportedQemu if refused.

    allow_unsupported is the expert override: known-broken versions and
    missing features are reported as warnings instead of refused. Unsafe: the
    measured failures are deadlocks and memory corruption of the secondary.
    """
    version = probe_binary(binary, prefix=prefix) if binary else None
    on_disk = version
    features = None
    if client is not None:
        version = version_from_qmp(client)  # what actually runs wins over the binary on disk
        features = probe_features(client)
    result = evaluate(version, features, allow_unsupported)
    if on_disk and version and on_disk.tuple != version.tuple:
        result.warnings.append(f"the running QEMU is {version} but {binary} on disk is {on_disk}: "
                               "a restart (or a failover) changes the QEMU version")
    if not result.ok:
        raise UnsupportedQemu("; ".join(result.problems) + f". Fix: {INSTALL_HINT}.")
    return result


# -- feature probing for a report (colo.ft.info) --------------------------------------


def features_dict(feats: QemuFeatures, source: str) -> dict[str, Any]:
    return {"replication": feats.replication_driver, "colo_compare": feats.colo_compare,
            "x_colo": feats.x_colo_capability, "lost_heartbeat": feats.lost_heartbeat, "source": source}


def probe_features_offline(binary: str, timeout: float = 15.0) -> QemuFeatures:
    """Start `BINARY -machine none -S -daemonize` on a private QMP socket, read its features, quit it."""
    tmp = tempfile.mkdtemp(prefix="colo-ft-probe-")
    sock = os.path.join(tmp, "qmp.sock")
    pidfile = os.path.join(tmp, "qemu.pid")
    argv = [binary, "-machine", "none", "-nodefaults", "-no-user-config", "-display", "none", "-S",
            "-qmp", f"unix:{sock},server=on,wait=off", "-pidfile", pidfile, "-daemonize"]
    pid = None
    try:
        # -daemonize: returns once QEMU is initialised (its QMP socket listens).
        try:
            out = proc.run(argv, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ColoError(f"{binary} failed to start for a feature probe: {exc}") from None
        if out.returncode != 0:
            raise ColoError(f"{binary} failed to start for a feature probe (exit {out.returncode}): "
                            f"{out.stderr.strip()[:300]}")
        try:
            with open(pidfile, encoding="utf-8") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            pid = None
        with QMPClient(sock, timeout=timeout) as qmp:
            feats = probe_features(qmp)
            try:
                qmp.execute("quit")
            except ColoError:
                pass
        return feats
    finally:
        if pid is not None:
            deadline = time.monotonic() + 5.0
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)


def qemu_report(binary: str, probe: bool, running: list[VMSpec], offline: bool = True) -> dict[str, Any]:
    """Version, features and verdict of the host's QEMU (colo.ft.info's `qemu`). Features come from
    the first running VM whose QEMU is this binary's version, else (offline) from a probe QEMU."""
    out: dict[str, Any] = {"binary": binary, "installed": False, "version": None, "supported": False,
                           "reason": "", "warnings": [], "features": None}
    try:
        version = probe_binary(binary)
    except ColoError as exc:
        out["reason"] = str(exc)
        return out
    out.update(installed=True, version=str(version))
    feats = None
    if probe:
        for spec in running:
            try:
                with QMPClient(spec.qmp_path, timeout=5.0) as qmp:
                    if version_from_qmp(qmp).tuple != version.tuple:
                        continue  # this VM runs another QEMU than the binary on disk
                    feats = probe_features(qmp)
                    out["features"] = features_dict(feats, f"vm:{spec.name}")
                    break
            except ColoError:
                continue
        if feats is None and offline:
            try:
                feats = probe_features_offline(binary)
                out["features"] = features_dict(feats, "probe")
            except ColoError as exc:
                out["warnings"].append(f"features not probed: {exc}")
    result = evaluate(version, feats)
    out["supported"] = result.ok
    out["warnings"] += result.warnings
    if result.ok:
        out["reason"] = f"QEMU {version} can run COLO" + ("" if feats else " (features not probed)")
    else:
        out["reason"] = "; ".join(result.problems) + f". Fix: {INSTALL_HINT}."
    return out
