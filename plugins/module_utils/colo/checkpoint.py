"""Starting and stopping COLO checkpointing (QEMU migration in x-colo mode).

Each sequence is planned from a VMState first (plan_ready, plan_protect,
plan_release): the planner refuses what must not happen and lists the steps;
the wrappers below (prepare_secondary, protect, boot_under_colo,
release_primary, stop_protection) read the state, plan and apply at once.
protect() is "Protect a running primary" of docs/qemu-colo.md: prepare the
secondary (capabilities, NBD export, incoming migration), resync its disk,
attach the replication child, migrate, then wait until both sides report COLO.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import proxy, replication, state
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import tls_creds
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, QMPConnectionError, QMPError, QMPTimeout
from ansible_collections.colo.ft.plugins.module_utils.colo.migration import (
    check_version,
    colo_status,
    lost_heartbeat,
    plan_capabilities,
    plan_delay,
    plan_tls,
    wait_colo,
    wait_running,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.plan import Action, Plan, Step, require_role, send
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp_events import EventListener
from ansible_collections.colo.ft.plugins.module_utils.colo.state import MIGRATING, VMState
from ansible_collections.colo.ft.plugins.module_utils.colo.stats import pauses_from_events
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

MIGRATION_PORT = 9998
SECONDARY_HINT = (
    "is the secondary QEMU started (role secondary, -incoming) and prepared (prepare_secondary), "
    "and is {addr} its checkpoint-link address?"
)
BOOT_UNDER_COLO_WARNING = (
    "booting a guest under COLO is unreliable under TCG with QEMU 11.1.3: the secondary's "
    "guest kernel was corrupted in 11 of 15 runs (stale translated code after a checkpoint load); "
    "prefer protecting a running guest"
)


# -- plans ---------------------------------------------------------------------------------


@dataclass
class ProtectResult:
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0  # whole protect call
    resync_s: float | None = None  # drive-mirror start -> job ended (guest paused at its end)
    resync_bytes: int | None = None  # the mirror job's offset at its end (the virtual size, zero areas included)
    colo_after_migrate_s: float | None = None  # migrate -> both sides in COLO
    guest_pause_ms: float | None = None  # primary's STOP -> RESUME around the switch to COLO

    @property
    def changed(self) -> bool:
        # A call that found the migration under way only waited: that finished a change too.
        return bool(self.actions) or self.colo_after_migrate_s is not None

    def timings(self) -> dict[str, float | None]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in {
            "duration_s": self.duration_s, "resync_s": self.resync_s, "resync_bytes": self.resync_bytes,
            "colo_after_migrate_s": self.colo_after_migrate_s, "guest_pause_ms": self.guest_pause_ms}.items()}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


@dataclass
class ProtectPlan(Plan):
    """A protection's plan; apply() fills `result` (actions, timings) besides returning the actions."""

    result: ProtectResult = field(default_factory=ProtectResult)

    def apply(self, qmp: QMPClient) -> list[str]:
        done = super().apply(qmp)
        self.result.actions += done
        return done


def plan_ready(st: VMState, role: str | None, host: str | None, nbd_port: int = replication.NBD_PORT,
               migration_port: int = MIGRATION_PORT, allow_unsupported: bool = False) -> Plan:
    """The secondary gets ready for the primary: capabilities, NBD export, incoming migration.

    Steps are prefixed "secondary: " (they are listed with the primary's in protect()).
    """
    if role is not None:  # the runtime API readies a VM it was handed, which has no record here
        require_role(role, "secondary", "state=ready")
    if not host:
        raise ColoError("state=ready needs the secondary's checkpoint-link address: set secondary_address "
                        "(or checkpoint_address when starting the VM)")
    out = Plan()
    if st.mode == "secondary":
        return out
    if st.run_state != "inmigrate" and st.last_mode == "secondary":
        # A failover made this VM the running guest: it can only be protected from here now.
        raise ColoError("this VM took over the guest after a failover and serves it now; it cannot become a secondary "
                        "again. Protect it from this host instead: playbooks/reprotect.yml (or colo.ft.checkpoint "
                        "state=protected here, with a new secondary readied on the other host)")
    if st.run_state != "inmigrate":
        raise ColoError("the secondary QEMU is not waiting for an incoming migration "
                        "(start it with colo.ft.vm role=secondary)")
    out.warnings += check_version(st.version, allow_unsupported)
    plan_capabilities(out, st)
    plan_tls(out, st, tls_creds(st.objects, "server"))
    replication.plan_export(out, st, host, nbd_port)
    if not st.migration.get("socket-address"):  # -incoming defer and not listening yet
        uri = f"tcp:{replication.uri_host(host)}:{migration_port}"
        out.add(send("migrate-incoming", {"uri": uri}, f"migrate-incoming {uri}"), f"migrate-incoming {uri}")
    return _prefixed(out, "secondary: ")


