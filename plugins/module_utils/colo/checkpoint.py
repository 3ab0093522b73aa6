"""Starting and stopping COLO checkpointing (QEMU migration in x-colo mode).

protect() is the measured "protect a running primary" sequence of
colo-facts.md: prepare the secondary (capabilities, NBD export, incoming
migration), resync its disk, attach the replication child, migrate; then
wait until both sides report COLO. Checkpoint statistics come from the
primary's STOP/RESUME events (one pair per checkpoint = its pause).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import proxy, replication
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import (
    ColoError,
    QMPConnectionError,
    QMPError,
    QMPTimeout,
    UnsupportedQemu,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.guard import QemuVersion, version_problems
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.stats import pauses_from_events
# Re-exported until status.py imports it from stats.
from ansible_collections.colo.ft.plugins.module_utils.colo.stats import sample_checkpoints  # pylint: disable=unused-import
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

MIGRATION_PORT = 9998
# QEMU's default is 20000 ms: a checkpoint every 2 s kept pauses short in the lab.
DEFAULT_CHECKPOINT_DELAY_MS = 2000
# query-migrate states of a migration still under way.
MIGRATING = ("setup", "active", "device", "pre-switchover", "wait-unplug", "postcopy-active")
SECONDARY_HINT = (
    "is the secondary QEMU started (role secondary, -incoming) and prepared (prepare_secondary), "
    "and is {addr} its checkpoint-link address?"
)
BOOT_UNDER_COLO_WARNING = (
    "booting a guest under COLO is unreliable under TCG with QEMU 11.1.3: the secondary's "
    "guest kernel was corrupted in 11 of 15 runs (stale translated code after a checkpoint load); "
    "prefer protecting a running guest"
)


# -- capabilities and parameters ---------------------------------------------------


def colo_capabilities(version: tuple[int, int, int]) -> dict[str, bool]:
    """Migration capabilities COLO needs on this QEMU (same on both sides)."""
    if version[:2] in ((10, 0), (10, 1)):
        raise UnsupportedQemu(version_problems(QemuVersion(*version))[0][0])
    if version >= (10, 2, 0):
        # QEMU 11: "Capability 'x-colo' requires capability 'return-path'".
        return {"x-colo": True, "return-path": True}
    # Older QEMU does not need it, and 10.0 broke with it ("invalid message 0x0000").
    return {"x-colo": True}


def check_version(qmp: QMPClient, allow_unsupported: bool = False) -> list[str]:
    """Refuse a QEMU known to fail COLO (guard.py's policy); returns warnings."""
    problems, warnings = version_problems(QemuVersion(*qmp.version))
    if problems and not allow_unsupported:
        raise UnsupportedQemu("; ".join(problems))
    return [f"UNSAFE override: {p}" for p in problems] + warnings


def set_capabilities(qmp: QMPClient) -> list[str]:
    want = colo_capabilities(qmp.version)
    have = {c["capability"]: c["state"] for c in qmp.execute("query-migrate-capabilities")}
    todo = [{"capability": k, "state": v} for k, v in want.items() if have.get(k) != v]
    if not todo:
        return []
    # All in one call: QEMU checks x-colo and return-path together.
    qmp.execute("migrate-set-capabilities", {"capabilities": [{"capability": k, "state": v} for k, v in want.items()]})
    return ["migrate-set-capabilities " + " ".join(f"{t['capability']}={'on' if t['state'] else 'off'}" for t in todo)]


def set_parameters(qmp: QMPClient, checkpoint_delay_ms: int = DEFAULT_CHECKPOINT_DELAY_MS, **extra: Any) -> list[str]:
    """x-checkpoint-delay plus any other migration parameter (keys as QEMU spells them)."""
    want = {"x-checkpoint-delay": checkpoint_delay_ms, **{k.replace("_", "-"): v for k, v in extra.items()}}
    have = qmp.execute("query-migrate-parameters")
    todo = {k: v for k, v in want.items() if have.get(k) != v}
    if not todo:
        return []
    qmp.execute("migrate-set-parameters", todo)
    return [f"migrate-set-parameters {k}={v}" for k, v in todo.items()]


# -- state ---------------------------------------------------------------------------


def colo_status(qmp: QMPClient) -> dict[str, str]:
    """query-colo-status: mode (none/primary/secondary), last-mode, reason."""
    return qmp.execute("query-colo-status")


def migrate_status(qmp: QMPClient) -> str:
    return qmp.execute("query-migrate").get("status", "none")


def in_colo(qmp: QMPClient, mode: str) -> bool:
    return colo_status(qmp)["mode"] == mode and migrate_status(qmp) == "colo"


def wait_colo(primary: QMPClient, secondary: QMPClient | None, timeout: float = 60.0) -> float:
    """Wait until the primary (and the secondary, if given) run COLO; returns seconds waited."""
    start = time.monotonic()
    while True:
        info = primary.execute("query-migrate")
        st = info.get("status", "none")
        if st in ("failed", "cancelled"):
            raise ColoError(f"migration to the secondary {st}: {info.get('error-desc', 'no reason given')}")
        # COLO reports "primary" a moment before the guest is resumed.
        ok = st == "colo" and colo_status(primary)["mode"] == "primary" and primary.execute("query-status")["running"]
        if ok and secondary is not None:
            ok = in_colo(secondary, "secondary")
        if ok:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise ColoError(f"COLO not running after {timeout:g}s (primary migration status {st})")
        time.sleep(0.05)


# -- protect ------------------------------------------------------------------------------


@dataclass
class ProtectResult:
    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0  # whole protect call
    resync_s: float | None = None  # drive-mirror start -> job ended (guest paused at its end)
    colo_after_migrate_s: float | None = None  # migrate -> both sides in COLO
    guest_pause_ms: float | None = None  # primary's STOP -> RESUME around the switch to COLO

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}


