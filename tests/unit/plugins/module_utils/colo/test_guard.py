"""Guard: QEMU version parsing, refusals, feature detection from QMP introspection."""
from __future__ import annotations

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import guard
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import PROXY_QOM_TYPES
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import UnsupportedQemu
from ansible_collections.colo.ft.plugins.module_utils.colo.guard import (
    QemuVersion,
    evaluate,
    features_from_schema,
    parse_version_output,
)

DEBIAN_11 = ("QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)\n"
             "Copyright (c) 2003-2026 Fabrice Bellard and the QEMU Project developers\n")


@pytest.mark.parametrize("text,expected", [
    (DEBIAN_11, QemuVersion(11, 1, 3, "Debian 1:11.1.3+ds-1~bpo13+1")),
    ("QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)\n", QemuVersion(10, 0, 13, "Debian 1:10.0.13+ds-0+deb13u1")),
    ("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\n", QemuVersion(7, 2, 19, "Debian 1:7.2+dfsg-7+deb12u18")),
    ("QEMU emulator version 11.2.50 (v11.2.0-123-gabc)\n", QemuVersion(11, 2, 50, "v11.2.0-123-gabc")),
    ("QEMU emulator version 11.0\n", QemuVersion(11, 0, 0, "")),
])
def test_parse_version_output(text, expected):
    assert parse_version_output(text) == expected


def test_parse_garbage():
    with pytest.raises(UnsupportedQemu, match="cannot read a QEMU version"):
        parse_version_output("bash: qemu: command not found")


def test_11_1_is_ok():
    r = evaluate(QemuVersion(11, 1, 3))
    assert r.ok and not r.problems and not r.warnings and not r.overridden


def test_11_0_allowed_with_warning():
    r = evaluate(QemuVersion(11, 0, 2))
    assert r.ok and r.warnings == ["QEMU 11.0.2 is not tested with COLO; 11.1.3 is"]


@pytest.mark.parametrize("ver,fragment", [
    ((10, 0, 13), "Received invalid message 0x0000"),
    ((10, 1, 0), "Received invalid message 0x0000"),
    ((7, 2, 19), "deadlocks at checkpoint 2-3"),
    ((9, 2, 0), "older than 11"),
    ((8, 0, 0), "older than 11"),
])
def test_refused_versions(ver, fragment):
    r = evaluate(QemuVersion(*ver))
    assert not r.ok and fragment in r.problems[0]


def test_check_raises_with_install_hint(monkeypatch):
    monkeypatch.setattr(guard, "probe_binary", lambda binary, prefix=None: QemuVersion(10, 0, 13, "Debian"))
    with pytest.raises(UnsupportedQemu) as exc:
        guard.check("qemu-system-x86_64")
    msg = str(exc.value)
    assert "10.0.13" in msg and "trixie-backports" in msg and "qemu-system-x86" in msg and ">= 11.1" in msg


def test_override_turns_refusal_into_warning(monkeypatch):
    monkeypatch.setattr(guard, "probe_binary", lambda binary, prefix=None: QemuVersion(10, 0, 13))
    r = guard.check("qemu-system-x86_64", allow_unsupported=True)
    assert r.ok and r.overridden and r.problems
    assert r.warnings[0].startswith("UNSAFE override: QEMU 10.0.13 is known broken")
    assert r.to_dict()["version"] == "10.0.13"


def test_probe_binary_missing():
    with pytest.raises(UnsupportedQemu, match="not found: install QEMU >= 11.1"):
        guard.probe_binary("/nonexistent/qemu-system-x86_64")


def _schema(blockdev=("file", "nbd", "qcow2", "quorum", "raw", "replication"),
            caps=("return-path", "x-colo", "multifd"), commands=guard.REQUIRED_COMMANDS):
    return ([{"name": "1", "meta-type": "enum", "members": [{"name": v} for v in blockdev]},
             {"name": "2", "meta-type": "enum", "values": list(caps)}]
            + [{"name": c, "meta-type": "command", "arg-type": "0", "ret-type": "0"} for c in commands])


def test_features_complete():
    f = features_from_schema(_schema(), list(PROXY_QOM_TYPES))
    assert f.complete and f.replication_driver and f.x_colo_capability and f.colo_compare and f.lost_heartbeat
    assert evaluate(QemuVersion(11, 1, 3), f).ok


def test_features_missing_replication_and_colo():
    f = features_from_schema(
        _schema(blockdev=("file", "nbd", "qcow2", "quorum"), caps=("return-path",),
                commands=[c for c in guard.REQUIRED_COMMANDS if c != "x-colo-lost-heartbeat"]),
        ["filter-mirror", "iothread"])
    assert not f.complete and not f.lost_heartbeat and not f.colo_compare
    r = evaluate(QemuVersion(11, 1, 3), f)
    text = "; ".join(r.problems)
    assert not r.ok
    assert "block driver 'replication' is missing" in text
    assert "migration capability 'x-colo' is missing" in text
    assert "colo-compare" in text and "x-colo-lost-heartbeat" in text


def test_running_version_differs_from_binary(monkeypatch):
    class FakeClient:
        def execute(self, cmd, args=None):
            if cmd == "query-version":
                return {"qemu": {"major": 11, "minor": 1, "micro": 2}, "package": ""}
            if cmd == "query-qmp-schema":
                return _schema()
            return [{"name": t} for t in PROXY_QOM_TYPES]
    monkeypatch.setattr(guard, "probe_binary", lambda binary, prefix=None: QemuVersion(11, 1, 3))
    r = guard.check("qemu-system-x86_64", client=FakeClient())  # type: ignore[arg-type]
    assert r.ok and str(r.version) == "11.1.2"
    assert "on disk is 11.1.3" in r.warnings[0]
