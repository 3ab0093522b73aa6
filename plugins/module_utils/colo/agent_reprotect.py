"""Automatic re-protection by the colo.ft agents: the two halves of reprotect.yml, run on the hosts themselves.

After a failover the survivor runs the guest alone. When the lost host is back in the quorum, its agent
readies it as the survivor's new secondary (ready_secondary: the host's bridges and scratch tmpfs, which a
reboot took away, a leftover given-up QEMU stopped, the VM started as COLO secondary and made ready for
checkpoints: what colo_host, colo_secondary and colo.ft.checkpoint state=ready do) and says so to the
survivor's agent, which protects towards it (protect: colo.ft.checkpoint state=protected, the full resync of
the new secondary's disk and COLO). The values come from agent.json, which the colo_cluster role writes from
the roles' own (colo_secondary's start options of each VM, colo_host's bridges, the link addresses).
"""
from __future__ import annotations

import dataclasses
import grp
import os
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import bridges, checkpoint, guard, proc, state
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.host import image_info, image_problems, scratch_mib
from ansible_collections.colo.ft.plugins.module_utils.colo.launcher import Launcher
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec, spec_from_options, with_overrides

SCRATCH_SOURCE = "colo-ft-scratch"  # the tmpfs's name in /proc/mounts (colo_secondary mounts the same)


@dataclass
class Settings:
    """agent.json's `reprotect`: what this host needs to become its peer's secondary, or to protect towards it."""

    client_bridge: str
    client_nic: str
    isolated_bridge: str
    forward_address: str              # this host's forward-link address (a primary's redirectors connect to it)
    peer_checkpoint_address: str      # the peer's checkpoint-link address (its NBD export, incoming migration)
    scratch_dir: str
    scratch_slack_mib: int
    scratch_group: str = "root"
    protect_timeout_s: float = 300.0
    allow_unsupported_qemu: bool = False
    # VM name -> colo.ft.vm's options to start it here as the secondary (colo_secondary's own).
    secondary: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Settings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ColoError(f"{where}: unknown keys {sorted(unknown)}")
        try:
            out = cls(**data)
            out.scratch_slack_mib, out.protect_timeout_s = int(out.scratch_slack_mib), float(out.protect_timeout_s)
        except (TypeError, ValueError) as exc:
            raise ColoError(f"{where}: {exc}") from None
        if not isinstance(out.secondary, dict) or out.scratch_slack_mib < 0 or out.protect_timeout_s <= 0:
            raise ColoError(f"{where}: secondary must map VM names to options, scratch_slack_mib >= 0, "
                            "protect_timeout_s > 0")
        return out


def ready_host(s: Settings) -> list[str]:
    """The bridges and the scratch tmpfs, where missing (after a reboot: colo_host and colo_secondary made them at
    run time)."""
    links = bridges.read()
    lines = (bridges.plan(links, s.client_bridge, "present", [s.client_nic], s.client_nic)
             + bridges.plan(links, s.isolated_bridge, "present", [], None))
    done = []
    if lines:
        res = proc.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")
        if res.returncode != 0:
            raise ColoError(f"bridges: ip -batch failed: {res.stderr.strip()}")
        done += [f"ip {line}" for line in lines]
    if not os.path.ismount(s.scratch_dir):
        size = scratch_mib([image_info(o["disk"])["virtual-size"] for o in s.secondary.values()], s.scratch_slack_mib)
        gid = grp.getgrnam(s.scratch_group).gr_gid
        os.makedirs(s.scratch_dir, mode=0o710, exist_ok=True)
        res = proc.run(["mount", "-t", "tmpfs", "-o", f"size={size}m,mode=0710", SCRATCH_SOURCE,
                        s.scratch_dir])
        if res.returncode != 0:
            raise ColoError(f"scratch tmpfs on {s.scratch_dir}: mount failed: {res.stderr.strip()}")
        os.chown(s.scratch_dir, 0, gid)  # QEMU's user reaches the overlays through the group
        done.append(f"mount tmpfs {s.scratch_dir} ({size} MiB)")
    return done


def secondary_spec(s: Settings, name: str) -> VMSpec:
    if name not in s.secondary:
        raise ColoError(f"agent.json names no secondary start options for VM {name}: rerun site.yml")
    return spec_from_options(name, s.secondary[name]).validate("secondary")


def ready_secondary(s: Settings, name: str, leftover: VMSpec | None, launcher: Launcher) -> list[str]:
    """Stop what is left of the VM here (a given-up QEMU), start it as COLO secondary, make it ready."""
    spec = secondary_spec(s, name)
    done = ready_host(s)
    if leftover is not None and launcher.find_pid(leftover) is not None:
        launcher.stop(leftover)
        done.append(f"stopped the given-up QEMU of {name}")
    problems = image_problems(spec, "secondary")
    if problems:
        raise ColoError(f"cannot start VM {name} as secondary: " + "; ".join(problems))
    guard.check(spec.qemu_binary, allow_unsupported=s.allow_unsupported_qemu)
    started = launcher.start(spec, "secondary", proxy=False)
    done.append(f"started {name} as secondary ({started.message})")
    try:
        with QMPClient(spec.qmp_path, timeout=30.0) as qmp:
            plan = checkpoint.plan_ready(state.read(qmp), "secondary", spec.checkpoint_addr, spec.nbd_port,
                                         spec.migration_port, s.allow_unsupported_qemu)
            done += plan.apply(qmp)
    except ColoError:
        launcher.stop(spec)  # a secondary that is not ready would stay so: the next try starts afresh
        raise
    return done


def protect(s: Settings, client: QMPClient, spec: VMSpec) -> list[str]:
    """Protect this guest, running alone after a failover, towards the peer's readied secondary."""
    pspec = with_overrides(spec, forward_addr=s.forward_address, checkpoint_addr=s.peer_checkpoint_address)
    plan = checkpoint.plan_protect(state.read(client), pspec, s.peer_checkpoint_address, s.protect_timeout_s,
                                   s.allow_unsupported_qemu)
    return plan.apply(client)
