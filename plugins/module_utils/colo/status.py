"""One dict describing a VM's COLO state, for modules, tests and benchmarks."""
from __future__ import annotations

from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint, proxy, replication
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient


PROXY_TYPES = ("colo-compare", "filter-mirror", "filter-redirector", "filter-rewriter", "iothread")


def role_of(colo: dict[str, str], replicating: bool) -> str:
    """primary/secondary while in COLO; after it, what the VM is left as."""
    if colo["mode"] != "none":
        return colo["mode"]
    # A primary with a replication child but no COLO yet: protect() was interrupted.
    return "primary-unprotected" if replicating else "standalone"


def status(qmp: QMPClient, sample_seconds: float = 0.0) -> dict[str, Any]:
    """Role, COLO mode, migration, checkpoints, replication, QEMU version, run state.

    sample_seconds > 0 watches STOP/RESUME events that long (on a primary:
    one pair per checkpoint) and reports count and pause p50/max.
    """
    colo = checkpoint.colo_status(qmp)
    mig = qmp.execute("query-migrate")
    run = qmp.execute("query-status")
    jobs = [
        {k: j.get(k) for k in ("device", "type", "offset", "len", "ready", "status")}
        for j in qmp.execute("query-block-jobs")
    ]
    try:
        child = replication.replication_child(qmp)
        children = replication.quorum_children(qmp)
    except ColoError:  # no colo-disk0: not a COLO VM
        child, children = None, {}
    out: dict[str, Any] = {
        "role": role_of(colo, child is not None),
        "colo": {"mode": colo["mode"], "last_mode": colo["last-mode"], "reason": colo["reason"]},
        "migration": {k: v for k, v in mig.items() if k in ("status", "error-desc", "total-time", "ram")},
        "run_state": run["status"],
        "running": run["running"],
        "qemu_version": ".".join(map(str, qmp.version)),
        "checkpoint_delay_ms": qmp.execute("query-migrate-parameters").get("x-checkpoint-delay"),
        "replication": {
            "node_attached": child,
            "quorum_children": children,
            "block_jobs": jobs,
            "nbd_exports": replication.nbd_exports(qmp),
        },
        "proxy_objects": {k: v for k, v in proxy.objects(qmp).items() if v in PROXY_TYPES},
        "checkpoints": None,
    }
    if sample_seconds > 0:
        out["checkpoints"] = checkpoint.sample_checkpoints(qmp, sample_seconds).to_dict()
    return out
