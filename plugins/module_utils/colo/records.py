"""What the launcher records (spec.json) and reports, and what it decides from a record.

State of a VM lives in <state_root>/<name>/; spec.json holds the spec, role
and argv it was started with. existing_verdict() decides, from what is found
there, whether a start has anything to do.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.process import same_argv
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import LIVE_SETTINGS, STATE_ROOT, VMSpec


@dataclass
class VMStatus:
    name: str
    running: bool                 # a QEMU process for this VM exists
    pid: int | None = None
    qmp: bool = False             # its QMP socket answered
    qemu_status: str | None = None  # query-status: running, paused, inmigrate, colo, ...
    role: str | None = None       # role recorded at start (spec.json)
    manager: str | None = None    # "systemd" or "daemon"
    state_dir: str = ""
    started_at: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StartResult:
    changed: bool
    name: str
    role: str
    pid: int | None
    manager: str
    qmp_path: str
    message: str
    elapsed_s: float = 0.0
    argv: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # live settings recorded anew, "key old -> new"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StopResult:
    changed: bool
    name: str
    method: str                   # "quit", "sigterm", "sigkill" or "none" (was not running)
    elapsed_s: float = 0.0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_record(spec_or_dir: VMSpec | str) -> dict[str, Any] | None:
    """The spec.json written at start (keys: spec, role, argv, manager, started_at)."""
    state_dir = spec_or_dir.state_dir if isinstance(spec_or_dir, VMSpec) else spec_or_dir
    try:
        with open(os.path.join(state_dir, "spec.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def known_vms(state_root: str = STATE_ROOT) -> list[str]:
    """Names of the VMs started under state_root (those with a spec.json), sorted."""
    try:
        entries = sorted(os.listdir(state_root))
    except OSError:
        return []
    return [e for e in entries if os.path.isfile(os.path.join(state_root, e, "spec.json"))]


def existing_verdict(spec: VMSpec, role: str, answered_name: str | None, pid: int | None,
                     record: dict[str, Any] | None, argv_now: list[str] | None, argv: list[str]) -> bool:
    """What is on spec's state directory, from what was found there: True if this VM already runs
    as asked (QMP name matches and the process argv or the recorded spec and role match), False
    if nothing runs; LaunchError for another VM, another configuration or a mute QEMU."""
    if answered_name is not None:
        if answered_name != spec.name:
            raise LaunchError(f"a different VM ({answered_name!r}) answers on {spec.qmp_path}; "
                              f"refusing to start {spec.name!r} there")
        record = record or {}
        same_record = record.get("role") == role and _same_but_live(record.get("spec"), spec)
        if same_record or same_argv(argv_now, argv):
            return True
        raise LaunchError(f"VM {spec.name} is already running with another configuration "
                          f"({_differences(record, spec, role)}); stop it first")
    if pid is not None:
        raise LaunchError(f"VM {spec.name}: QEMU pid {pid} exists but its QMP socket {spec.qmp_path} "
                          "does not answer; not starting a second one (stop it first)")
    return False


def _same_but_live(recorded: dict[str, Any] | None, spec: VMSpec) -> bool:
    """The recorded spec is spec, but for settings that change without a restart (LIVE_SETTINGS)."""
    if not isinstance(recorded, dict):
        return False
    asked = spec.to_dict()
    return ({k: v for k, v in recorded.items() if k not in LIVE_SETTINGS}
            == {k: v for k, v in asked.items() if k not in LIVE_SETTINGS})


def live_setting_changes(record: dict[str, Any] | None, spec: VMSpec) -> dict[str, Any]:
    """{field: new value} of the LIVE_SETTINGS in which spec differs from the recorded spec."""
    recorded = (record or {}).get("spec")
    if not isinstance(recorded, dict):
        return {}
    return {k: getattr(spec, k) for k in LIVE_SETTINGS if recorded.get(k) != getattr(spec, k)}


def _differences(record: dict[str, Any], spec: VMSpec, role: str) -> str:
    if not record:
        return "its command line differs and no matching spec.json was recorded"
    diffs = []
    if record.get("role") != role:
        diffs.append(f"role {record.get('role')} (asked {role})")
    old = record.get("spec") or {}
    for key, value in spec.to_dict().items():
        if key in old and old[key] != value:
            diffs.append(f"{key} {old[key]!r} (asked {value!r})")
    return "; ".join(diffs) or "its command line differs and no matching spec.json was recorded"