def _prefixed(out: Plan, prefix: str) -> Plan:
    def wrap(run: Action) -> Action:
        return lambda qmp: [prefix + a for a in run(qmp)]
    out.steps = [Step(tuple(prefix + t for t in s.texts), wrap(s.run)) for s in out.steps]
    return out


def plan_protect(st: VMState, spec: VMSpec, host: str | None, timeout: float = 600.0,
                 allow_unsupported: bool = False, add_proxy: bool = True,
                 progress: replication.Progress | None = None, boot: bool = False,
                 stall_timeout: float = replication.STALL_TIMEOUT) -> ProtectPlan:
    """Protect this running primary with a secondary readied at `host` (its checkpoint-link address).

    spec gives the ports, the checkpoint delay and (add_proxy) the proxy a primary of
    this spec has: hot-added while the guest is paused, as colo-compare would hold every
    packet until its timeout without a running secondary. timeout bounds the start of COLO
    after the resync; the resync itself is bounded by progress only (stall_timeout seconds
    without a byte copied, replication.resync). boot=True: boot under COLO (primary started
    with -S, disks identical: no resync; the roles never do this).
    A replication child left by an interrupted protection is dropped and the disk resynced:
    what the secondary's image holds is never assumed.
    On a pair that is protected already, only a changed checkpoint delay is applied.
    """
    out = ProtectPlan()
    if st.mode == "secondary":
        raise ColoError("this VM is a COLO secondary: protection is started on the primary "
                        "(on the secondary, use state=ready)")
    if not st.has_quorum:
        raise ColoError(f"VM {spec.name} has no quorum disk: only a VM started with colo.ft.vm role=primary "
                        "(or a promoted secondary) can be protected")
    if not host:
        raise ColoError("protection needs the secondary's checkpoint-link address: set secondary_address "
                        "(or checkpoint_address when starting the VM)")
    out.result.warnings = out.warnings
    out.warnings += check_version(st.version, allow_unsupported)
    if boot:
        out.warnings.insert(0, BOOT_UNDER_COLO_WARNING)
    if st.mode == "primary" and st.migration_status == "colo":
        plan_delay(out, st, spec.checkpoint_delay_ms)
        return out
    if st.migration_status in MIGRATING:
        # An earlier call got as far as migrate: only the wait is left.
        out.add(lambda qmp: _wait_colo(qmp, out.result, timeout), "wait until COLO runs (migration under way)")
        return out
    if boot and st.run_state != "prelaunch":
        raise ColoError(f"boot under COLO needs a primary started with -S (it is {st.run_state}); use protect()")
    if not boot and st.run_state not in ("running", "paused"):
        raise ColoError(f"the primary is {st.run_state}, not running")
    if add_proxy and not spec.forward_addr:
        raise ColoError("protection needs this host's forward-link address: set forward_address")
    # The guest's pause runs from resync's stop to COLO's start: listen from before it.
    pauses: list[EventListener] = []
    out.add(lambda qmp: _listen(qmp, pauses))
    if not boot:
        if st.child is not None or st.node_exists:
            # Not in COLO, yet a replication child (an interrupted protection, or a new secondary that died
            # during a re-protection): the secondary's image may be stale or empty, so it is resynced in full.
            replication.plan_detach(out, st)
            st = dataclasses.replace(st, node_exists=False, quorum_children={
                c: n for c, n in st.quorum_children.items() if n != replication.NODE})
        replication.plan_resync(out, st, host, spec.nbd_port,
                                lambda qmp: _resync(qmp, out.result, host, spec, stall_timeout, progress,
                                                    tls_creds(st.objects, "client")))
    replication.plan_attach(out, st, host, spec.nbd_port)
    if add_proxy:
        proxy.plan_add(out, st, *proxy.definitions(spec, "primary"))
    plan_capabilities(out, st)
    plan_delay(out, st, spec.checkpoint_delay_ms)
    plan_tls(out, st, tls_creds(st.objects, "client"))
    uri = f"tcp:{replication.uri_host(host)}:{spec.migration_port}"
    out.add(lambda qmp: _migrate(qmp, out.result, uri, timeout, host, pauses[0]), f"migrate {uri}")
    out.undo = lambda qmp: _undo_protect(qmp, st.running, add_proxy and "comp0" not in st.objects, pauses)
    return out


