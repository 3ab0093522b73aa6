"""Why a COLO primary checkpoints: QEMU's colo-compare trace events, read back from its log for a window.

A checkpoint starts on the timer (x-checkpoint-delay) or when colo-compare asks for one: the two guests sent
packets that differ (TCP payload or ACK; UDP, ICMP or other IP packets), or a packet waited longer than
compare_timeout for its twin. Compare asks again for every packet until the checkpoint flushes its queues, so a
checkpoint counts for the first request since the previous checkpoint began; one with no request before it came
from the timer. QEMU traces a TCP difference only by its absence: a payload comparison (colo_compare_ip_info)
that no match (colo_compare_tcp_info) follows.

QEMU writes trace events to its stderr (the VM's qemu.log, "-msg timestamp=on") when it was built with the log
trace backend (Debian's is); the events are switched on with QMP trace-event-set-state for the window only.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient

TRACE_EVENTS = ("colo_vm_state_change", "colo_compare_main", "colo_compare_ip_info", "colo_compare_tcp_info",
                "colo_old_packet_check_found", "colo_compare_drop_packet")
CAUSES = ("periodic", "tcp", "udp", "icmp", "other", "compare_timeout")
# Longest log read back per window: the trace of a busy guest is a few MB per 10 s.
MAX_READ = 256 * 1024 * 1024

# "2026-12-03T22:20:24.621047Z colo_compare_main : ..." (QEMU 11), "4242@1796336067.770804:colo_..." (older)
_SIZE = re.compile(r"ppkt size = (\d+)")
_LINE = re.compile(r"^(?:\S+Z\s+|\d+@[\d.]+:)?(?P<event>colo_\w+)\s?(?P<args>.*)$")


def events(lines: Iterable[str]) -> list[tuple[str, str]]:
    """(event, arguments) of each trace line of the log backend; other lines (QEMU's messages) left out."""
    out = []
    for line in lines:
        found = _LINE.match(line.strip())
        if found and found["event"] in TRACE_EVENTS:
            out.append((found["event"], found["args"].lstrip(": ").strip()))
    return out


def attribute(traced: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """checkpoints: the checkpoints by cause (CAUSES); differing_frames: every difference compare found, by
    protocol and frame size of the primary's packet ("tcp 270"); dropped_packets: dropped on a full queue."""
    checkpoints = dict.fromkeys(CAUSES, 0)
    differing: dict[str, int] = {}
    dropped = 0
    first: str | None = None     # the first request since the last checkpoint began
    protocol: str | None = None  # udp, icmp or other while compare looks for a packet's twin; None for TCP
    size: str | None = None      # frame size of the primary's packet last compared
    tcp_open = False             # a TCP payload comparison with no match traced yet

    def differs(cause: str) -> None:
        nonlocal first
        first = first or cause
        key = f"{cause} {size}" if size else cause
        differing[key] = differing.get(key, 0) + 1

    for event, args in traced:
        if event == "colo_compare_ip_info":
            found = _SIZE.search(args)
            size = found[1] if found else None
            tcp_open = tcp_open or protocol is None
            continue
        if event == "colo_compare_tcp_info":
            tcp_open = False
            continue
        if tcp_open:
            differs("tcp")
            tcp_open = False
        if event == "colo_compare_main":
            if args.startswith("compare "):
                protocol, size = args.split()[1], None
            elif args == "packet different":
                differs(protocol or "other")
                protocol = None
            elif args == "packet same and release packet":
                protocol = None
        elif event == "colo_old_packet_check_found":
            first = first or "compare_timeout"
        elif event == "colo_compare_drop_packet":
            dropped += 1
        elif event == "colo_vm_state_change" and args == "Change 'run' => 'stop'":
            checkpoints[first or "periodic"] += 1
            first = None
    return {"checkpoints": checkpoints, "differing_frames": dict(sorted(differing.items())),
            "dropped_packets": dropped}


class Tracing:
    """Switches the trace events on for a `with` block and attributes the checkpoints made meanwhile.

    Events an operator had switched on stay on; the log is read from where it ended when the block began."""

    def __init__(self, qmp: QMPClient, log_path: str):
        self.qmp, self.log_path = qmp, log_path
        self.started_at = 0
        self.switched: list[str] = []
        self.causes: dict[str, Any] | None = None

    def __enter__(self) -> Tracing:
        states = {e["name"]: e["state"] for e in self.qmp.execute("trace-event-get-state", {"name": "colo_*"})}
        missing = [name for name in TRACE_EVENTS if name not in states]
        if missing:
            raise ColoError(f"this QEMU has no trace events {', '.join(missing)}: checkpoint causes need them")
        self.started_at = os.path.getsize(self.log_path)
        for name in TRACE_EVENTS:
            if states[name] != "enabled":
                self.qmp.execute("trace-event-set-state", {"name": name, "enable": True})
                self.switched.append(name)
        return self

    def __exit__(self, exc_type: Any, *_exc: Any) -> None:
        try:
            for name in self.switched:
                self.qmp.execute("trace-event-set-state", {"name": name, "enable": False})
        except ColoError:
            if exc_type is None:
                raise
        if exc_type is not None:
            return  # the sample failed: its error matters, not the causes
        with open(self.log_path, "rb") as log:
            log.seek(self.started_at)
            text = log.read(MAX_READ).decode("utf-8", "replace")
        self.causes = attribute(events(text.splitlines()))
