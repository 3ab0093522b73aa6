"""Disk replication of a COLO pair (QEMU's replication block driver over NBD).

Secondary: the NBD export of parent0 (its active/hidden overlays: host.py).
Primary: full resync of the secondary's disk (drive-mirror), then the
replication0 child of the quorum colo-disk0 that copies every write.
Each step looks at QEMU's state first and returns the actions it took:
an empty list means nothing had to change. The plan_* functions decide
from a VMState which of them a task needs (colo.ft.replication, protect).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, QMPError
from ansible_collections.colo.ft.plugins.module_utils.colo.plan import Action, Plan, require_role
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp_events import EventListener
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import nbd_node, replication_node, tls_creds
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import DISK_ID, PARENT_ID, REPLICATION_NODE

if TYPE_CHECKING:  # state.py reads the replication node through this module
    from ansible_collections.colo.ft.plugins.module_utils.colo.state import VMState


DISK = DISK_ID  # quorum colo-disk0 on both sides
EXPORT = PARENT_ID  # the secondary's copy of the disk, exported over NBD
NODE = REPLICATION_NODE  # primary-side replication child of the quorum
JOB = "resync"
RESYNC_NBD_NODE = "resync-nbd"  # the resync's NBD client (its target), named so that it can be yanked
NBD_PORT = 9999

Progress = Callable[[int, int], None]  # (bytes copied, bytes to copy: grows with the guest's writes)


# -- block graph ----------------------------------------------------------------


def _quorum_node(graph: dict[str, Any], disk: str) -> tuple[int, dict[int, dict[str, Any]]] | None:
    nodes = {n["id"]: n for n in graph["nodes"]}
    top = next((n for n in graph["nodes"] if n["name"] == disk), None)
    if top is None:
        return None
    if top["type"] == "block-backend":  # -drive id=colo-disk0: the backend's root is the quorum
        root = next((e["child"] for e in graph["edges"] if e["parent"] == top["id"] and e["name"] == "root"), None)
        if root is None:
            return None
        return root, nodes
    return top["id"], nodes


def children_from_graph(graph: dict[str, Any], disk: str = DISK) -> dict[str, str] | None:
    """{child name (children.N): node name} of the quorum behind disk, from
    x-debug-query-block-graph; None if there is no such disk."""
    found = _quorum_node(graph, disk)
    if found is None:
        return None
    qid, nodes = found
    return {
        e["name"]: nodes[e["child"]]["name"]
        for e in graph["edges"]
        if e["parent"] == qid and e["name"].startswith("children.")
    }


def quorum_children(qmp: QMPClient, disk: str = DISK) -> dict[str, str]:
    children = children_from_graph(qmp.execute("x-debug-query-block-graph"), disk)
    if children is None:
        raise ColoError(f"no block device {disk} in this VM")
    return children


def replication_child(qmp: QMPClient, disk: str = DISK, node: str = NODE) -> str | None:
    """Name of the quorum child that is node, or None."""
    return next((c for c, n in quorum_children(qmp, disk).items() if n == node), None)


def node_exists(qmp: QMPClient, node: str) -> bool:
    return any(n.get("node-name") == node for n in qmp.execute("query-named-block-nodes", {"flat": True}))


# -- NBD export (secondary) -------------------------------------------------------


def nbd_exports(qmp: QMPClient) -> list[str]:
    return [e["id"] for e in qmp.execute("query-block-exports") if e.get("type") == "nbd"]


def ensure_nbd_export(qmp: QMPClient, host: str, port: int = NBD_PORT, device: str = EXPORT,
                      tls: str | None = None) -> list[str]:
    """NBD server on the checkpoint address only, exporting device writable (tls: server credentials id)."""
    if device in nbd_exports(qmp):
        return []
    done: list[str] = []
    args: dict[str, Any] = {"addr": {"type": "inet", "data": {"host": host, "port": str(port)}}}
    if tls:
        args["tls-creds"] = tls
    try:
        qmp.execute("nbd-server-start", args)
        done.append(_server_text(host, port, tls))
    except QMPError as exc:
        # QEMU has no query for the server: "already running" is the only state we get.
        if "already running" not in exc.desc:
            raise
    qmp.execute("nbd-server-add", {"device": device, "writable": True})
    done.append(f"nbd-server-add {device} writable")
    return done


def stop_nbd(qmp: QMPClient) -> list[str]:
    """Stop the NBD server (and its exports). [] if it was not running."""
    if not nbd_exports(qmp):
        # No export: the server may still listen (started, export failed); stop is harmless.
        try:
            qmp.execute("nbd-server-stop")
        except QMPError:
            return []
        return ["nbd-server-stop (no export)"]
    qmp.execute("nbd-server-stop")
    return ["nbd-server-stop"]


# -- resync and replication child (primary) ----------------------------------------


def uri_host(host: str) -> str:
    """A host as it stands in a URI (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def nbd_uri(host: str, port: int, export: str, tls: str | None = None) -> str:
    """The export as a URI in messages (QEMU's nbd+tls form; resync() opens it by options)."""
    return f"nbd{'+tls' if tls else ''}://{uri_host(host)}:{port}/{export}"


def _server_text(host: str, port: int, tls: str | None) -> str:
    return f"nbd-server-start {host}:{port}" + (f" tls-creds={tls}" if tls else "")


def _job(qmp: QMPClient, job_id: str) -> dict[str, Any] | None:
    return next((j for j in qmp.execute("query-block-jobs") if j.get("device") == job_id), None)


JOB_ENDS = ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")
# A resync has no time limit while it copies: it is given up when the bytes copied have not grown for this long.
STALL_TIMEOUT = 60.0
POLL_S = 0.05  # job polls while the guest is paused (the end of the copy) and during the first seconds
SLOW_POLL_S = 0.5  # later polls of a long copy, the guest running


def _job_end(ended: EventListener, job_id: str) -> dict[str, Any] | None:
    """The last of the JOB_ENDS events a listener saw for the job, or None."""
    return next((ev for ev in reversed(ended.drain()) if ev.get("data", {}).get("device") == job_id), None)


def _end_text(end: dict[str, Any] | None) -> str:
    if end is None:
        return "it vanished"
    return end["data"].get("error") or end["event"]


def _follow(qmp: QMPClient, ended: EventListener, disk: str, stall_timeout: float, progress: Progress | None,
            until_ready: bool) -> None:
    """Poll the resync job until it is ready (until_ready) or has ended. ColoError when it ends before it is
    ready, or when the bytes it copied have not grown for stall_timeout seconds (the job is then cancelled, so a
    rerun starts the copy over instead of waiting on a dead one)."""
    start = best_at = time.monotonic()
    best = -1
    while True:
        job = _job(qmp, JOB)
        if job is None:
            if until_ready:
                raise ColoError(f"resync job of {disk} ended before it was ready: {_end_text(_job_end(ended, JOB))}")
            return
        copied, total = int(job.get("offset") or 0), int(job.get("len") or 0)
        if progress:
            progress(copied, total)
        if until_ready and job.get("ready"):
            return
        now = time.monotonic()
        if copied > best:
            best, best_at = copied, now
        elif now - best_at > stall_timeout:
            # Cut the NBD connection first: cancelling a job whose writes hang on a dead peer would wait for
            # them (TCP gives up after many minutes) with QEMU's main loop held, the guest and monitor with it.
            for command, args in (("yank", {"instances": [{"type": "block-node", "node-name": RESYNC_NBD_NODE}]}),
                                  ("block-job-cancel", {"device": JOB, "force": True})):
                try:
                    qmp.execute(command, args)
                except QMPError:
                    pass  # gone meanwhile: the error below says why the copy stopped
            raise ColoError(f"resync of {disk} made no progress for {stall_timeout:g} s ({copied} of {total} bytes "
                            "copied): is the secondary up and reachable on the checkpoint link? The copy was cut "
                            "and cancelled; protecting again starts it over")
        time.sleep(POLL_S if not until_ready or now - start < 2 else SLOW_POLL_S)


def resync(
    qmp: QMPClient,
    host: str,
    port: int = NBD_PORT,
    export: str = EXPORT,
    disk: str = DISK,
    node: str = NODE,
    stall_timeout: float = STALL_TIMEOUT,
    progress: Progress | None = None,
    tls: str | None = None,
) -> list[str]:
    """Copy the primary's disk to the secondary's NBD export and stop the guest.

    drive-mirror sync=full, mode existing: QEMU makes the whole target read as zeroes (or finds it does), copies
    every allocated block of the source's chain, then keeps copying the guest's writes (the job is ready). Then
    the guest is stopped and the job cancelled, which on a ready mirror copies what is left and ends
    BLOCK_JOB_COMPLETED: only that end, without an error, counts as a copy (docs/qemu-colo.md, "Protect a
    running primary"). QEMU refuses a target of another virtual size (the job ends with "Source and target image
    have different sizes").
    No time limit bounds a copy that progresses; it is given up when the bytes copied (the job's offset) have
    not grown for stall_timeout seconds. progress(copied, total) is called at every poll of the job.
    Ends with the guest paused (so no write slips between the copy and the replication child) and no job
    left: attach() and a migrate must follow, or 'cont' to give up. Skipped when replication is already attached.
    """
    if replication_child(qmp, disk, node) is not None:
        return []
    done: list[str] = []
    with qmp.listen(JOB_ENDS) as ended:
        if _job(qmp, JOB) is None:
            qmp.execute(
                "drive-mirror",
                {
                    "device": disk,
                    "job-id": JOB,
                    # Options (json:), as a URI cannot carry tls-creds; the raw format is in them.
                    "target": "json:" + json.dumps({"driver": "raw", "file": {
                        **nbd_node(host, port, tls), "export": export, "node-name": RESYNC_NBD_NODE}}),
                    "mode": "existing",
                    "sync": "full",
                },
            )
            done.append(f"drive-mirror {disk} -> {nbd_uri(host, port, export, tls)}")
        _follow(qmp, ended, disk, stall_timeout, progress, until_ready=True)
        if qmp.execute("query-status")["running"]:
            qmp.execute("stop")
            done.append("stop")
        qmp.execute("block-job-cancel", {"device": JOB})  # a ready mirror copies what is left and completes
        done.append(f"block-job-cancel {JOB}")
        _follow(qmp, ended, disk, stall_timeout, progress, until_ready=False)
        end = _job_end(ended, JOB)
        if end is None or end["event"] != "BLOCK_JOB_COMPLETED" or end["data"].get("error"):
            raise ColoError(f"resync of {disk} did not complete: {_end_text(end)}")
    return done


def attach(qmp: QMPClient, host: str, port: int = NBD_PORT, tls: str | None = None) -> list[str]:
    """Add the replication child (mode primary, NBD to the secondary) to the quorum."""
    if replication_child(qmp) is not None:
        return []
    done: list[str] = []
    if not node_exists(qmp, NODE):
        qmp.execute("blockdev-add", replication_node(host, port, tls))
        done.append(f"blockdev-add {NODE} -> {nbd_uri(host, port, EXPORT, tls)}")
    qmp.execute("x-blockdev-change", {"parent": DISK, "node": NODE})
    done.append(f"x-blockdev-change {DISK} += {NODE}")
    return done


def detach(qmp: QMPClient, disk: str = DISK, node: str = NODE) -> list[str]:
    """Remove the replication child from the quorum and delete the node."""
    done: list[str] = []
    child = replication_child(qmp, disk, node)
    if child is not None:
        qmp.execute("x-blockdev-change", {"parent": disk, "child": child})
        done.append(f"x-blockdev-change {disk} -= {child}")
    if node_exists(qmp, node):
        try:
            qmp.execute("blockdev-del", {"node-name": node})
        except QMPError:
            # Added by HMP drive_add (older tooling): not monitor-owned for blockdev-del.
            out = qmp.hmp(f"drive_del {node}")
            if out.strip():
                raise ColoError(f"cannot delete block node {node}: {out.strip()}") from None
        done.append(f"blockdev-del {node}")
    return done


# -- plans -------------------------------------------------------------------------------------


def plan_resync(out: Plan, st: VMState, host: str, port: int, run: Action) -> None:
    """Full copy to the secondary by `run` (resync() or a wrapper of it), ending with the
    guest paused; nothing while the replication child is attached."""
    if st.child is not None:
        return
    texts = [] if any(j.get("device") == JOB for j in st.block_jobs) else [
        f"drive-mirror {DISK} -> {nbd_uri(host, port, EXPORT, tls_creds(st.objects, 'client'))}"]
    texts += ["stop"] if st.running else []
    out.add(run, *texts, f"block-job-cancel {JOB}")


def plan_attach(out: Plan, st: VMState, host: str, port: int) -> None:
    if st.child is not None:
        return
    tls = tls_creds(st.objects, "client")
    texts = [] if st.node_exists else [f"blockdev-add {NODE} -> {nbd_uri(host, port, EXPORT, tls)}"]
    out.add(lambda qmp: attach(qmp, host, port, tls), *texts, f"x-blockdev-change {DISK} += {NODE}")


def plan_export(out: Plan, st: VMState, host: str, port: int) -> None:
    if EXPORT not in st.exports:
        tls = tls_creds(st.objects, "server")
        out.add(lambda qmp: ensure_nbd_export(qmp, host, port, tls=tls),
                _server_text(host, port, tls), f"nbd-server-add {EXPORT} writable")


def plan_detach(out: Plan, st: VMState) -> None:
    texts = [f"x-blockdev-change {DISK} -= {st.child}"] if st.child is not None else []
    texts += [f"blockdev-del {NODE}"] if st.node_exists else []
    if texts:
        out.add(detach, *texts)


def plan(st: VMState, role: str | None, state: str, host: str | None, port: int,
         resync_disk: bool = True, stall_timeout: float = STALL_TIMEOUT, progress: Progress | None = None) -> Plan:
    """colo.ft.replication: exported/stopped on the secondary, attached/detached on the primary."""
    if state in ("exported", "stopped"):
        require_role(role, "secondary", f"state={state}")
    elif not st.has_quorum or st.is_secondary(role):
        what = "the COLO secondary" if st.is_secondary(role) else f"a {role} VM without a quorum disk"
        raise ColoError(f"state={state} runs on the primary; this VM is {what}")
    if state in ("exported", "attached") and not host:
        raise ColoError(f"state={state} needs the secondary's checkpoint-link address: set secondary_address")
    out = Plan()
    if state == "exported":
        plan_export(out, st, host, port)
    elif state == "stopped":
        # A server left without export is invisible to queries: stop_nbd runs anyway (shown only with exports).
        out.add(stop_nbd, *(["nbd-server-stop"] if st.exports else []))
    elif state == "attached":
        if resync_disk:
            plan_resync(out, st, host, port, lambda qmp: resync(qmp, host, port, stall_timeout=stall_timeout,
                                                                progress=progress, tls=tls_creds(st.objects, "client")))
        plan_attach(out, st, host, port)
    else:
        plan_detach(out, st)
    return out
