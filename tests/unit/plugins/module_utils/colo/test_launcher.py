"""Launcher logic that needs no QEMU (the real thing is in tests/lab/runtime)."""
from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import launcher as lau
from ansible_collections.colo.ft.plugins.module_utils.colo import process, records
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec, LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec


def spec(tmp_path, **kw) -> VMSpec:
    base = dict(name="u1", disk="/var/lib/colo/u1.qcow2", mac="52:54:00:13:01:10", boot="disk",
                forward_addr="10.0.0.1", state_root=str(tmp_path))
    base.update(kw)
    return VMSpec(**base)


def test_same_argv_ignores_resolved_binary_path():
    assert process.same_argv(["/usr/bin/qemu-system-x86_64", "-m", "256"], ["qemu-system-x86_64", "-m", "256"])
    assert not process.same_argv(["/usr/bin/qemu-system-x86_64", "-m", "512"], ["qemu-system-x86_64", "-m", "256"])
    assert not process.same_argv(None, ["qemu-system-x86_64"])
    assert not process.same_argv(["qemu-system-x86_64"], ["qemu-system-x86_64", "-S"])


def test_pid_alive_and_zombies():
    assert process.pid_alive(os.getpid())
    child = subprocess.Popen(["true"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not process.pid_alive(child.pid)
    child.wait()


def test_differences_names_each_field(tmp_path):
    old = spec(tmp_path)
    new = spec(tmp_path, memory_mib=512)
    text = records._differences({"role": "secondary", "spec": old.to_dict()}, new, "primary")
    assert text == "role secondary (asked primary); memory_mib 256 (asked 512)"
    assert "no matching spec.json" in records._differences({}, new, "primary")


def test_status_of_unknown_vm(tmp_path):
    st = lau.Launcher(use_systemd=False).status(spec(tmp_path))
    assert not st.running and not st.qmp and st.pid is None and st.message == "not running"
    assert st.to_dict()["name"] == "u1"


def test_stop_of_unknown_vm_is_a_no_op(tmp_path):
    res = lau.Launcher(use_systemd=False).stop(spec(tmp_path))
    assert not res.changed and res.method == "none"


def test_start_rejects_bad_role_and_spec(tmp_path):
    with pytest.raises(InvalidSpec, match="role must be one of"):
        lau.Launcher(use_systemd=False).start(spec(tmp_path), "tertiary")
    with pytest.raises(InvalidSpec, match="forward_addr"):
        lau.Launcher(use_systemd=False).start(spec(tmp_path, forward_addr=None), "primary")


def test_find_unknown(tmp_path):
    with pytest.raises(LaunchError, match="no VM 'ghost' was started on this host"):
        lau.Launcher(use_systemd=False).find("ghost", state_root=str(tmp_path))


def test_find_qemu_pids_none(tmp_path):
    assert process.find_qemu_pids(spec(tmp_path)) == []


# -- live settings: a running VM whose record differs only in them is the same VM --------


def _record(spec_, role="primary"):
    return {"role": role, "spec": spec_.to_dict(), "argv": [], "manager": "daemon"}


def test_live_setting_changes(tmp_path):
    old = spec(tmp_path)
    assert records.live_setting_changes(_record(old), old) == {}
    assert records.live_setting_changes(_record(old), spec(tmp_path, checkpoint_delay_ms=500)) == {
        "checkpoint_delay_ms": 500}
    assert records.live_setting_changes(_record(old), spec(tmp_path, memory_mib=512)) == {}
    assert records.live_setting_changes(None, old) == {} and records.live_setting_changes({}, old) == {}


def test_verdict_same_vm_with_other_live_setting(tmp_path):
    old = spec(tmp_path)
    new = spec(tmp_path, checkpoint_delay_ms=500)
    assert records.existing_verdict(new, "primary", "u1", 42, _record(old), None, ["qemu"]) is True
    with pytest.raises(LaunchError, match="memory_mib 256 .asked 512"):
        records.existing_verdict(spec(tmp_path, memory_mib=512, checkpoint_delay_ms=500), "primary", "u1", 42,
                                 _record(old), None, ["qemu"])


def test_start_records_changed_live_settings(tmp_path, monkeypatch):
    old = spec(tmp_path)
    os.makedirs(old.state_dir)
    records.write_json(old.spec_path, dict(_record(old), started_at="then"))
    launcher = lau.Launcher(use_systemd=False)
    monkeypatch.setattr(launcher, "plan_start", lambda s, role, argv: (True, 42))
    res = launcher.start(spec(tmp_path, checkpoint_delay_ms=500), "primary")
    assert res.changed and res.updated == ["checkpoint_delay_ms 2000 -> 500"] and res.pid == 42
    assert "checkpoint_delay_ms 2000 -> 500" in res.message
    rec = lau.read_record(old)
    assert rec["spec"]["checkpoint_delay_ms"] == 500 and rec["started_at"] == "then" and rec["role"] == "primary"
    # Only the live settings are recorded anew: what a start decided (here checkpoint_addr) stays.
    launcher.start(spec(tmp_path, checkpoint_delay_ms=700, checkpoint_addr="10.0.0.9"), "primary")
    rec = lau.read_record(old)
    assert rec["spec"]["checkpoint_delay_ms"] == 700 and rec["spec"]["checkpoint_addr"] is None
    again = launcher.start(spec(tmp_path, checkpoint_delay_ms=700), "primary")
    assert not again.changed and again.updated == [] and again.message == "VM u1 is already running as primary"


def test_find_returns_spec_record_and_status(tmp_path):
    old = spec(tmp_path)
    os.makedirs(old.state_dir)
    records.write_json(old.spec_path, _record(old))
    found, record, st = lau.Launcher(use_systemd=False).find("u1", state_root=str(tmp_path))
    assert found == old and record["role"] == "primary" and not st.running and st.role == "primary"


def test_known_vms(tmp_path):
    for n in ("b", "a"):
        os.makedirs(tmp_path / n)
        (tmp_path / n / "spec.json").write_text("{}")
    assert records.known_vms(str(tmp_path)) == ["a", "b"]
