"""QEMU's migration settings for COLO and waits on its COLO state (both sides).

The capabilities COLO needs on each QEMU version, the checkpoint delay, and the
waits the sequences in checkpoint.py and failover.py share: until COLO runs,
until QEMU has left it after x-colo-lost-heartbeat, until the guest runs again.
"""
from __future__ import annotations

import time

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, UnsupportedQemu
from ansible_collections.colo.ft.plugins.module_utils.colo.guard import QemuVersion, version_problems
from ansible_collections.colo.ft.plugins.module_utils.colo.plan import Plan, send
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.state import VMState


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


def check_version(version: tuple[int, int, int], allow_unsupported: bool = False) -> list[str]:
    """Refuse a QEMU known to fail COLO (guard.py's policy); returns warnings."""
    problems, warnings = version_problems(QemuVersion(*version))
    if problems and not allow_unsupported:
        raise UnsupportedQemu("; ".join(problems))
    return [f"UNSAFE override: {p}" for p in problems] + warnings


def set_capabilities(qmp: QMPClient) -> list[str]:
    want = colo_capabilities(qmp.version)
    text = _capabilities_todo(qmp.version, {c["capability"]: c["state"]
                                            for c in qmp.execute("query-migrate-capabilities")})
    if not text:
        return []
    # All in one call: QEMU checks x-colo and return-path together.
    qmp.execute("migrate-set-capabilities", {"capabilities": [{"capability": k, "state": v} for k, v in want.items()]})
    return [text]


def _capabilities_todo(version: tuple[int, int, int], have: dict[str, bool]) -> str | None:
    todo = {k: v for k, v in colo_capabilities(version).items() if have.get(k) != v}
    if not todo:
        return None
    return "migrate-set-capabilities " + " ".join(f"{k}={'on' if v else 'off'}" for k, v in todo.items())


def plan_capabilities(out: Plan, st: VMState) -> None:
    text = _capabilities_todo(st.version, st.caps)
    if text:
        out.add(set_capabilities, text)


def plan_delay(out: Plan, st: VMState, checkpoint_delay_ms: int) -> None:
    """x-checkpoint-delay, where QEMU's differs (it changes in place on a protected pair)."""
    if st.params.get("x-checkpoint-delay") != checkpoint_delay_ms:
        text = f"migrate-set-parameters x-checkpoint-delay={checkpoint_delay_ms}"
        out.add(send("migrate-set-parameters", {"x-checkpoint-delay": checkpoint_delay_ms}, text), text)


def plan_tls(out: Plan, st: VMState, creds: str | None) -> None:
    """tls-creds of the migration: the server end on a secondary, the client end on a primary
    ("" = cleartext). A failover swaps the ends, so it is set before every migration."""
    want = creds or ""
    if st.params.get("tls-creds", "") != want:
        text = f"migrate-set-parameters tls-creds={want or '(none)'}"
        out.add(send("migrate-set-parameters", {"tls-creds": want}, text), text)


# -- state ---------------------------------------------------------------------------


def colo_status(qmp: QMPClient) -> dict[str, str]:
    """query-colo-status: mode (none/primary/secondary), last-mode, reason."""
    return qmp.execute("query-colo-status")


def in_colo(qmp: QMPClient, mode: str) -> bool:
    return colo_status(qmp)["mode"] == mode and qmp.execute("query-migrate").get("status") == "colo"


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


def wait_mode_none(qmp: QMPClient, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while colo_status(qmp)["mode"] != "none":
        if time.monotonic() > end:
            raise ColoError(f"QEMU still in COLO {timeout:g}s after x-colo-lost-heartbeat")
        time.sleep(0.02)


def wait_running(qmp: QMPClient, timeout: float = 10.0) -> list[str]:
    end = time.monotonic() + timeout
    while True:
        st = qmp.execute("query-status")
        if st["running"]:
            return []
        if time.monotonic() > end:
            raise ColoError(f"the guest is {st['status']} {timeout:g}s after leaving COLO, not running")
        time.sleep(0.02)


def lost_heartbeat(qmp: QMPClient) -> list[str]:
    """x-colo-lost-heartbeat, then wait until QEMU has left COLO.

    COLO mode reads "none" as soon as the heartbeat is handled, but a
    checkpoint that was under way (or stuck on a dead peer) keeps the guest
    stopped until the COLO thread exits and resumes it: callers wait_running().
    """
    if colo_status(qmp)["mode"] == "none":
        return []  # left COLO since it was planned (e.g. the peer's QEMU quit)
    qmp.execute("x-colo-lost-heartbeat")
    wait_mode_none(qmp)
    return ["x-colo-lost-heartbeat"]
