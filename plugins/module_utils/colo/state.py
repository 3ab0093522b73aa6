"""One read-only snapshot of a VM's COLO state, from which every decision is made.

read() asks QEMU (queries only); the planners, status reports and the modules'
check mode all work on the VMState it returns, so they decide from the same view.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import replication
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient

# query-migrate states of a migration still under way.
MIGRATING = ("setup", "active", "device", "pre-switchover", "wait-unplug", "postcopy-active")


@dataclass(frozen=True)
class VMState:
    version: tuple[int, int, int] = (11, 1, 3)
    mode: str = "none"               # query-colo-status: none, primary, secondary
    last_mode: str = "none"
    reason: str = "none"
    migration: dict[str, Any] = field(default_factory=dict)   # query-migrate
    run_state: str = "running"       # query-status
    running: bool = True
    caps: dict[str, bool] = field(default_factory=dict)       # migration capabilities
    params: dict[str, Any] = field(default_factory=dict)      # migration parameters
    exports: tuple[str, ...] = ()    # NBD exports
    node_exists: bool = False        # the primary's replication node exists
    has_quorum: bool = True          # colo-disk0 is a quorum (a COLO VM, not a plain one)
    quorum_children: dict[str, str] = field(default_factory=dict)  # child name -> node name
    objects: dict[str, str] = field(default_factory=dict)     # /objects id -> QOM type
    chardevs: tuple[str, ...] = ()
    block_jobs: tuple[dict[str, Any], ...] = ()

    @property
    def migration_status(self) -> str:
        return self.migration.get("status", "none")

    @property
    def child(self) -> str | None:
        """The quorum child that is the replication node, or None."""
        return next((c for c, n in self.quorum_children.items() if n == replication.NODE), None)

    def is_secondary(self, role: str | None) -> bool:
        """A COLO secondary now, or a VM started as one (role from its record) that never left that role."""
        return self.mode == "secondary" or (role == "secondary" and self.last_mode == "none")

    @property
    def role(self) -> str:
        """primary/secondary while in COLO; after it, what the VM is left as."""
        if self.mode != "none":
            return self.mode
        # A primary with a replication child but no COLO yet: protection was interrupted.
        return "primary-unprotected" if self.child is not None else "standalone"

    def summary(self) -> dict[str, Any]:
        """What modules return as `colo`."""
        return {"mode": self.mode, "last_mode": self.last_mode, "reason": self.reason,
                "migration_status": self.migration_status, "run_state": self.run_state}


def objects(qmp: QMPClient) -> dict[str, str]:
    """{id: QOM type} of the objects under /objects."""
    out: dict[str, str] = {}
    for prop in qmp.execute("qom-list", {"path": "/objects"}):
        t = prop.get("type", "")
        if t.startswith("child<"):
            out[prop["name"]] = t[len("child<"):-1]
    return out


def chardevs(qmp: QMPClient) -> set[str]:
    return {c["label"] for c in qmp.execute("query-chardev")}


def read(qmp: QMPClient) -> VMState:
    colo = qmp.execute("query-colo-status")
    run = qmp.execute("query-status")
    try:
        children = replication.quorum_children(qmp)
        has_quorum = True
    except ColoError:  # no quorum colo-disk0: a plain VM
        children, has_quorum = {}, False
    return VMState(
        version=tuple(qmp.version),
        mode=colo["mode"], last_mode=colo["last-mode"], reason=colo.get("reason", "none"),
        migration=qmp.execute("query-migrate"),
        run_state=run["status"], running=run["running"],
        caps={c["capability"]: c["state"] for c in qmp.execute("query-migrate-capabilities")},
        params=qmp.execute("query-migrate-parameters"),
        exports=tuple(replication.nbd_exports(qmp)),
        node_exists=replication.node_exists(qmp, replication.NODE),
        has_quorum=has_quorum,
        quorum_children=children,
        objects=objects(qmp),
        chardevs=tuple(sorted(chardevs(qmp))),
        block_jobs=tuple({k: j.get(k) for k in ("device", "type", "offset", "len", "ready", "status")}
                         for j in qmp.execute("query-block-jobs")),
    )