def _listen(qmp: QMPClient, into: list[EventListener]) -> list[str]:
    into.append(qmp.listen(("STOP", "RESUME")))
    return []


def _resync(qmp: QMPClient, res: ProtectResult, host: str, spec: VMSpec, stall_timeout: float,
            progress: replication.Progress | None, tls: str | None) -> list[str]:
    def seen(copied: int, total: int) -> None:
        res.resync_bytes = copied
        if progress:
            progress(copied, total)

    t = time.monotonic()
    try:
        done = replication.resync(qmp, host, spec.nbd_port, stall_timeout=stall_timeout, progress=seen, tls=tls)
    except QMPError as exc:
        raise ColoError(f"resync to {replication.nbd_uri(host, spec.nbd_port, replication.EXPORT, tls)} "
                        f"failed: {exc.desc}; {SECONDARY_HINT.format(addr=host)}") from None
    res.resync_s = time.monotonic() - t
    return done


def _migrate(qmp: QMPClient, res: ProtectResult, uri: str, timeout: float, host: str,
             pauses: EventListener) -> list[str]:
    qmp.execute("migrate", {"uri": uri})
    try:
        _wait_colo(qmp, res, timeout)
    except ColoError as exc:
        if qmp.execute("query-migrate").get("status") in ("failed", "cancelled"):
            raise ColoError(f"{exc}; {SECONDARY_HINT.format(addr=host)}") from None
        raise
    pauses.close()
    found = pauses_from_events(pauses.events)
    res.guest_pause_ms = found[0] if found else None
    return [f"migrate {uri}"]


def _wait_colo(qmp: QMPClient, res: ProtectResult, timeout: float) -> list[str]:
    res.colo_after_migrate_s = wait_colo(qmp, None, timeout)
    return []


def _undo_protect(primary: QMPClient, was_running: bool, drop_proxy: bool, pauses: list[EventListener]) -> None:
    """Best effort after a failed protection: no half-attached replication or proxy that it
    added, guest running again (a failed migration leaves the stopped source paused)."""
    for listener in pauses:
        listener.close()
    try:
        if primary.execute("query-migrate").get("status") not in ("none", "failed", "cancelled"):
            return  # migrating or in COLO already (a slow start): the caller's error says so; nothing to undo
        replication.detach(primary)
        if drop_proxy:
            cleanup = Plan()
            proxy.plan_remove_primary(cleanup, state.read(primary))
            cleanup.apply(primary)
        if was_running and not primary.execute("query-status")["running"]:
            primary.execute("cont")
    except ColoError:
        pass  # the original error matters more


def plan_release(st: VMState, role: str | None = None) -> Plan:
    """The primary drops its secondary and leaves COLO, guest running.

    Order of docs/qemu-colo.md: replication child, proxy objects, then
    x-colo-lost-heartbeat; without it the primary holds packets until
    colo-compare's timeout.
    """
    if st.is_secondary(role):
        raise ColoError("this VM is the COLO secondary: stop protection on the primary "
                        "(state=unprotected there) and stop this VM with colo.ft.vm state=stopped")
    out = Plan()
    replication.plan_detach(out, st)
    proxy.plan_remove_primary(out, st)
    if st.mode == "primary":
        out.add(lost_heartbeat, "x-colo-lost-heartbeat")
        out.add(wait_running)
    return out


# -- the runtime API: read, plan, apply ---------------------------------------------------------


def prepare_secondary(secondary: QMPClient, checkpoint_host: str, nbd_port: int = replication.NBD_PORT,
                      migration_port: int = MIGRATION_PORT) -> list[str]:
    """Capabilities, NBD export, and the incoming migration if QEMU was started with -incoming defer."""
    return plan_ready(state.read(secondary), None, checkpoint_host, nbd_port, migration_port).apply(secondary)


