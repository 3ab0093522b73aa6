"""Failover of a COLO pair, and re-protection of the survivor.

primary_lost runs on the secondary when the primary host died; it takes
over the guest. secondary_lost runs on the primary when the secondary
died; the primary stops waiting for it. lost_side() says which of the two
a VM's own COLO state calls for (lost=auto: failover.yml and the agent ask
nothing else). Both plans refuse on the wrong side, and a second call finds
nothing left to do: an empty plan.
"""
from __future__ import annotations

from collections.abc import Callable

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint, migration, proxy, replication, state
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import REPLICATION_NBD_NODE
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, QMPError
from ansible_collections.colo.ft.plugins.module_utils.colo.host import bridge_of, move_tap
from ansible_collections.colo.ft.plugins.module_utils.colo.plan import Plan, send
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.state import MIGRATING, VMState
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

# announce-self: 5 gratuitous ARP/RARP rounds, 50 ms then +100 ms each, as QEMU's
# migration announce defaults; lets the client switch learn the new port.
ANNOUNCE = {"initial": 50, "max": 550, "rounds": 5, "step": 100}


class WrongSide(ColoError):
    """The failover was asked of the VM on the other side of the pair."""


class GivenUp(ColoError):
    """This QEMU was fenced (failover_log): the other side may run the guest, nothing resumes it."""


def lost_side(st: VMState) -> str:
    """The side that was lost, seen from this VM: a COLO secondary (or a VM that was one and
    already took over) lost its primary; anything else lost its secondary - among them a
    survivor whose re-protection had attached a replication child when the new secondary died."""
    took_over = st.mode == "none" and st.last_mode == "secondary" and st.child is None
    return "primary" if st.mode == "secondary" or took_over else "secondary"


def plan_primary_lost(st: VMState, tap: str | None = None, tap_bridge: str | None = None,
                      client_bridge: str | None = None, isolated_bridge: str | None = None,
                      announce: bool = True) -> Plan:
    """On the secondary: take over the guest after the primary died.

    nbd-server-stop, x-colo-lost-heartbeat, move the tap (now on tap_bridge) from the
    isolated bridge to the client bridge, drop the redirectors f2/f1 and their chardevs
    red1/red0, announce the guest's MAC.
    """
    if st.mode == "primary":
        raise WrongSide("lost=primary runs on the secondary, but this VM is the COLO primary (here use lost=secondary)")
    if st.mode == "none" and st.last_mode != "secondary":
        raise WrongSide("lost=primary: this VM is not in COLO and was never a secondary "
                        f"(last mode {st.last_mode}); nothing to take over")
    if tap is not None and client_bridge is None:
        raise ColoError("lost=primary: tap given without the client bridge to move it to")
    out = Plan()
    # Stop serving NBD first: no write from a half-dead primary may land now. Stopped even when
    # no export shows: a server left without one is invisible to queries.
    out.add(replication.stop_nbd, *(["nbd-server-stop"] if st.exports else []))
    if st.mode == "secondary":
        out.add(migration.lost_heartbeat, "x-colo-lost-heartbeat")
    # The tap moves before f2 goes: until then the guest's frames still go to the
    # dead primary, so its first own frames (ARP among them) reach the client
    # network, never the isolated bridge, where a host kernel may answer an ARP
    # request with its own MAC and leave the guest sending to it.
    if tap is not None and tap_bridge != client_bridge:
        if isolated_bridge is not None and tap_bridge not in (isolated_bridge, None):
            raise ColoError(f"tap {tap} is on bridge {tap_bridge}, expected {isolated_bridge} or {client_bridge}")
        out.add(lambda _qmp: move_tap(tap, client_bridge),
                f"ip link set {tap} master {client_bridge} (was {tap_bridge or 'no bridge'})")
    proxy.plan_remove_secondary(out, st)
    out.add(migration.wait_running)
    if announce and out.changed:
        out.add(send("announce-self", ANNOUNCE, "announce-self"), "announce-self")
    return out


# The streams to the secondary that QEMU can cut at once (yank instances), with what they carry.
YANK_NBD = ({"type": "block-node", "node-name": REPLICATION_NBD_NODE}, "the replication child's NBD connection")
YANK_MIGRATION = ({"type": "migration"}, "the migration stream")


def yank_instances(st: VMState) -> list[tuple[dict[str, str], str]]:
    """The secondary's streams this primary holds: its NBD client while the replication node exists,
    the migration while COLO (or a migration) runs."""
    found = [YANK_NBD] if st.node_exists else []
    if st.migration_status == "colo" or st.migration_status in MIGRATING:
        found.append(YANK_MIGRATION)
    return found


