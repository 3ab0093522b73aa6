"""What the colo.ft agent does about what it sees: its rules, as a pure function.

The agent (agent.py) keeps a view of the cluster (quorum and membership from corosync) and of
each local VM (from its QEMU), and asks decide() what to do after every change. decide() only
says which VM gets which action; how a failover is done is the runtime's failover.plan (the same
plan colo.ft.failover and failover.yml apply), so the agent holds no third copy of it.

Rules (docs/agent.md):
* maintenance on: nothing is done.
* quorum lost: every local VM in COLO (or held) is fenced (stopped and recorded as given up) before
  the other side, which may hold quorum, takes over; a guest running alone has no twin there and runs on.
* quorate and the peer node left the quorum view (after it was seen in one): every local VM
  fails over (failover.plan lost=auto decides the side; a VM with nothing to do is left).
* quorate and the peer's agent says its QEMU of a VM died: that VM fails over here.
* quorate and a COLO primary here has had no checkpoint with its secondary for its checkpoint delay plus
  checkpoint_stall_s (a stalled link or a stuck secondary whose host stays in the cluster: the guest's disk
  writes and output wait on it): it fails over here (releases the secondary, serves alone).
* the peer's agent says it serves a VM that serves here too (two guests: a host that hung and came
  back finds its guest taken over, and its QEMU left COLO by itself): the side whose serving rests
  on the newer failover decision keeps it, the other is fenced; with no decision on either side
  nothing is done (no rule can tell them apart).
* a COLO primary whose QEMU left COLO on an error by itself is held at once (vCPUs stopped, by the
  agent's watch, agent.py): QEMU's own failover would let it serve alone whether or not the other side
  took over. It is fenced if this host is not quorate or the peer serves it by a newer decision, and
  failed over (released, resumed) once this host is quorate and the peer is gone, or the peer's agent
  said after the hold that it does not serve the guest, and membership settled (a quorum change since
  the hold, or SETTLE_S).
* a fenced QEMU is never acted on again (but for the re-protection below, which stops it).
* automatic re-protection (auto_reprotect, quorate, the peer present): where the peer's agent says it serves
  a guest alone by a failover decision, a QEMU here that started before that decision and serves nothing is
  fenced (left over: a secondary whose COLO broke), and where no live QEMU serves it here (none, or a fenced
  one) this host readies itself as the new secondary (READY); where this host serves a guest alone by a decision and the
  peer's agent says it readied a secondary for it, this host protects towards it (PROTECT). A secondary that
  a playbook started is not "readied by the agent": reprotect.yml and the agents never both protect.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FENCE = "fence"
FAILOVER = "failover"
READY = "ready_secondary"
PROTECT = "protect"
# A held guest whose peer does not serve it is resumed after this long even without a membership change
# (COLO broke while both hosts stayed members: nothing else will come).
SETTLE_S = 2.0


@dataclass
class VMView:
    """One local VM as the agent last saw it through its monitor."""

    name: str
    alive: bool = False          # its QEMU answers on the agent's monitor
    mode: str = "none"           # query-colo-status mode: primary, secondary, none
    last_mode: str = "none"
    running: bool = False        # query-status running
    fenced: bool = False         # the failover log says this QEMU was given up
    decided_at: float | None = None  # when this QEMU was taken over or released by a decision (failover log)
    held_since: float | None = None  # monotonic time the agent held it (stopped) after COLO failed by itself
    looked: bool = False         # the agent looked for its QEMU at least once (before, "not alive" means nothing)
    started_as: str = ""         # the role its QEMU was started in (the VM's record)
    started_at: float | None = None  # when its QEMU started (wall clock, as the failover log's `at`)
    ready: bool = False          # a secondary this agent started and readied, waiting for its primary
    checkpoint_at: float | None = None  # a COLO primary: monotonic time its last checkpoint ended (or COLO began)
    checkpoint_delay_s: float = 0.0     # a COLO primary: its checkpoint delay (x-checkpoint-delay)
    polled_at: float | None = None      # monotonic time the agent last asked its QEMU for this view

    @property
    def serving(self) -> bool:
        """The guest is served from here: a COLO primary, or a guest running alone - not a secondary that was never
        in COLO (its vCPUs run for a moment while COLO starts, before query-colo-status says secondary)."""
        if self.started_as == "secondary" and self.mode == "none" and self.last_mode == "none":
            return False
        return self.alive and not self.fenced and (
            self.mode == "primary" or (self.mode == "none" and (self.running or self.held_since is not None)))

    @property
    def alone(self) -> bool:
        """The guest runs here alone after a failover decision (a survivor: a secondary to re-protect towards)."""
        return self.serving and self.mode == "none" and self.held_since is None and self.decided_at is not None


@dataclass
class ClusterView:
    """Quorum and membership as corosync last notified them."""

    me: int = 0                            # this node's id
    quorate: bool | None = None            # None: no notification yet (or corosync not reachable yet)
    nodes: tuple[int, ...] = ()            # node ids in this node's quorum view
    peer_seen: bool = False                # the peer was in a view since the agent started
    maintenance: bool = False
    peer_qemu_died: set[str] = field(default_factory=set)  # VMs whose QEMU the peer's agent reported dead
    # VMs the peer's agent last said it serves, with when its serving was decided (None: no decision).
    peer_serving: dict[str, float | None] = field(default_factory=dict)
    peer_node: int = 0                     # the node those came from
    peer_alone: set[str] = field(default_factory=set)  # VMs the peer runs alone after a failover decision
    peer_ready: set[str] = field(default_factory=set)  # VMs the peer's agent readied a new secondary for
    auto_reprotect: bool = False
    checkpoint_stall_s: float = 0.0        # a checkpoint this late (after the delay) releases the secondary (0: never)
    look_fresh_s: float = 5.0              # a view older than this (the agent hung) shows no stall
    peer_state_at: float = 0.0             # monotonic time the peer's agent last said what it serves
    changed_at: float = 0.0                # monotonic time of the last quorum notification
    now: float = 0.0                       # monotonic time of this decision

    @property
    def peer_present(self) -> bool:
        return any(node != self.me for node in self.nodes)


def decide(cluster: ClusterView, vms: list[VMView]) -> list[tuple[str, str, str]]:
    """The actions to take now: (vm name, FENCE or FAILOVER, why)."""
    if cluster.maintenance or cluster.quorate is None:
        return []
    acting = [vm for vm in vms if vm.alive and not vm.fenced]
    if not cluster.quorate:
        # A guest in COLO (or held after COLO failed) has a twin that the quorate side may start; a guest running
        # alone (unprotected, or after a failover) has none, and stopping it would only end the service.
        return [(vm.name, FENCE, "this host lost quorum") for vm in acting
                if vm.mode != "none" or vm.held_since is not None]
    if cluster.peer_seen and not cluster.peer_present:
        return [(vm.name, FAILOVER, "the peer host left the cluster") for vm in acting]
    out = [(vm.name, FENCE, "the peer serves this guest by a newer decision (two guests)")
           for vm in acting if vm.serving and vm.name in cluster.peer_serving and _peer_wins(vm, cluster)]
    fencing = {name for name, _action, _why in out}
    out += [(vm.name, FAILOVER, "the peer's QEMU died") for vm in acting
            if vm.name in cluster.peer_qemu_died and vm.name not in fencing]
    out += [(vm.name, FAILOVER, "no checkpoint with the secondary: COLO stalled") for vm in acting
            if _checkpoint_stalled(vm, cluster) and vm.name not in fencing | cluster.peer_qemu_died]
    out += [(vm.name, FAILOVER, "COLO failed and the peer does not serve the guest") for vm in acting
            if vm.held_since is not None and vm.name not in cluster.peer_serving and vm.name not in fencing
            and cluster.peer_state_at > vm.held_since
            and (cluster.changed_at > vm.held_since or cluster.now - vm.held_since >= SETTLE_S)]
    return out + _reprotect(cluster, vms, {name for name, _action, _why in out})


def _reprotect(cluster: ClusterView, vms: list[VMView], busy: set[str]) -> list[tuple[str, str, str]]:
    if not cluster.auto_reprotect or not cluster.peer_present:
        return []
    # A QEMU here that predates the peer's decision to run the guest alone and serves nothing is left over (e.g. a
    # secondary whose COLO broke): given up, then replaced like a fenced one.
    left = [(vm.name, FENCE, "left over from before the peer ran the guest alone") for vm in vms
            if vm.alive and not vm.fenced and not vm.serving and vm.name in cluster.peer_alone and vm.name not in busy
            and vm.started_at is not None and (cluster.peer_serving.get(vm.name) or 0.0) > vm.started_at]
    busy = busy | {name for name, _action, _why in left}
    out = left + [(vm.name, READY, "the peer runs the guest alone after a failover") for vm in vms
                  if vm.looked and vm.name in cluster.peer_alone and (not vm.alive or vm.fenced) and vm.name not in busy]
    return out + [(vm.name, PROTECT, "the peer readied a new secondary") for vm in vms
                  if vm.alive and not vm.fenced and vm.alone and vm.name in cluster.peer_ready and vm.name not in busy]


def _checkpoint_stalled(vm: VMView, cluster: ClusterView) -> bool:
    """A primary whose checkpoints stopped - by a fresh look: after this host hung, an old view would show a stall
    where the peer may have taken over meanwhile (its agent's word, or QEMU's own COLO exit, comes first)."""
    return (cluster.checkpoint_stall_s > 0 and vm.mode == "primary" and vm.checkpoint_at is not None
            and vm.polled_at is not None and cluster.now - vm.polled_at <= cluster.look_fresh_s
            and cluster.now - vm.checkpoint_at >= vm.checkpoint_delay_s + cluster.checkpoint_stall_s)


def _peer_wins(vm: VMView, cluster: ClusterView) -> bool:
    """Both sides serve vm: does the peer keep it? The newer decision wins; a tie goes to the lower node id."""
    theirs = cluster.peer_serving[vm.name]
    if theirs is None:
        return False
    if vm.decided_at is None or theirs > vm.decided_at:
        return True
    return theirs == vm.decided_at and cluster.me > cluster.peer_node