def prepare_secondary(
    secondary: QMPClient,
    checkpoint_host: str,
    nbd_port: int = replication.NBD_PORT,
    migration_port: int = MIGRATION_PORT,
) -> list[str]:
    """Capabilities, NBD export, and the incoming migration if QEMU was started
    with -incoming defer. Actions are prefixed "secondary: "."""
    if colo_status(secondary)["mode"] == "secondary":
        return []
    done = set_capabilities(secondary)
    done += replication.ensure_nbd_export(secondary, checkpoint_host, nbd_port)
    info = secondary.execute("query-migrate")
    if secondary.execute("query-status")["status"] != "inmigrate":
        raise ColoError("the secondary QEMU is not waiting for an incoming migration (start it with -incoming)")
    if not info.get("socket-address"):  # -incoming defer and not listening yet
        uri = f"tcp:{_host(checkpoint_host)}:{migration_port}"
        secondary.execute("migrate-incoming", {"uri": uri})
        done.append(f"migrate-incoming {uri}")
    return [f"secondary: {a}" for a in done]


def _host(h: str) -> str:
    return f"[{h}]" if ":" in h else h


def protect(
    primary: QMPClient,
    secondary: QMPClient | None,
    checkpoint_host: str,
    nbd_port: int = replication.NBD_PORT,
    migration_port: int = MIGRATION_PORT,
    checkpoint_delay_ms: int = DEFAULT_CHECKPOINT_DELAY_MS,
    parameters: dict[str, Any] | None = None,
    timeout: float = 600.0,
    allow_unsupported: bool = False,
    progress: replication.Progress | None = None,
    proxy_spec: VMSpec | None = None,
    compare: proxy.CompareOptions | None = None,
) -> ProtectResult:
    """Make a running primary fault tolerant with a freshly started secondary.

    checkpoint_host is the secondary's address on the checkpoint link (NBD
    and migration listen there). The guest keeps running except for the
    stop between the end of the disk copy and the start of COLO (the first
    full RAM copy happens in it).
    secondary: its QMP client, or None when it runs on another host and was
    readied there with prepare_secondary(); then only the primary is awaited.
    proxy_spec: hot-add the proxy objects a primary of this spec has (for a VM
    not started as primary: re-protection); added while the guest is paused,
    as colo-compare would hold every packet until its timeout without a
    running secondary.
    """
    t0 = time.monotonic()
    res = ProtectResult()
    res.warnings += check_version(primary, allow_unsupported)
    if secondary is not None:
        check_version(secondary, allow_unsupported)
        if primary.version != secondary.version:
            res.warnings.append(f"QEMU versions differ: primary {primary.version}, secondary {secondary.version}")
    if colo_status(primary)["mode"] == "secondary":
        raise ColoError("this VM is a COLO secondary: protect() runs on the primary")
    if in_colo(primary, "primary"):
        res.duration_s = time.monotonic() - t0
        return res
    run = primary.execute("query-status")
    if migrate_status(primary) in MIGRATING:
        # An earlier call got as far as migrate: only the wait is left.
        res.colo_after_migrate_s = wait_colo(primary, secondary, timeout)
        res.duration_s = time.monotonic() - t0
        return res
    if run["status"] not in ("running", "paused"):
        raise ColoError(f"the primary is {run['status']}, not running")
    if secondary is not None:
        res.actions += prepare_secondary(secondary, checkpoint_host, nbd_port, migration_port)
    was_running = run["running"]
    added_proxy: list[str] = []
    # The guest's pause runs from resync's stop to COLO's start: listen from before it.
    pause_events = primary.listen(("STOP", "RESUME"))
    t = time.monotonic()
    try:
        try:
            res.actions += replication.resync(primary, checkpoint_host, nbd_port, timeout=timeout, progress=progress)
        except QMPError as exc:
            raise ColoError(f"resync to {replication.nbd_uri(checkpoint_host, nbd_port, replication.EXPORT)} "
                            f"failed: {exc.desc}; {SECONDARY_HINT.format(addr=checkpoint_host)}") from None
        res.resync_s = time.monotonic() - t
        res.actions += replication.attach(primary, checkpoint_host, nbd_port)
        if proxy_spec is not None:
            added_proxy = proxy.add_primary(primary, proxy_spec, compare)
            res.actions += added_proxy
        res.actions += set_capabilities(primary)
        res.actions += set_parameters(primary, checkpoint_delay_ms, **(parameters or {}))
        uri = f"tcp:{_host(checkpoint_host)}:{migration_port}"
        primary.execute("migrate", {"uri": uri})
        res.actions.append(f"migrate {uri}")
    except Exception:
        _undo_protect(primary, was_running, bool(added_proxy))
        raise
    try:
        res.colo_after_migrate_s = wait_colo(primary, secondary, timeout)
    except ColoError as exc:
        # A failed migration leaves the (stopped) source paused: resume it alone.
        if migrate_status(primary) in ("failed", "cancelled"):
            _undo_protect(primary, was_running, bool(added_proxy))
            raise ColoError(f"{exc}; {SECONDARY_HINT.format(addr=checkpoint_host)}") from None
        raise
    pause_events.close()
    pauses = pauses_from_events(pause_events.events)
    res.guest_pause_ms = pauses[0] if pauses else None
    res.duration_s = time.monotonic() - t0
    return res


