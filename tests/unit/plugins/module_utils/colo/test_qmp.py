"""QMPClient against a scripted fake QEMU on a unix socket (no QEMU needed)."""
from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import (
    QMPConnectionError,
    QMPError,
    QMPTimeout,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient

GREETING = {"QMP": {"version": {"qemu": {"micro": 3, "minor": 1, "major": 11},
                                "package": "Debian 1:11.1.3+ds-1~bpo13+1"}, "capabilities": ["oob"]}}


def ev(name, sec=1795833359, usec=240439, **data):
    e = {"timestamp": {"seconds": sec, "microseconds": usec}, "event": name}
    if data:
        e["data"] = data
    return e


class FakeQemu:
    """Answers commands via handler(cmd, args) -> list of messages to send (None: say nothing)."""

    def __init__(self, handler, greet=True):
        self.dir = tempfile.mkdtemp(prefix="fakeqmp")
        self.path = os.path.join(self.dir, "qmp.sock")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.handler = handler
        self.greet = greet
        self.received: list[dict] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _addr = self.srv.accept()
        with conn:
            if self.greet:
                conn.sendall(json.dumps(GREETING).encode() + b"\r\n")
            f = conn.makefile("rb")
            for line in f:
                msg = json.loads(line)
                self.received.append(msg)
                if msg["execute"] == "qmp_capabilities":
                    out = [{"return": {}, "id": msg.get("id")}]
                else:
                    out = self.handler(msg["execute"], msg.get("arguments"), msg.get("id"))
                if out == "close":
                    return
                for m in out or []:
                    if isinstance(m, (int, float)):
                        time.sleep(m)
                        continue
                    conn.sendall(json.dumps(m).encode() + b"\r\n")

    def close(self):
        self.srv.close()
        for f in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, f))
        os.rmdir(self.dir)


@pytest.fixture
def fake(request):
    servers = []

    def make(handler, **kw):
        s = FakeQemu(handler, **kw)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def test_connect_version_and_capabilities(fake):
    srv = fake(lambda c, a, i: [{"return": {"name": "vm1"}, "id": i}])
    with QMPClient(srv.path, timeout=2) as qmp:
        assert qmp.version == (11, 1, 3)
        assert qmp.package.startswith("Debian")
        assert qmp.greeting == GREETING
        assert qmp.execute("query-name") == {"name": "vm1"}
    assert srv.received[0]["execute"] == "qmp_capabilities"
    assert srv.received[1]["execute"] == "query-name" and "arguments" not in srv.received[1]


def test_events_read_while_waiting_for_reply_keep_timestamp(fake):
    srv = fake(lambda c, a, i: [ev("STOP", usec=1), ev("RESUME", usec=2), {"return": {}, "id": i}])
    with QMPClient(srv.path, timeout=2) as qmp, qmp.listen() as listener:
        assert qmp.execute("stop") == {}
        assert [e["event"] for e in listener.events] == ["STOP", "RESUME"]
        assert listener.events[0]["timestamp"] == {"seconds": 1795833359, "microseconds": 1}
        assert QMPClient.event_time(listener.events[1]) == pytest.approx(1795833359.000002)
        assert listener.wait("RESUME", timeout=0.1)["event"] == "RESUME"
        assert listener.get(timeout=0.1)["event"] == "STOP"   # wait() left STOP unread
        assert [e["event"] for e in listener.events] == ["STOP", "RESUME"]   # handed out, still listed


def test_wait_event_reads_socket_and_predicate(fake):
    srv = fake(lambda c, a, i: [{"return": {}, "id": i}, 0.05,
                                ev("BLOCK_JOB_READY", device="other"), ev("BLOCK_JOB_READY", device="resync")])
    with QMPClient(srv.path, timeout=2) as qmp, qmp.listen(("BLOCK_JOB_READY",)) as listener:
        qmp.execute("drive-mirror", {"device": "colo-disk0"})
        e = listener.wait("BLOCK_JOB_READY", 2, predicate=lambda e: e["data"]["device"] == "resync")
        assert e["data"]["device"] == "resync"
        assert listener.get(0.1)["data"]["device"] == "other"


