"""Loader of the Xen COLO kernel proxy (colo-proxy's xt_PMYCOLO / xt_SECCOLO).

Under Xen the proxy is not QEMU's colo-compare but netfilter modules in dom0.
plan() is pure (tests feed it a KernelState); load() reads the running kernel,
plans and runs modprobe. Nothing here touches QEMU.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass, field

from ansible_collections.colo.ft.plugins.module_utils.colo import proc
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError

PRIMARY_MODULE = "xt_PMYCOLO"
SECONDARY_MODULE = "xt_SECCOLO"
# nf_conntrack_ipv4 was merged into nf_conntrack in Linux 4.19.
CONNTRACK_IPV4_MERGED_IN = (4, 19)


@dataclass(frozen=True)
class KernelState:
    """What the kernel has: module names use '_' (modprobe treats '-' alike)."""

    release: str
    loaded: frozenset[str] = frozenset()
    builtin: frozenset[str] = frozenset()
    # Modules that can be loaded (modules.dep); None = unknown, assume present.
    available: frozenset[str] | None = None
    # Current parameters of loaded modules: {module: {param: value}}.
    params: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    why: str


def norm(name: str) -> str:
    return name.replace("-", "_")


def kernel_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise ColoError(f"cannot parse kernel release {release!r}")
    return int(m.group(1)), int(m.group(2))


def wanted_modules(role: str, release: str, forward_nic: str | None) -> list[tuple[str, dict[str, str]]]:
    """Modules (in load order) and their parameters for a role."""
    if role not in ("primary", "secondary"):
        raise ColoError(f"Xen proxy role must be primary or secondary, not {role!r}")
    mods: list[tuple[str, dict[str, str]]] = [("nf_conntrack", {})]
    if kernel_version(release) < CONNTRACK_IPV4_MERGED_IN:
        mods.append(("nf_conntrack_ipv4", {}))
    mods.append(("nf_nat", {}))
    if role == "primary":
        if not forward_nic:
            raise ColoError("the primary's Xen proxy needs the forward NIC (sec_dev)")
        mods.append((PRIMARY_MODULE, {"sec_dev": forward_nic}))
    else:
        mods.append((SECONDARY_MODULE, {}))
    return mods


def plan(role: str, kernel: KernelState, forward_nic: str | None = None) -> list[Step]:
    """modprobe commands still needed; [] when everything is in place."""
    steps: list[Step] = []
    for name, params in wanted_modules(role, kernel.release, forward_nic):
        if name in kernel.builtin:
            # A built-in cannot be (re)loaded; its parameters were fixed at boot.
            continue
        if name in kernel.loaded:
            have = kernel.params.get(name, {})
            stale = {k: v for k, v in params.items() if have.get(k) != v}
            if not stale:
                continue
            # A module parameter like sec_dev is read at load time only: reload.
            steps.append(Step(("modprobe", "-r", name), f"{name} loaded with other parameters {have}"))
        elif kernel.available is not None and name not in kernel.available:
            raise ColoError(f"kernel module {name} is neither built in nor installed for {kernel.release}")
        argv = ("modprobe", name) + tuple(f"{k}={v}" for k, v in params.items())
        steps.append(Step(argv, f"load {name}"))
    return steps


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _module_name(path: str) -> str:
    base = os.path.basename(path.strip())
    return norm(re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base))


def read_kernel(root: str = "/", release: str | None = None) -> KernelState:
    """The running kernel's module state from /proc, /sys and /lib/modules."""
    release = release or platform.release()
    loaded = {line.split()[0] for line in _read_lines(os.path.join(root, "proc/modules")) if line.strip()}
    sysmod = os.path.join(root, "sys/module")
    builtin = {_module_name(p) for p in _read_lines(os.path.join(root, "lib/modules", release, "modules.builtin"))}
    params: dict[str, dict[str, str]] = {}
    try:
        entries = os.listdir(sysmod)
    except OSError:
        entries = []
    for name in entries:
        # Loadable modules have initstate; built-ins that show in /sys/module do not.
        if not os.path.exists(os.path.join(sysmod, name, "initstate")):
            builtin.add(name)
        pdir = os.path.join(sysmod, name, "parameters")
        if name in (PRIMARY_MODULE, SECONDARY_MODULE) and os.path.isdir(pdir):
            params[name] = {p: "".join(_read_lines(os.path.join(pdir, p))).strip() for p in os.listdir(pdir)}
    dep = _read_lines(os.path.join(root, "lib/modules", release, "modules.dep"))
    available = frozenset(_module_name(line.split(":", 1)[0]) for line in dep if ":" in line) if dep else None
    return KernelState(release, frozenset(loaded), frozenset(builtin), available, params)


def load(role: str, forward_nic: str | None = None, check: bool = False) -> list[str]:
    """Load what the role needs; returns the commands run (or to run, if check)."""
    steps = plan(role, read_kernel(), forward_nic)
    done: list[str] = []
    for step in steps:
        cmd = " ".join(step.argv)
        if not check:
            try:
                res = proc.run(list(step.argv))
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ColoError(f"{cmd} failed ({step.why}): {exc}") from None
            if res.returncode != 0:
                raise ColoError(f"{cmd} failed ({step.why}): {res.stderr.strip() or res.returncode}")
        done.append(cmd)
    return done
