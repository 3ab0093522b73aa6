"""QMPClient against a real QEMU >= 11: commands, errors, events, timeouts."""
from __future__ import annotations

import statistics
import time

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import (
    ColoError,
    QMPConnectionError,
    QMPError,
    QMPTimeout,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient


@pytest.fixture
def vm(make_spec, launcher):
    spec = make_spec(name="qmpvm")
    launcher.start(spec, "plain")
    return spec


def test_connect_and_version(vm):
    with QMPClient(vm.qmp_path, timeout=5) as qmp:
        assert qmp.version >= (11, 0, 0)
        assert "oob" in qmp.greeting["QMP"]["capabilities"]
        assert qmp.execute("query-name") == {"name": "qmpvm"}
        assert qmp.execute("query-status")["status"] == "running"
        ver = qmp.execute("query-version")
        assert (ver["qemu"]["major"], ver["qemu"]["minor"], ver["qemu"]["micro"]) == qmp.version


def test_oob_yank_is_answered_and_refused_without_oob(vm):
    with QMPClient(vm.qmp_path, timeout=5, oob=True) as qmp:
        assert qmp.oob
        instances = qmp.execute("query-yank")
        with pytest.raises(QMPError) as exc:  # a stream that does not exist: QEMU says so, out of band too
            qmp.execute_oob("yank", {"instances": [{"type": "block-node", "node-name": "no-such-node"}]})
        assert "not found" in exc.value.desc.lower()
        assert qmp.execute("query-yank") == instances  # in-band commands still answer in order
    with QMPClient(vm.qmp_path, timeout=5) as qmp:
        with pytest.raises(ColoError, match="no OOB"):
            qmp.execute_oob("yank", {"instances": []})


def test_error_classes(vm):
    with QMPClient(vm.qmp_path, timeout=5) as qmp:
        with pytest.raises(QMPError) as exc:
            qmp.execute("no-such-command")
        assert exc.value.error_class == "CommandNotFound"
        with pytest.raises(QMPError) as exc:
            qmp.execute("object-del", {"id": "no-such-object"})
        assert exc.value.error_class == "GenericError" and "no-such-object" in exc.value.desc
        with pytest.raises(QMPError) as exc:
            qmp.execute("query-status", {"bogus": 1})
        assert exc.value.error_class == "GenericError"
        assert qmp.execute("query-status")["running"]   # the connection survives errors


def test_stop_cont_events(vm):
    with QMPClient(vm.qmp_path, timeout=5) as qmp, qmp.listen(("STOP", "RESUME")) as listener:
        before = time.time()
        qmp.execute("stop")
        stop = listener.wait("STOP", timeout=5)
        assert qmp.execute("query-status")["status"] == "paused"
        qmp.execute("cont")
        resume = listener.wait("RESUME", timeout=5)
        assert qmp.execute("query-status")["status"] == "running"
        # QEMU's own timestamps are kept, in order, and close to now.
        assert before - 5 < QMPClient.event_time(stop) <= QMPClient.event_time(resume) < time.time() + 5


def test_events_seen_while_executing(vm):
    with QMPClient(vm.qmp_path, timeout=5) as qmp, qmp.listen() as listener:
        qmp.execute("stop")
        qmp.execute("cont")  # STOP arrived while waiting for these answers
        names = [e["event"] for e in listener.drain()]
        assert names[:2] == ["STOP", "RESUME"]


def test_wait_event_timeout(vm):
    with QMPClient(vm.qmp_path, timeout=5) as qmp:
        t = time.monotonic()
        with pytest.raises(QMPTimeout), qmp.listen(("SHUTDOWN",)) as listener:
            listener.wait("SHUTDOWN", timeout=0.3)
        assert time.monotonic() - t < 2


def test_second_client_waits_for_greeting(vm):
    with QMPClient(vm.qmp_path, timeout=5):
        with pytest.raises(QMPTimeout, match="one QMP client at a time"):
            QMPClient(vm.qmp_path, timeout=0.5).connect()
    with QMPClient(vm.qmp_path, timeout=5) as qmp:   # free again
        assert qmp.execute("query-name")["name"] == "qmpvm"


def test_hmp(vm):
    with QMPClient(vm.qmp_path, timeout=5) as qmp:
        assert "running" in qmp.hmp("info status")


def test_quit_closes(vm):
    with QMPClient(vm.qmp_path, timeout=5) as qmp, qmp.listen() as listener:
        try:
            qmp.execute("quit")
        except QMPConnectionError:
            pass
        listener.wait("SHUTDOWN", timeout=5)
        with pytest.raises(QMPConnectionError):
            listener.wait("NEVER", timeout=5)


def test_command_timings(vm, capsys):
    """Not a pass/fail figure: prints per-command latency for the report."""
    cmds = ["query-status", "query-name", "query-version", "query-migrate", "query-colo-status",
            "qom-list-types", "query-qmp-schema"]
    with QMPClient(vm.qmp_path, timeout=10) as qmp:
        res = {}
        for c in cmds:
            samples = []
            for _sample in range(20):
                t = time.perf_counter()
                qmp.execute(c)
                samples.append((time.perf_counter() - t) * 1000)
            res[c] = (statistics.median(samples), max(samples))
        t = time.perf_counter()
        with qmp.listen(("STOP", "RESUME")) as listener:
            qmp.execute("stop")
            listener.wait("STOP", 5)
            qmp.execute("cont")
            listener.wait("RESUME", 5)
        res["stop+cont with events"] = ((time.perf_counter() - t) * 1000,) * 2
    t = time.perf_counter()
    QMPClient(vm.qmp_path, timeout=5).connect()
    res["connect+greeting+qmp_capabilities"] = ((time.perf_counter() - t) * 1000,) * 2
    with capsys.disabled():
        print()
        for c, (med, mx) in res.items():
            print(f"  QMP {c:40s} median {med:7.2f} ms  max {mx:7.2f} ms")
