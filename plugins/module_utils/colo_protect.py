# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Protect a running primary whose secondary runs on ANOTHER host (Ansible-free).

checkpoint.protect() and failover.reprotect() take a QMP client of the
secondary as well: they prepare it and wait until it is in COLO too. A module
runs on one host and the secondary's QMP socket is a unix socket on the
other, so colo.ft.checkpoint prepares the secondary in its own task
(state=ready, checkpoint.prepare_secondary) and then runs this on the primary:
the same sequence as checkpoint.protect() with the secondary's parts left out.
Stopgap until the runtime's protect() accepts secondary=None (asked of the
runtime owners); it only calls public runtime functions.
"""
from __future__ import annotations

import time
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint, proxy, replication
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, QMPError
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

SECONDARY_HINT = ("is the secondary started (colo.ft.vm role=secondary) and ready "
                  "(colo.ft.checkpoint state=ready on the secondary host), and is {addr} its checkpoint-link address?")


def protect_primary(
    primary: QMPClient,
    checkpoint_host: str,
    nbd_port: int = replication.NBD_PORT,
    migration_port: int = checkpoint.MIGRATION_PORT,
    checkpoint_delay_ms: int = checkpoint.DEFAULT_CHECKPOINT_DELAY_MS,
    timeout: float = 600.0,
    allow_unsupported: bool = False,
    proxy_spec: VMSpec | None = None,
    compare: proxy.CompareOptions | None = None,
    parameters: dict[str, Any] | None = None,
) -> checkpoint.ProtectResult:
    """checkpoint.protect() for a secondary prepared elsewhere (see the file's docstring)."""
    t0 = time.monotonic()
    res = checkpoint.ProtectResult()
    res.warnings += checkpoint.check_version(primary, allow_unsupported)
    if checkpoint.colo_status(primary)["mode"] == "secondary":
        raise ColoError("this VM is a COLO secondary: protection is started on the primary "
                        "(on the secondary, use state=ready)")
    if checkpoint.in_colo(primary, "primary"):
        res.duration_s = time.monotonic() - t0
        return res
    if checkpoint.migrate_status(primary) in checkpoint.MIGRATING:
        res.colo_after_migrate_s = checkpoint.wait_colo(primary, None, timeout)
        res.duration_s = time.monotonic() - t0
        return res
    run = primary.execute("query-status")
    if run["status"] not in ("running", "paused"):
        raise ColoError(f"the primary is {run['status']}, not running")
    was_running = run["running"]
    wall = time.time()
    t = time.monotonic()
    added_proxy: list[str] = []
    try:
        try:
            res.actions += replication.resync(primary, checkpoint_host, nbd_port, timeout=timeout)
        except QMPError as exc:
            raise ColoError(f"resync to nbd://{checkpoint_host}:{nbd_port} failed: {exc.desc}; "
                            + SECONDARY_HINT.format(addr=checkpoint_host)) from None
        res.resync_s = time.monotonic() - t
        res.actions += replication.attach(primary, checkpoint_host, nbd_port)
        if proxy_spec is not None:
            added_proxy = proxy.add_primary(primary, proxy_spec, compare)
            res.actions += added_proxy
        res.actions += checkpoint.set_capabilities(primary)
        res.actions += checkpoint.set_parameters(primary, checkpoint_delay_ms, **(parameters or {}))
        uri = f"tcp:{_host(checkpoint_host)}:{migration_port}"
        primary.execute("migrate", {"uri": uri})
        res.actions.append(f"migrate {uri}")
    except Exception:
        _undo(primary, was_running, bool(added_proxy))
        raise
    try:
        res.colo_after_migrate_s = checkpoint.wait_colo(primary, None, timeout)
    except ColoError as exc:
        if checkpoint.migrate_status(primary) in ("failed", "cancelled"):
            _undo(primary, was_running, bool(added_proxy))
            raise ColoError(f"{exc}; " + SECONDARY_HINT.format(addr=checkpoint_host)) from None
        raise
    pauses = checkpoint.pauses_from_events(
        [e for e in primary.events() if e.get("event") in ("STOP", "RESUME")], since=wall)
    res.guest_pause_ms = pauses[0] if pauses else None
    res.duration_s = time.monotonic() - t0
    return res


def _host(h: str) -> str:
    return f"[{h}]" if ":" in h else h


def _undo(primary: QMPClient, was_running: bool, drop_proxy: bool) -> None:
    """Best effort: no half-attached replication, guest running again (the original error matters more)."""
    try:
        replication.detach(primary)
        if drop_proxy:
            proxy.remove_primary(primary)
        if was_running and not primary.execute("query-status")["running"]:
            primary.execute("cont")
    except ColoError:
        pass