def _undo_protect(primary: QMPClient, was_running: bool, drop_proxy: bool) -> None:
    """Best effort: no half-attached replication or proxy this call added, guest running again."""
    try:
        replication.detach(primary)
        if drop_proxy:
            proxy.remove_primary(primary)
        if was_running and not primary.execute("query-status")["running"]:
            primary.execute("cont")
    except ColoError:
        pass  # the original error matters more


def boot_under_colo(
    primary: QMPClient,
    secondary: QMPClient | None,
    checkpoint_host: str,
    nbd_port: int = replication.NBD_PORT,
    migration_port: int = MIGRATION_PORT,
    checkpoint_delay_ms: int = DEFAULT_CHECKPOINT_DELAY_MS,
    parameters: dict[str, Any] | None = None,
    timeout: float = 120.0,
    allow_unsupported: bool = False,
) -> ProtectResult:
    """Opt-in: start COLO before the guest boots (primary started with -S).

    Both disks must already be identical (copies of one image), so no resync.
    secondary: as for protect() (None: prepared on its own host).
    """
    t0 = time.monotonic()
    res = ProtectResult(warnings=[BOOT_UNDER_COLO_WARNING])
    res.warnings += check_version(primary, allow_unsupported)
    if secondary is not None:
        check_version(secondary, allow_unsupported)
    if in_colo(primary, "primary"):
        return res
    if migrate_status(primary) in MIGRATING:
        res.colo_after_migrate_s = wait_colo(primary, secondary, timeout)
        res.duration_s = time.monotonic() - t0
        return res
    status = primary.execute("query-status")["status"]
    if status != "prelaunch":
        raise ColoError(f"boot under COLO needs a primary started with -S (it is {status}); use protect()")
    if secondary is not None:
        res.actions += prepare_secondary(secondary, checkpoint_host, nbd_port, migration_port)
    res.actions += replication.attach(primary, checkpoint_host, nbd_port)
    res.actions += set_capabilities(primary)
    res.actions += set_parameters(primary, checkpoint_delay_ms, **(parameters or {}))
    uri = f"tcp:{_host(checkpoint_host)}:{migration_port}"
    primary.execute("migrate", {"uri": uri})
    res.actions.append(f"migrate {uri}")
    res.colo_after_migrate_s = wait_colo(primary, secondary, timeout)
    res.duration_s = time.monotonic() - t0
    return res


# -- stop ------------------------------------------------------------------------------


def release_primary(primary: QMPClient) -> list[str]:
    """The primary drops its secondary and leaves COLO, guest running.

    Order of colo-facts.md: replication child, proxy objects, then
    x-colo-lost-heartbeat; without it the primary holds packets until
    colo-compare's timeout.
    """
    done = replication.detach(primary)
    done += proxy.remove_primary(primary)
    if colo_status(primary)["mode"] == "primary":
        primary.execute("x-colo-lost-heartbeat")
        done.append("x-colo-lost-heartbeat")
        wait_mode_none(primary)
        # COLO mode reads "none" as soon as the heartbeat is handled, but a
        # checkpoint that was under way (or stuck on a dead secondary) keeps the
        # guest stopped until the COLO thread exits and resumes it.
        wait_running(primary)
    return done


def wait_mode_none(qmp: QMPClient, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while colo_status(qmp)["mode"] != "none":
        if time.monotonic() > end:
            raise ColoError(f"QEMU still in COLO {timeout:g}s after x-colo-lost-heartbeat")
        time.sleep(0.02)


def wait_running(qmp: QMPClient, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while True:
        st = qmp.execute("query-status")
        if st["running"]:
            return
        if time.monotonic() > end:
            raise ColoError(f"the guest is {st['status']} {timeout:g}s after leaving COLO, not running")
        time.sleep(0.02)


def stop_protection(primary: QMPClient, secondary: QMPClient | None = None) -> list[str]:
    """End COLO on purpose: the secondary QEMU quits first (so it can never take
    over), then the primary carries on alone."""
    if colo_status(primary)["mode"] == "secondary":
        raise ColoError("stop_protection() runs on the primary; this VM is the COLO secondary")
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
    done += release_primary(primary)
    return done
