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
    with QMPClient(srv.path, timeout=2) as qmp:
        assert qmp.execute("stop") == {}
        assert [e["event"] for e in qmp.events()] == ["STOP", "RESUME"]
        assert qmp.events("STOP")[0]["timestamp"] == {"seconds": 1795833359, "microseconds": 1}
        assert QMPClient.event_time(qmp.events("RESUME")[0]) == pytest.approx(1795833359.000002)
        assert qmp.wait_event("RESUME", timeout=0.1)["event"] == "RESUME"
        assert [e["event"] for e in qmp.events()] == ["STOP"]   # wait_event consumed RESUME
        assert qmp.events("STOP", clear=True) and qmp.events() == []


def test_wait_event_reads_socket_and_predicate(fake):
    srv = fake(lambda c, a, i: [{"return": {}, "id": i}, 0.05,
                                ev("BLOCK_JOB_READY", device="other"), ev("BLOCK_JOB_READY", device="resync")])
    with QMPClient(srv.path, timeout=2) as qmp:
        qmp.execute("drive-mirror", {"device": "colo-disk0"})
        e = qmp.wait_event("BLOCK_JOB_READY", 2, predicate=lambda e: e["data"]["device"] == "resync")
        assert e["data"]["device"] == "resync"
        assert qmp.events("BLOCK_JOB_READY")[0]["data"]["device"] == "other"


def test_wait_event_timeout(fake):
    srv = fake(lambda c, a, i: [{"return": {}, "id": i}])
    with QMPClient(srv.path, timeout=2) as qmp:
        t = time.monotonic()
        with pytest.raises(QMPTimeout, match="event RESUME"):
            qmp.wait_event("RESUME", 0.2)
        assert 0.15 < time.monotonic() - t < 1.0


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


def test_command_timeout_then_late_reply_is_discarded(fake):
    def handler(cmd, args, i):
        if cmd == "slow":
            return [0.4, {"return": "late", "id": i}]
        return [{"return": "fast", "id": i}]
    srv = fake(handler)
    with QMPClient(srv.path, timeout=2) as qmp:
        with pytest.raises(QMPTimeout, match="'slow' got no answer"):
            qmp.execute("slow", timeout=0.1)
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
    with QMPClient(srv.path, timeout=2, max_events=10) as qmp:
        qmp.execute("stop")
        kept = qmp.events()
        assert len(kept) == 10 and kept[0]["timestamp"]["microseconds"] == 40
