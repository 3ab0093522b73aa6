"""What the colo.ft agent does about what it sees: its rules, as a pure function.

The agent (agent.py) keeps a view of the cluster (quorum and membership from corosync) and of
each local VM (from its QEMU), and asks decide() what to do after every change. decide() only
says which VM gets which action; how a failover is done is the runtime's failover.plan (the same
plan colo.ft.failover and failover.yml apply), so the agent holds no third copy of it.

Rules (docs/agent.md):
* maintenance on: nothing is done.
* quorum lost: every local VM that runs or is in COLO is fenced (stopped and recorded as given
  up) before the other side, which may hold quorum, takes over.
* quorate and the peer node left the quorum view (after it was seen in one): every local VM
  fails over (failover.plan lost=auto decides the side; a VM with nothing to do is left).
* quorate and the peer's agent says its QEMU of a VM died: that VM fails over here.
* a fenced QEMU is never acted on again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FENCE = "fence"
FAILOVER = "failover"


@dataclass
class VMView:
    """One local VM as the agent last saw it through its monitor."""

    name: str
    alive: bool = False          # its QEMU answers on the agent's monitor
    mode: str = "none"           # query-colo-status mode: primary, secondary, none
    last_mode: str = "none"
    running: bool = False        # query-status running
    fenced: bool = False         # the failover log says this QEMU was given up

    @property
    def serving(self) -> bool:
        """The guest is served from here: a COLO primary, or a guest running alone."""
        return self.alive and not self.fenced and (self.mode == "primary" or (self.mode == "none" and self.running))


@dataclass
class ClusterView:
    """Quorum and membership as corosync last notified them."""

    me: int = 0                            # this node's id
    quorate: bool | None = None            # None: no notification yet (or corosync not reachable yet)
    nodes: tuple[int, ...] = ()            # node ids in this node's quorum view
    peer_seen: bool = False                # the peer was in a view since the agent started
    maintenance: bool = False
    peer_qemu_died: set[str] = field(default_factory=set)  # VMs whose QEMU the peer's agent reported dead

    @property
    def peer_present(self) -> bool:
        return any(node != self.me for node in self.nodes)


def decide(cluster: ClusterView, vms: list[VMView]) -> list[tuple[str, str, str]]:
    """The actions to take now: (vm name, FENCE or FAILOVER, why)."""
    if cluster.maintenance or cluster.quorate is None:
        return []
    acting = [vm for vm in vms if vm.alive and not vm.fenced]
    if not cluster.quorate:
        return [(vm.name, FENCE, "this host lost quorum") for vm in acting if vm.mode != "none" or vm.running]
    if cluster.peer_seen and not cluster.peer_present:
        return [(vm.name, FAILOVER, "the peer host left the cluster") for vm in acting]
    return [(vm.name, FAILOVER, "the peer's QEMU died") for vm in acting if vm.name in cluster.peer_qemu_died]
