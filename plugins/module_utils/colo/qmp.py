"""A small synchronous QMP client (QEMU Machine Protocol over a unix socket).

Single-threaded on purpose: every read goes through one select() loop with a
deadline, so events that arrive while we wait for a reply are kept (with the
timestamp QEMU put on them) instead of being lost or needing a reader thread.

QEMU serves one client at a time per QMP socket: a second client connects but
gets no greeting until the first one disconnects. Keep connections short.
"""
from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import (
    ColoError,
    QMPConnectionError,
    QMPError,
    QMPTimeout,
)

EventPredicate = Callable[[dict[str, Any]], bool]

# Guard against a peer that never sends a newline (not QEMU, or a bug).
_MAX_LINE = 64 * 1024 * 1024


class QMPClient:
    """QMP client: connect(), execute(), hmp(), events(), wait_event().

    Usable as a context manager (connects on enter, closes on exit).
    """

    def __init__(self, path: str, timeout: float = 10.0, max_events: int = 10000):
        self.path = path
        self.timeout = timeout
        # COLO emits STOP/RESUME at every checkpoint: bound the buffer of a
        # long-lived connection (oldest events are dropped first).
        self.max_events = max_events
        self.greeting: dict[str, Any] = {}
        self.version: tuple[int, int, int] = (0, 0, 0)
        self.package: str = ""
        self._sock: socket.socket | None = None
        self._buf = b""
        self._events: list[dict[str, Any]] = []
        self._next_id = 0

    # -- connection ---------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        """Open the socket, read the greeting, negotiate capabilities.

        Returns the greeting ({"QMP": {"version": ..., "capabilities": [...]}}).
        """
        if self._sock is not None:
            return self.greeting
        deadline = time.monotonic() + self.timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except FileNotFoundError:
            sock.close()
            raise QMPConnectionError(f"QMP socket {self.path} does not exist (is the VM running?)") from None
        except ConnectionRefusedError:
            sock.close()
            raise QMPConnectionError(
                f"QMP socket {self.path} refuses connections (QEMU is not running; the socket is stale)"
            ) from None
        except OSError as exc:
            sock.close()
            raise QMPConnectionError(f"cannot connect to QMP socket {self.path}: {exc}") from None
        sock.setblocking(False)
        self._sock = sock
        self._buf = b""
        try:
            greeting = self._read_message(deadline, waiting_for="the QMP greeting")
            while "QMP" not in greeting:  # an event cannot precede the greeting, but be lenient
                greeting = self._read_message(deadline, waiting_for="the QMP greeting")
        except QMPTimeout:
            self.close()
            raise QMPTimeout(
                f"no QMP greeting on {self.path} within {self.timeout:g}s "
                "(QEMU is busy, or another client holds the socket: QEMU serves one QMP client at a time)"
            ) from None
        except QMPConnectionError:
            self.close()
            raise
        self.greeting = greeting
        ver = greeting["QMP"].get("version", {})
        q = ver.get("qemu", {})
        self.version = (int(q.get("major", 0)), int(q.get("minor", 0)), int(q.get("micro", 0)))
        self.package = str(ver.get("package", "")).strip()
        try:
            self._command("qmp_capabilities", None, deadline)
        except ColoError:
            self.close()
            raise
        return greeting

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buf = b""

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def __enter__(self) -> QMPClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- commands -----------------------------------------------------------

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Run one QMP command and return its "return" value.

        Raises QMPError if QEMU answers with an error, QMPTimeout if it does
        not answer in time (the late answer is discarded when it comes),
        QMPConnectionError if the socket is closed.
        """
        if self._sock is None:
            self.connect()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return self._command(command, arguments, deadline)

    def hmp(self, command_line: str, timeout: float | None = None) -> str:
        """Run a human monitor command; returns its text output.

        HMP reports most errors as text, not as a QMP error: check the output.
        """
        return self.execute("human-monitor-command", {"command-line": command_line}, timeout=timeout)

    # -- events -------------------------------------------------------------

    def events(self, name: str | None = None, clear: bool = False) -> list[dict[str, Any]]:
        """Events received so far (including any waiting unread on the socket).

        Each event is QEMU's dict: {"event": NAME, "data": {...},
        "timestamp": {"seconds": S, "microseconds": US}}. With clear=True the
        returned events are removed from the buffer.
        """
        self._drain()
        found = [e for e in self._events if name is None or e.get("event") == name]
        if clear:
            if name is None:
                self._events.clear()
            else:
                self._events = [e for e in self._events if e.get("event") != name]
        return found

    def wait_event(self, name: str, timeout: float, predicate: EventPredicate | None = None) -> dict[str, Any]:
        """Return (and remove from the buffer) the oldest event NAME matching predicate.

        Already-buffered events count: call events(clear=True) before the
        action whose event you want, if older ones may be around.
        """
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("event") == name and (predicate is None or predicate(ev)):
                    return self._events.pop(i)
            if self._sock is None:
                raise QMPConnectionError(f"not connected to {self.path} while waiting for event {name}")
            msg = self._read_message(deadline, waiting_for=f"event {name}")
            self._dispatch(msg)

    @staticmethod
    def event_time(event: dict[str, Any]) -> float:
        """QEMU's timestamp of an event as UNIX seconds (float)."""
        ts = event.get("timestamp", {})
        return float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6

    # -- internals ----------------------------------------------------------

    def _command(self, command: str, arguments: dict[str, Any] | None, deadline: float) -> Any:
        self._next_id += 1
        cmd_id = f"colo-{self._next_id}"
        msg: dict[str, Any] = {"execute": command, "id": cmd_id}
        if arguments:
            msg["arguments"] = arguments
        self._send(msg, deadline)
        while True:
            try:
                reply = self._read_message(deadline, waiting_for=f"the answer to {command!r}")
            except QMPTimeout:
                raise QMPTimeout(f"QMP command {command!r} got no answer in time on {self.path}") from None
            except QMPConnectionError as exc:
                raise QMPConnectionError(f"QMP command {command!r}: {exc}") from None
            if "event" in reply:
                self._keep(reply)
                continue
            if reply.get("id") != cmd_id:
                continue  # late answer to an earlier command that timed out
            if "error" in reply:
                err = reply["error"]
                raise QMPError(command, str(err.get("class", "GenericError")), str(err.get("desc", "")))
            return reply.get("return")

    def _send(self, msg: dict[str, Any], deadline: float) -> None:
        if self._sock is None:
            raise QMPConnectionError(f"not connected to {self.path}")
        data = json.dumps(msg).encode() + b"\n"
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPTimeout(f"could not send to QMP socket {self.path} in time")
            _rlist, writable, _xlist = select.select([], [self._sock], [], remaining)
            if not writable:
                continue
            try:
                sent = self._sock.send(data)
            except BlockingIOError:
                continue
            except OSError as exc:
                self.close()
                raise QMPConnectionError(f"QEMU closed the QMP socket {self.path} ({exc})") from None
            data = data[sent:]

    def _dispatch(self, msg: dict[str, Any]) -> None:
        # Outside a command, only events matter; stray answers are dropped.
        if "event" in msg:
            self._keep(msg)

    def _keep(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if len(self._events) > self.max_events:
            del self._events[: len(self._events) - self.max_events]

    def _drain(self) -> None:
        """Read whatever is already on the socket, without waiting."""
        if self._sock is None:
            return
        while True:
            msg = self._pop_line()
            if msg is not None:
                self._dispatch(msg)
                continue
            readable, _wlist, _xlist = select.select([self._sock], [], [], 0)
            if not readable or not self._recv():
                return

    def _read_message(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        while True:
            msg = self._pop_line()
            if msg is not None:
                return msg
            if self._sock is None:
                raise QMPConnectionError(f"not connected to {self.path}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPTimeout(f"timed out waiting for {waiting_for} on {self.path}")
            readable, _wlist, _xlist = select.select([self._sock], [], [], remaining)
            if readable and not self._recv():
                self.close()
                raise QMPConnectionError(f"QEMU closed the QMP socket {self.path}")

    def _recv(self) -> bool:
        """Append available bytes to the buffer; False on EOF."""
        if self._sock is None:
            return False
        try:
            chunk = self._sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        self._buf += chunk
        if len(self._buf) > _MAX_LINE and b"\n" not in self._buf:
            self.close()
            raise QMPConnectionError(f"unparseable data on QMP socket {self.path} (no message end)")
        return True

    def _pop_line(self) -> dict[str, Any] | None:
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                raise QMPConnectionError(f"QEMU sent something that is not JSON on {self.path}: {line[:200]!r}") from None
            if isinstance(msg, dict):
                return msg
        return None
