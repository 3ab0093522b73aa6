"""Confined QEMU: the sandbox options, the drop to qemu_user, the unit's properties, and the names and paths
refused before they reach a path or a command line (docs/qemu-colo.md, "Confined QEMU")."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import confine
from ansible_collections.colo.ft.plugins.module_utils.colo.argv import qemu_argv
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec, LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.launcher import Launcher
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec, check_locator
from ansible_collections.colo.ft.plugins.module_utils.module_base import stub_spec


def make(**kw) -> VMSpec:
    base = dict(name="guest1", disk="/var/lib/colo-ft/images/guest1.qcow2", mac="52:54:00:13:01:10",
                kernel="/srv/guest/vmlinux", forward_addr="10.213.2.11", checkpoint_addr="10.213.3.12")
    base.update(kw)
    return VMSpec(**base)


def sandbox(argv: list[str]) -> dict[str, str]:
    value = argv[argv.index("-sandbox") + 1]
    head, *rest = value.split(",")
    assert head == "on"
    return dict(p.split("=") for p in rest)


@pytest.mark.parametrize("role", ["plain", "primary", "secondary"])
def test_root_qemu_denies_every_group(role):
    argv = qemu_argv(make(), role)
    assert sandbox(argv) == {"obsolete": "deny", "elevateprivileges": "deny", "spawn": "deny", "resourcecontrol": "deny"}
    assert "-run-with" not in argv


@pytest.mark.parametrize("user, daemonize, elevate, spawn", [
    ("colo-qemu", False, "allow", "deny"),   # the drop: setgroups/setgid/setuid
    (None, True, "allow", "allow"),          # -daemonize: fork, setsid
    ("colo-qemu", True, "allow", "allow"),
])
def test_what_the_drop_and_daemonize_need(user, daemonize, elevate, spawn):
    # QEMU installs its filter before it drops root and before -daemonize forks (measured: SIGSYS otherwise).
    argv = qemu_argv(make(qemu_user=user), "secondary", daemonize=daemonize)
    assert sandbox(argv) == {"obsolete": "deny", "elevateprivileges": elevate, "spawn": spawn, "resourcecontrol": "deny"}
    assert ("-run-with" in argv) is bool(user)
    if user:
        assert argv[argv.index("-run-with") + 1] == "user=colo-qemu"


def test_compare_sockets_live_in_qemu_dir():
    spec = make()
    chardevs = [a for a in qemu_argv(spec, "primary") if a.startswith("socket,id=compare")]
    assert chardevs and all("path=/run/colo-ft/guest1/qemu/" in c for c in chardevs if "path=" in c)


def test_unit_properties():
    props = confine.unit_properties(make(), "primary")
    for p in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
              "DevicePolicy=closed", "DeviceAllow=/dev/net/tun rw", "DeviceAllow=/dev/kvm rw"):
        assert p in props
    assert 'ReadWritePaths="/run/colo-ft/guest1" "/var/lib/colo-ft/images"' in props
    assert not any(p.startswith("MemoryDenyWriteExecute") for p in props)  # TCG writes its code


def test_unit_properties_of_a_secondary_with_files_in_home_and_tmp():
    spec = make(disk="/home/ops/vm/g.qcow2", active_disk="/tmp/ov/a.qcow2", hidden_disk="/tmp/ov/h.qcow2")
    props = confine.unit_properties(spec, "secondary")
    assert "ProtectHome=read-only" in props and "PrivateTmp=yes" not in props
    assert 'ReadWritePaths="/home/ops/vm" "/run/colo-ft/guest1" "/tmp/ov"' in props


def test_writable_dirs_skip_nested_ones_and_quote():
    spec = make(disk='/srv/my "vm"/g.qcow2', state_root="/srv/my \"vm\"/state")
    assert confine.writable_dirs(spec, "plain") == ['/srv/my "vm"']
    assert 'ReadWritePaths="/srv/my \\"vm\\""' in confine.unit_properties(spec, "plain")


def test_root_needs_no_user_check():
    assert confine.check_user(make(), "secondary") == (0, 0)


def test_unknown_user_refused():
    with pytest.raises(LaunchError, match="qemu_user colo-nobody-here does not exist"):
        confine.check_user(make(qemu_user="colo-nobody-here"), "plain")


def test_unreachable_directory_named():
    base = tempfile.mkdtemp(dir="/dev/shm")  # /dev/shm and above: searchable by anyone
    try:
        os.chmod(base, 0o711)
        closed = os.path.join(base, "closed")
        os.mkdir(closed, 0o700)
        nobody = 65534
        state = os.path.join(closed, "state")
        assert confine._unsearchable(os.path.join(state, "x"), nobody, {nobody}, state) == closed
        assert confine._unsearchable(os.path.join(state, "x"), nobody, {nobody}, closed) is None  # the launcher's
        os.chmod(closed, 0o711)
        assert confine._unsearchable(os.path.join(state, "x"), nobody, {nobody}, state) is None
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("user, ok", [("colo-qemu", True), ("_q1", True), ("root", False), ("Colo", False),
                                      ("a b", False), ("x" * 33, False), ("", False), ("-x", False)])
def test_qemu_user_names(user, ok):
    problems = [p for p in make(qemu_user=user).problems() if "qemu_user" in p]
    assert (problems == []) is ok


# -- names and paths refused before they reach a path or a command line -------------------------

@pytest.mark.parametrize("name", ["../x", "a/b", "x\ny", ".hidden", "", "a b", "a,b", "x" * 49, None])
def test_bad_names_refused_by_every_entry(name):
    with pytest.raises(InvalidSpec, match="must start with a letter"):
        check_locator(name, "/run/colo-ft")
    with pytest.raises(InvalidSpec, match="must start with a letter"):
        stub_spec(name, "/run/colo-ft")
    with pytest.raises(InvalidSpec, match="must start with a letter"):
        Launcher(use_systemd=False).find(name, "/run/colo-ft")
    with pytest.raises(InvalidSpec, match="must start with a letter"):
        make(name=name).validate()


@pytest.mark.parametrize("state_root", ["relative", "/run/x/../y", "/run//x", "/run/x\n", "/run/\tx", "/run/x\x7f"])
def test_bad_state_roots_refused_before_a_lookup(state_root):
    with pytest.raises(InvalidSpec, match="state_root"):
        Launcher(use_systemd=False).find("guest1", state_root)


@pytest.mark.parametrize("key", ["disk", "kernel", "active_disk", "hidden_disk"])
@pytest.mark.parametrize("path, why", [("/v/a\nb.qcow2", "control character"), ("/v/../etc/x", "normalised"),
                                       ("/v/./x", "normalised"), ("v/x", "absolute")])
def test_bad_paths_refused(key, path, why):
    with pytest.raises(InvalidSpec, match=f"{key} .*{why}"):
        make(**{key: path}).validate("secondary")


def test_a_record_of_another_vm_is_refused(tmp_path):
    from ansible_collections.colo.ft.plugins.module_utils.colo.records import write_json
    os.makedirs(tmp_path / "guest1")
    write_json(str(tmp_path / "guest1" / "spec.json"), {"spec": make(name="other", state_root=str(tmp_path)).to_dict()})
    with pytest.raises(InvalidSpec, match="describes VM 'other', not 'guest1'"):
        Launcher(use_systemd=False).find("guest1", str(tmp_path))
