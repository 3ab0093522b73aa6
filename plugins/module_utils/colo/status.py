"""One dict describing a VM's COLO state, for modules, tests and benchmarks (from state.read)."""
from __future__ import annotations

import contextlib
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import state
from ansible_collections.colo.ft.plugins.module_utils.colo.checkpoint_causes import Tracing
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import PROXY_QOM_TYPES, tls_creds
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.stats import sample_checkpoints


def report(st: state.VMState) -> dict[str, Any]:
    """Role, COLO mode, migration, replication, proxy, QEMU version and run state of a VMState."""
    return {
        "role": st.role,
        "colo": {"mode": st.mode, "last_mode": st.last_mode, "reason": st.reason},
        "migration": {k: v for k, v in st.migration.items() if k in ("status", "error-desc", "total-time", "ram")},
        "run_state": st.run_state,
        "running": st.running,
        "qemu_version": ".".join(map(str, st.version)),
        "checkpoint_delay_ms": st.params.get("x-checkpoint-delay"),
        "tls": tls_creds(st.objects, "server") is not None,
        "replication": {
            "node_attached": st.child,
            "quorum_children": dict(st.quorum_children),
            "block_jobs": list(st.block_jobs),
            "nbd_exports": list(st.exports),
        },
        "proxy_objects": {k: v for k, v in st.objects.items() if v in PROXY_QOM_TYPES},
        "checkpoints": None,
        "checkpoint_causes": None,
    }


def status(qmp: QMPClient, sample_seconds: float = 0.0, causes_log: str | None = None) -> dict[str, Any]:
    """report() of the VM now; sample_seconds > 0 also watches its checkpoints that long
    (on a primary: one STOP/RESUME pair per checkpoint) and reports count and pauses. causes_log: the VM's
    qemu.log; a COLO primary's checkpoints are then also counted by cause (checkpoint_causes.py)."""
    st = state.read(qmp)
    out = report(st)
    if sample_seconds > 0:
        tracing = Tracing(qmp, causes_log) if causes_log is not None and st.mode == "primary" else None
        with tracing or contextlib.nullcontext():
            out["checkpoints"] = sample_checkpoints(qmp, sample_seconds).to_dict()
        out["checkpoint_causes"] = tracing and tracing.causes
    return out