def yank(qmp: QMPClient, instances: list[tuple[dict[str, str], str]]) -> list[str]:
    """Cut those streams now (out of band where the client has it: answered even while the main
    loop waits on them). A secondary whose host went dark sends no FIN or RST, so without this the
    replication child's removal drains requests that TCP gives up on only after many minutes."""
    run = qmp.execute_oob if qmp.oob else qmp.execute
    done = []
    for instance, what in instances:
        try:
            run("yank", {"instances": [instance]})
        except QMPError as exc:
            if exc.error_class != "DeviceNotFound" and "not found" not in exc.desc.lower():
                raise
            continue  # ended since it was planned (e.g. COLO failed over by itself)
        done.append(f"yank {what}")
    return done


def resume_held(qmp: QMPClient) -> list[str]:
    """Run again a guest that was stopped (held) when COLO failed by itself, before its failover.

    A guest stopped by the hold runs again with cont. One that COLO itself stopped inside a checkpoint stays in run
    state "colo" and refuses cont ("COLO checkpoint in progress") until the failover ends COLO; QEMU then starts it
    by itself (the failover plans wait for that)."""
    if qmp.execute("query-status")["status"] == "colo":
        return []
    qmp.execute("cont")
    return ["cont"]


def plan_secondary_lost(st: VMState) -> Plan:
    """On the primary: stop replicating to a dead secondary, keep serving alone."""
    if st.mode == "secondary":
        raise WrongSide("lost=secondary runs on the primary, but this VM is the COLO secondary (here use lost=primary)")
    if st.mode == "none" and st.last_mode != "primary" and st.child is None:
        raise WrongSide("lost=secondary: this VM is not in COLO, was never a primary "
                        f"(last mode {st.last_mode}) and has no replication child; nothing to release")
    out = Plan()
    streams = yank_instances(st)
    if streams:
        out.add(lambda qmp: yank(qmp, streams), *(f"yank {what}" for _i, what in streams))
    release = checkpoint.plan_release(st)
    out.steps += release.steps
    out.warnings += release.warnings
    # A primary released earlier (or by a heartbeat) must run too before this counts as done.
    out.add(migration.wait_running)
    return out


def plan(st: VMState, lost: str = "auto", tap: str | None = None, client_bridge: str | None = None,
         isolated_bridge: str | None = None, announce: bool = True,
         tap_bridge: Callable[[str], str | None] = bridge_of,
         given_up: dict | None = None) -> tuple[str, Plan]:
    """The failover of this VM: lost is primary, secondary or auto (lost_side decides).
    Returns the side taken as lost and the plan. tap: the guest's tap, moved to client_bridge
    when the primary was lost (tap_bridge reads where it is now). given_up: this QEMU's fence
    entry (failover_log.given_up), which refuses any failover."""
    if given_up is not None:
        raise GivenUp(f"this QEMU was fenced at {given_up.get('when')} ({given_up.get('why')}): the other host may "
                      "run the guest now, so it is never resumed; stop it and re-protect from the other host "
                      "(playbooks/reprotect.yml)")
    if lost == "auto":
        lost = lost_side(st)
    if lost == "primary":
        where = tap_bridge(tap) if tap is not None else None
        return lost, plan_primary_lost(st, tap, where, client_bridge, isolated_bridge, announce)
    if lost == "secondary":
        return lost, plan_secondary_lost(st)
    raise ColoError(f"lost must be auto, primary or secondary, not {lost!r}")


# -- the runtime API: read, plan, apply ---------------------------------------------------------


def primary_lost(secondary: QMPClient, tap: str | None = None, client_bridge: str | None = None,
                 isolated_bridge: str | None = None, announce: bool = True) -> list[str]:
    return plan(state.read(secondary), "primary", tap, client_bridge, isolated_bridge, announce)[1].apply(secondary)


def secondary_lost(primary: QMPClient) -> list[str]:
    return plan(state.read(primary), "secondary")[1].apply(primary)


def reprotect(survivor: QMPClient, new_secondary: QMPClient | None, spec: VMSpec,
              **protect_args: object) -> checkpoint.ProtectResult:
    """The survivor of a failover (running alone) becomes primary of a new secondary.

    spec describes the new direction: forward_addr is the survivor's
    forward-link address, checkpoint_addr the new secondary's checkpoint-link
    address (ports and COLO settings come from spec too). new_secondary: its QMP
    client, or None if it runs on another host and was readied there
    (checkpoint.prepare_secondary). Proxy objects are hot-added
    (before rew0 on a former secondary), the disk is resynced by drive-mirror,
    the replication child re-added, then COLO starts; the guest keeps running
    apart from the short final pause.
    """
    return checkpoint.protect(survivor, new_secondary, spec.checkpoint_addr, nbd_port=spec.nbd_port,
                              migration_port=spec.migration_port, proxy_spec=spec, **protect_args)