def test_wait_event_timeout(fake):
    srv = fake(lambda c, a, i: [{"return": {}, "id": i}])
    with QMPClient(srv.path, timeout=2) as qmp, qmp.listen(("RESUME",)) as listener:
        t = time.monotonic()
        with pytest.raises(QMPTimeout, match="event RESUME") as exc:
            listener.wait("RESUME", 0.2)
        assert 0.15 < time.monotonic() - t < 1.0
        assert exc.value.command is None
        with pytest.raises(QMPTimeout, match="an event"):
            listener.get(0.1)


def test_listener_sees_only_its_names_while_open(fake):
    def handler(cmd, args, i):
        return [ev(cmd.upper(), usec=len(srv.received)), {"return": {}, "id": i}]
    srv = fake(handler)
    with QMPClient(srv.path, timeout=2) as qmp:
        qmp.execute("stop")                        # before: nobody listens
        with qmp.listen(("STOP", "RESUME")) as listener:
            qmp.execute("stop")
            qmp.execute("shutdown")                # not a name listened to
            qmp.execute("resume")
        qmp.execute("stop")                        # after the block: not seen
        assert [(e["event"], e["timestamp"]["microseconds"]) for e in listener.events] == [("STOP", 3), ("RESUME", 5)]


def test_two_listeners_at_once(fake):
    srv = fake(lambda c, a, i: [ev("STOP"), ev("BLOCK_JOB_READY", device="resync"), ev("RESUME"),
                                {"return": {}, "id": i}])
    with QMPClient(srv.path, timeout=2) as qmp:
        with qmp.listen(("STOP", "RESUME")) as pauses, qmp.listen(("BLOCK_JOB_READY",)) as jobs:
            with qmp.listen() as everything:
                qmp.execute("stop")
            qmp.execute("stop")
            assert [e["event"] for e in pauses.events] == ["STOP", "RESUME"] * 2
            assert [e["data"]["device"] for e in jobs.events] == ["resync"] * 2
            assert len(everything.events) == 3
            # Handing out from one listener leaves the other's events alone.
            assert pauses.wait("RESUME", 0.1) and pauses.get(0.1)["event"] == "STOP"
            assert jobs.get(0.1)["event"] == "BLOCK_JOB_READY"


def test_events_arriving_during_a_command_and_drain(fake):
    def handler(cmd, args, i):
        if cmd == "migrate":   # an event before the answer, then more while nobody asks anything
            return [ev("STOP", usec=1), {"return": {}, "id": i}, 0.05, ev("RESUME", usec=2), ev("STOP", usec=3)]
        return [{"return": {}, "id": i}]
    srv = fake(handler)
    with QMPClient(srv.path, timeout=2) as qmp:
        with qmp.listen(("STOP", "RESUME")) as listener:
            qmp.execute("migrate", {"uri": "tcp:10.0.0.2:9998"})
            assert [e["event"] for e in listener.events] == ["STOP"]
            assert [e["timestamp"]["microseconds"] for e in listener.drain(0.5)] == [1, 2, 3]
        assert listener.events == listener.drain()   # closed: takes nothing more


def test_take_hands_out_each_new_event_once_also_past_the_history_bound(fake):
    """The agent's listener stays open for days (a RESUME at every checkpoint): `events` keeps the newest
    max_events, take() still hands out every new one."""
    srv = fake(lambda c, a, i: [ev("RESUME", usec=len(srv.received)), {"return": {}, "id": i}])
    with QMPClient(srv.path, timeout=2, max_events=2) as qmp, qmp.listen(("RESUME",)) as listener:
        for _cont in range(3):
            qmp.execute("cont")
        assert [e["timestamp"]["microseconds"] for e in listener.take()] == [3, 4]  # the bound dropped the first
        assert listener.take() == []
        qmp.execute("cont")
        assert [e["timestamp"]["microseconds"] for e in listener.take(0.05)] == [5]
        assert len(listener.events) == 2


