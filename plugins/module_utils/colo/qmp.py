"""A small synchronous QMP client (QEMU Machine Protocol over a unix socket).

Single-threaded on purpose: every read goes through one select() loop with a
deadline, so events that arrive while we wait for a reply are kept (with the
timestamp QEMU put on them) instead of being lost or needing a reader thread.

Events are kept only for the listeners open when they arrive, as in QEMU's
python/qemu/qmp: open one on the names you want before the action that
causes them, and read them from it:

    with client.listen(("STOP", "RESUME")) as listener:
        client.execute("stop")
        listener.wait("STOP", timeout=5)
    listener.events   # every STOP/RESUME that came while the block was open

QEMU serves one client at a time per QMP socket: a second client connects but
gets no greeting until the first one disconnects. Keep connections short.
"""
from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterable
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import (
    ColoError,
    QMPConnectionError,
    QMPError,
    QMPTimeout,
    sent,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp_events import EventListener

# Guard against a peer that never sends a newline (not QEMU, or a bug).
_MAX_LINE = 64 * 1024 * 1024


class QMPClient:
    """QMP client: connect(), execute(), hmp(), listen().

    Usable as a context manager (connects on enter, closes on exit).
    """

    def __init__(self, path: str, timeout: float = 10.0, max_events: int = 10000, oob: bool = False):
        self.path = path
        self.timeout = timeout
        self.max_events = max_events  # bound of each listener (oldest events are dropped first)
        self.greeting: dict[str, Any] = {}
        self.version: tuple[int, int, int] = (0, 0, 0)
        self.package: str = ""
        self._sock: socket.socket | None = None
        self._buf = b""
        self._listeners: list[EventListener] = []
        self._next_id = 0
        self.want_oob = oob  # negotiate out-of-band execution (execute_oob) if QEMU offers it
        self.oob = False

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
        self.oob = self.want_oob and "oob" in greeting["QMP"].get("capabilities", [])
        try:
            self._command("qmp_capabilities", {"enable": ["oob"]} if self.oob else None, deadline)
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

    def execute_oob(self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Run a command that QEMU allows out of band (e.g. yank): it runs in the monitor's own
        thread, so it is answered while the main loop is blocked (on a dead peer's NBD, say).
        Needs a client made with oob=True on a QEMU that offers it (self.oob)."""
        if self._sock is None:
            self.connect()
        if not self.oob:
            raise ColoError(f"{command} out of band: this QMP connection has no OOB (QEMU did not offer it, "
                            "or the client was not made with oob=True)")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return self._command(command, arguments, deadline, key="exec-oob")

    def hmp(self, command_line: str, timeout: float | None = None) -> str:
        """Run a human monitor command; returns its text output.

        HMP reports most errors as text, not as a QMP error: check the output.
        """
        return self.execute("human-monitor-command", {"command-line": command_line}, timeout=timeout)

    # -- events -------------------------------------------------------------

    def listen(self, names: Iterable[str] | None = None) -> EventListener:
        """A listener for the events named (None: all), open from now on.

        Use it as `with client.listen(("STOP", "RESUME")) as listener:` so it
        closes at the end of the block; events that come while no listener
        wants them are dropped.
        """
        listener = EventListener(self, names, self.max_events)
        self._listeners.append(listener)
        return listener

    @staticmethod
    def event_time(event: dict[str, Any]) -> float:
        """QEMU's timestamp of an event as UNIX seconds (float)."""
        ts = event.get("timestamp", {})
        return float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6

    # -- internals ----------------------------------------------------------

    def _command(self, command: str, arguments: dict[str, Any] | None, deadline: float,
                 key: str = "execute") -> Any:
        self._next_id += 1
        cmd_id = f"colo-{self._next_id}"
        msg: dict[str, Any] = {key: command, "id": cmd_id}
        if arguments:
            msg["arguments"] = arguments
        self._send(msg, deadline)
        while True:
            try:
                reply = self._read_message(deadline, waiting_for=f"the answer to {command!r}")
            except QMPTimeout:
                raise QMPTimeout(f"got no answer in time on {self.path}", command, arguments) from None
            except QMPConnectionError as exc:
                raise QMPConnectionError(f"{sent(command, arguments)}: {exc}") from None
            if "event" in reply:
                self._dispatch(reply)
                continue
            if reply.get("id") != cmd_id:
                continue  # late answer to an earlier command that timed out
            if "error" in reply:
                err = reply["error"]
                raise QMPError(command, str(err.get("class", "GenericError")), str(err.get("desc", "")), arguments)
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
            for listener in list(self._listeners):
                listener.accept(msg)

    def _read_event(self, deadline: float, waiting_for: str) -> None:
        """Read one message and hand it to the listeners (a listener waits)."""
        if self._sock is None:
            raise QMPConnectionError(f"not connected to {self.path} while waiting for {waiting_for}")
        self._dispatch(self._read_message(deadline, waiting_for))

    def _drain(self, seconds: float = 0.0) -> None:
        """Hand what arrives within `seconds` to the listeners (0: what is already there)."""
        deadline = time.monotonic() + seconds
        while self._sock is not None:
            msg = self._pop_line()
            if msg is not None:
                self._dispatch(msg)
                continue
            remaining = max(0.0, deadline - time.monotonic())
            readable, _wlist, _xlist = select.select([self._sock], [], [], remaining)
            if not readable:
                return
            if not self._recv():
                self.close()
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
