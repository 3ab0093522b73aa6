"""Launcher with a real QEMU: start, idempotence, refusals, stale state, stop."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.process import pid_alive, read_cmdline, same_argv
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient


def link(name: str) -> dict | None:
    out = subprocess.run(["ip", "-j", "-d", "link", "show", "dev", name], capture_output=True, text=True, check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def test_start_idempotent_stop(make_spec, launcher, bridge):
    spec = make_spec(name="web1", bridge=bridge)
    r = launcher.start(spec, "plain")
    assert r.changed and r.pid and r.role == "plain"
    assert r.manager == ("systemd" if launcher.use_systemd else "daemon")
    assert same_argv(read_cmdline(r.pid), r.argv)

    # state directory: root only, with the files the contract names
    st = os.stat(spec.state_dir)
    assert stat.S_IMODE(st.st_mode) == 0o700
    for f in ("qmp.sock", "qemu.pid", "serial.log", "spec.json"):
        assert os.path.exists(os.path.join(spec.state_dir, f)), f
    record = json.load(open(spec.spec_path))
    assert record["role"] == "plain" and record["spec"] == spec.to_dict() and record["argv"] == r.argv

    # tap made by the launcher, up, on the bridge
    tap = link(spec.tap_name)
    assert tap and tap["linkinfo"]["info_kind"] == "tun" and tap.get("master") == bridge

    s = launcher.status(spec)
    assert s.running and s.qmp and s.pid == r.pid and s.qemu_status == "running" and s.role == "plain"

    again = launcher.start(spec, "plain")
    assert not again.changed and again.pid == r.pid and "already running" in again.message

    stopped = launcher.stop(spec)
    assert stopped.changed and stopped.method == "quit"
    assert not pid_alive(r.pid)
    assert not os.path.exists(spec.qmp_path) and not os.path.exists(spec.pid_path)
    assert not launcher.status(spec).running
    assert not launcher.stop(spec).changed


def test_same_name_other_config_refused(make_spec, launcher):
    spec = make_spec(name="web2")
    launcher.start(spec, "plain")
    bigger = make_spec(name="web2", memory_mib=128, tap=spec.tap)
    with pytest.raises(LaunchError) as exc:
        launcher.start(bigger, "plain")
    assert "already running with another configuration" in str(exc.value)
    assert "memory_mib 64 (asked 128)" in str(exc.value)
    with pytest.raises(LaunchError, match="role plain \\(asked primary\\)"):
        launcher.start(spec, "primary")
    assert launcher.status(spec).running   # the running VM was left alone


def test_other_vm_on_the_socket_refused(make_spec, launcher, workdir):
    spec = make_spec(name="web3")
    os.makedirs(spec.state_dir, mode=0o700)
    intruder = subprocess.run(
        [spec.qemu_binary, "-name", "intruder", "-nodefaults", "-display", "none", "-accel", "tcg", "-m", "32",
         "-qmp", f"unix:{spec.qmp_path},server=on,wait=off", "-daemonize",
         "-pidfile", os.path.join(workdir, "intruder.pid")], check=True)
    assert intruder.returncode == 0
    pid = int(open(os.path.join(workdir, "intruder.pid")).read())
    try:
        with pytest.raises(LaunchError, match="a different VM \\('intruder'\\) answers"):
            launcher.start(spec, "plain")
        with pytest.raises(LaunchError, match="is VM 'intruder'"):
            launcher.stop(spec)
        assert pid_alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_stale_socket_and_pidfile_are_cleaned(make_spec, launcher):
    spec = make_spec(name="web4")
    os.makedirs(spec.state_dir, mode=0o700)
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(spec.qmp_path)
    s.close()                                  # socket file left, nobody listening
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(spec.pid_path, "w") as f:        # pidfile of a process that is gone
        f.write(f"{dead.pid}\n")
    r = launcher.start(spec, "plain")
    assert r.changed and r.pid != dead.pid
    with QMPClient(spec.qmp_path) as qmp:
        assert qmp.execute("query-name")["name"] == "web4"


def test_primary_and_secondary_roles_start(make_spec, launcher):
    pri = make_spec(name="colo1", state="a", port_base=19300)
    sec = make_spec(name="colo1", state="b", port_base=19300)
    rp = launcher.start(pri, "primary")
    rs = launcher.start(sec, "secondary")
    assert rp.changed and rs.changed
    assert launcher.status(pri).qemu_status == "running"
    assert launcher.status(sec).qemu_status == "inmigrate"     # -incoming defer
    assert os.path.exists(sec.active_path) and os.path.exists(sec.hidden_path)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U", sec.active_path],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["virtual-size"] == 64 * 1024 * 1024
    with QMPClient(pri.qmp_path) as qmp:
        objs = {o["name"] for o in qmp.execute("qom-list", {"path": "/objects"})}
        assert {"m0", "redire0", "redire1", "iothread1", "comp0"} <= objs
    with QMPClient(sec.qmp_path) as qmp:
        objs = {o["name"] for o in qmp.execute("qom-list", {"path": "/objects"})}
        assert {"f1", "f2", "rew0"} <= objs
        nodes = {b["device"] for b in qmp.execute("query-block")}
        assert {"parent0", "childs0", "colo-disk0"} <= nodes
    assert not launcher.start(sec, "secondary").changed
    launcher.stop(sec)
    assert not os.path.exists(sec.active_path) and not os.path.exists(sec.hidden_path)


def test_stop_escalates_when_qmp_hangs(make_spec, launcher):
    spec = make_spec(name="hung")
    r = launcher.start(spec, "plain")
    launcher.qmp_timeout = 0.5
    os.kill(r.pid, signal.SIGSTOP)             # QMP no longer answers
    try:
        with pytest.raises(LaunchError, match="does not answer"):
            launcher.start(spec, "plain")        # never a second QEMU beside a hung one
        t = time.monotonic()
        res = launcher.stop(spec, timeout=1)
        assert res.changed and res.method == "sigkill"   # SIGTERM stays pending on a stopped process
        assert time.monotonic() - t < 15
        assert not pid_alive(r.pid)
    finally:
        if pid_alive(r.pid):
            os.kill(r.pid, signal.SIGKILL)


def test_start_failure_reports_qemu_message(make_spec, launcher):
    spec = make_spec(name="broken", extra_args=["-device", "no-such-device"])
    with pytest.raises(LaunchError) as exc:
        launcher.start(spec, "plain")
    assert "no-such-device" in str(exc.value)
    assert not launcher.status(spec).running


def test_find_by_name(make_spec, launcher):
    spec = make_spec(name="findme")
    launcher.start(spec, "primary")
    found, record, st = launcher.find("findme", state_root=spec.state_root)
    assert found == spec and st.running and st.role == "primary" and record["role"] == "primary"
    with pytest.raises(LaunchError, match="no VM 'nothere'"):
        launcher.find("nothere", state_root=spec.state_root)