def protect(primary: QMPClient, secondary: QMPClient | None, checkpoint_host: str,
            nbd_port: int = replication.NBD_PORT, migration_port: int = MIGRATION_PORT,
            checkpoint_delay_ms: int | None = None, timeout: float = 600.0, allow_unsupported: bool = False,
            progress: replication.Progress | None = None, proxy_spec: VMSpec | None = None,
            boot: bool = False, stall_timeout: float = replication.STALL_TIMEOUT) -> ProtectResult:
    """Make a running primary fault tolerant with a freshly started secondary.

    checkpoint_host is the secondary's address on the checkpoint link (NBD and migration
    listen there). The guest keeps running except for the stop between the end of the
    disk copy and the start of COLO (the first full RAM copy happens in it).
    secondary: its QMP client, or None when it runs on another host and was readied there
    (prepare_secondary); then only the primary is awaited.
    proxy_spec: hot-add the proxy objects a primary of this spec has (for a VM not started
    as primary: re-protection); its ports and checkpoint delay are used.
    """
    t0 = time.monotonic()
    # Without proxy_spec only the ports and the delay of a spec are used.
    overrides = {"nbd_port": nbd_port, "migration_port": migration_port, "checkpoint_delay_ms": checkpoint_delay_ms}
    spec = dataclasses.replace(proxy_spec or VMSpec(name="protect", disk="", mac=""),
                               **{k: v for k, v in overrides.items() if v is not None})
    warnings: list[str] = []
    if secondary is not None:
        ready = plan_ready(state.read(secondary), None, checkpoint_host, spec.nbd_port, spec.migration_port,
                           allow_unsupported)
        if primary.version != secondary.version:
            warnings.append(f"QEMU versions differ: primary {primary.version}, secondary {secondary.version}")
    plan = plan_protect(state.read(primary), spec, checkpoint_host, timeout, allow_unsupported,
                        add_proxy=proxy_spec is not None, progress=progress, boot=boot, stall_timeout=stall_timeout)
    res = plan.result
    res.warnings += warnings
    if plan.changed and secondary is not None:
        res.actions += ready.apply(secondary)
    plan.apply(primary)
    if secondary is not None and plan.changed:
        wait_colo(primary, secondary, timeout)
    res.duration_s = time.monotonic() - t0
    return res


def boot_under_colo(primary: QMPClient, secondary: QMPClient | None, checkpoint_host: str,
                    nbd_port: int = replication.NBD_PORT, migration_port: int = MIGRATION_PORT,
                    checkpoint_delay_ms: int | None = None, timeout: float = 120.0,
                    allow_unsupported: bool = False) -> ProtectResult:
    """Opt-in: start COLO before the guest boots (primary started with -S).

    Both disks must already be identical (copies of one image), so no resync: never with a secondary image
    that the colo_secondary role created (empty, for the resync of protect()); no module or role boots under COLO.
    secondary: as for protect() (None: prepared on its own host).
    """
    return protect(primary, secondary, checkpoint_host, nbd_port, migration_port, checkpoint_delay_ms, timeout,
                   allow_unsupported, boot=True)


def release_primary(primary: QMPClient) -> list[str]:
    return plan_release(state.read(primary)).apply(primary)


def stop_protection(primary: QMPClient, secondary: QMPClient | None = None) -> list[str]:
    """End COLO on purpose: the secondary QEMU quits first (so it can never take
    over), then the primary carries on alone."""
    plan_release(state.read(primary))  # refuses on a secondary before anything quits
    done: list[str] = []
    if secondary is not None:
        try:
            mode: str | None = colo_status(secondary)["mode"]
        except (QMPConnectionError, QMPTimeout):
            mode = None  # already gone
        if mode == "primary":
            raise ColoError("the VM given as secondary is a COLO primary; refusing to quit it")
        if mode is not None:
            try:
                secondary.execute("quit")
            except QMPConnectionError:
                pass  # QEMU may close the socket before answering
            done.append("quit secondary")
    # Planned now: with its secondary gone the primary may have left COLO by itself.
    return done + plan_release(state.read(primary)).apply(primary)
