"""The flat per-VM summary colo.ft.info reports, from a status.status() dict (pure: unit tested)."""
from __future__ import annotations

from ansible_collections.colo.ft.plugins.module_utils.colo.vm import PARENT_ID


def replication_state(st: dict) -> str:
    """One word for the replication side of a status.status() dict."""
    rep = st.get("replication") or {}
    if rep.get("node_attached"):
        return "attached"
    if any(j.get("type") == "mirror" for j in rep.get("block_jobs") or []):
        return "resyncing"
    if PARENT_ID in (rep.get("nbd_exports") or []):
        return "exported"
    return "none"


def vm_entry(st: dict | None, vmstat: dict, record: dict | None) -> dict:
    """The flat per-VM dict returned under vms (pure: unit tested)."""
    out = {
        "recorded_role": (record or {}).get("role"),
        "running": vmstat.get("running", False),
        "pid": vmstat.get("pid"),
        "run_state": vmstat.get("qemu_status"),
        "state_dir": vmstat.get("state_dir"),
        "manager": vmstat.get("manager"),
        "role": None, "mode": None, "last_mode": None, "reason": None, "migration_status": None,
        "checkpoints": None, "checkpoints_per_second": None, "checkpoint_delay_ms": None,
        "pause_p50_ms": None, "pause_p99_ms": None, "pause_max_ms": None, "checkpoint_causes": None,
        "replication": None, "replication_detail": None, "proxy_objects": None, "qemu_version": None,
        "tls": None, "tls_dir": ((record or {}).get("spec") or {}).get("tls_dir"),
    }
    if st is None:
        return out
    ck = st.get("checkpoints") or {}
    out.update({
        "role": st["role"],
        "mode": st["colo"]["mode"],
        "last_mode": st["colo"]["last_mode"],
        "reason": st["colo"]["reason"],
        "run_state": st["run_state"],
        "migration_status": st["migration"].get("status", "none"),
        "checkpoints": ck.get("count"),
        "checkpoints_per_second": ck.get("per_second"),
        "checkpoint_delay_ms": st["checkpoint_delay_ms"],
        "pause_p50_ms": ck.get("pause_p50_ms"),
        "pause_p99_ms": ck.get("pause_p99_ms"),
        "pause_max_ms": ck.get("pause_max_ms"),
        "checkpoint_causes": st.get("checkpoint_causes"),
        "replication": replication_state(st),
        "replication_detail": st["replication"],
        "proxy_objects": st["proxy_objects"],
        "qemu_version": st["qemu_version"],
        "tls": st["tls"],
    })
    return out