def test_listener_returns_what_it_has_after_the_connection_closed(fake):
    srv = fake(lambda c, a, i: [ev("SHUTDOWN"), {"return": {}, "id": i}] if c == "quit" else "close")
    with QMPClient(srv.path, timeout=2) as qmp, qmp.listen() as listener:
        qmp.execute("quit")
        with pytest.raises(QMPConnectionError, match="closed"):
            qmp.execute("query-status")
        assert listener.wait("SHUTDOWN", 1)["event"] == "SHUTDOWN"
        with pytest.raises(QMPConnectionError, match="not connected"):
            listener.wait("NEVER", 1)


def test_error_reply(fake):
    srv = fake(lambda c, a, i: [{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"},
                                 "id": i}])
    with QMPClient(srv.path, timeout=2) as qmp:
        with pytest.raises(QMPError) as exc:
            qmp.execute("nope")
    assert exc.value.error_class == "CommandNotFound"
    assert exc.value.command == "nope"
    assert exc.value.desc == "The command nope has not been found"
    assert "nope" in str(exc.value) and "CommandNotFound" in str(exc.value)
    assert exc.value.arguments is None


def test_error_keeps_what_was_sent(fake):
    srv = fake(lambda c, a, i: [{"error": {"class": "GenericError", "desc": "Failed to connect"}, "id": i}])
    args = {"uri": "tcp:10.0.0.2:9998"}
    with QMPClient(srv.path, timeout=2) as qmp:
        with pytest.raises(QMPError) as exc:
            qmp.execute("migrate", args)
    assert (exc.value.command, exc.value.arguments) == ("migrate", args)
    assert (exc.value.error_class, exc.value.desc) == ("GenericError", "Failed to connect")
    assert str(exc.value) == "migrate {'uri': 'tcp:10.0.0.2:9998'}: Failed to connect (GenericError)"


def test_command_timeout_then_late_reply_is_discarded(fake):
    def handler(cmd, args, i):
        if cmd == "slow":
            return [0.4, {"return": "late", "id": i}]
        return [{"return": "fast", "id": i}]
    srv = fake(handler)
    with QMPClient(srv.path, timeout=2) as qmp:
        with pytest.raises(QMPTimeout, match="^slow {'n': 1}: got no answer") as exc:
            qmp.execute("slow", {"n": 1}, timeout=0.1)
        assert (exc.value.command, exc.value.arguments) == ("slow", {"n": 1})
        assert qmp.execute("fast") == "fast"   # the late "slow" answer is skipped by id


def test_hmp(fake):
    srv = fake(lambda c, a, i: [{"return": f"ran {a['command-line']}\r\n", "id": i}])
    with QMPClient(srv.path, timeout=2) as qmp:
        assert qmp.hmp("info status") == "ran info status\r\n"
    assert srv.received[-1]["execute"] == "human-monitor-command"


def test_connection_closed_during_command(fake):
    srv = fake(lambda c, a, i: "close")
    with QMPClient(srv.path, timeout=2) as qmp:
        with pytest.raises(QMPConnectionError, match="closed"):
            qmp.execute("quit")
        assert not qmp.connected


def test_no_greeting_times_out_with_hint(fake):
    srv = fake(lambda c, a, i: [], greet=False)
    with pytest.raises(QMPTimeout, match="one QMP client at a time"):
        QMPClient(srv.path, timeout=0.2).connect()


def test_missing_and_stale_socket(tmp_path):
    with pytest.raises(QMPConnectionError, match="does not exist"):
        QMPClient(str(tmp_path / "none.sock")).connect()
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens
    with pytest.raises(QMPConnectionError, match="refuses connections"):
        QMPClient(str(stale)).connect()


def test_event_buffer_is_bounded(fake):
    srv = fake(lambda c, a, i: [ev("STOP", usec=n) for n in range(50)] + [{"return": {}, "id": i}])
    with QMPClient(srv.path, timeout=2, max_events=10) as qmp, qmp.listen(("STOP",)) as listener:
        qmp.execute("stop")
        kept = listener.events
        assert len(kept) == 10 and kept[0]["timestamp"]["microseconds"] == 40
        assert listener.get(0.1)["timestamp"]["microseconds"] == 40
