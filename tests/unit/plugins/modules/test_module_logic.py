"""Pure logic of the colo.ft modules: option -> VMSpec mapping, check-mode predictions, info's flattening."""
from __future__ import annotations

import dataclasses
import os

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint, failover, guard, proxy, records, replication
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, InvalidSpec, LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.argv import qemu_argv
from ansible_collections.colo.ft.plugins.module_utils.colo.host import image_problems
from ansible_collections.colo.ft.plugins.module_utils.colo.records import existing_verdict
from ansible_collections.colo.ft.plugins.module_utils.colo.state import VMState
from ansible_collections.colo.ft.plugins.module_utils.colo.summary import replication_state, vm_entry
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import OPTION_TO_FIELD, VMSpec, with_overrides
from ansible_collections.colo.ft.plugins.module_utils.module_base import (
    COMMON_ARGS,
    GUEST_ARGS,
    PLACEMENT_ARGS,
    VM_SPEC_ARGS,
    apply_vm_dict,
    settings_overrides,
    spec_from_params,
    spec_summary,
    stub_spec,
)

GUEST = "/srv/colo-lab/guest"


def params(**kw):
    """Module parameters as AnsibleModule fills them: every option present, defaults applied."""
    p = {k: v.get("default") for k, v in {**COMMON_ARGS, **VM_SPEC_ARGS}.items()}
    p.update(name="guest1", disk="/var/lib/colo/guest1.qcow2", mac="52:54:00:13:01:10",
             kernel=f"{GUEST}/vmlinux", initrd=f"{GUEST}/initrd.img")
    p.update(kw)
    return p


# -- option -> VMSpec mapping -------------------------------------------------------------


def test_every_vm_option_maps_onto_a_vmspec_field():
    fields = {f.name for f in dataclasses.fields(VMSpec)}
    for option in VM_SPEC_ARGS:
        assert OPTION_TO_FIELD.get(option, option) in fields, option


def test_option_defaults_equal_vmspec_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(VMSpec) if f.default is not dataclasses.MISSING}
    for option, spec in VM_SPEC_ARGS.items():
        field = OPTION_TO_FIELD.get(option, option)
        if field in defaults:
            assert spec.get("default") == defaults[field], option
    assert VM_SPEC_ARGS["extra_args"]["default"] == []


def test_spec_from_defaults_equals_vmspec_defaults():
    spec = spec_from_params(params())
    assert spec == VMSpec(name="guest1", disk="/var/lib/colo/guest1.qcow2", mac="52:54:00:13:01:10",
                          kernel=f"{GUEST}/vmlinux", initrd=f"{GUEST}/initrd.img")


def test_renamed_options_and_ports():
    spec = spec_from_params(params(forward_address="10.213.2.11", checkpoint_address="10.213.3.12",
                                   port_base=7000, nbd_port=7100, state_root="/dev/shm/colo"))
    assert (spec.forward_addr, spec.checkpoint_addr) == ("10.213.2.11", "10.213.3.12")
    assert (spec.mirror_port, spec.compare_port, spec.migration_port, spec.nbd_port) == (7000, 7001, 7002, 7100)
    assert spec.state_dir == "/dev/shm/colo/guest1"
    spec.validate("primary")


def test_none_list_and_append_become_vmspec_defaults():
    spec = spec_from_params(params(extra_args=None, append=None))
    assert spec.extra_args == [] and spec.append == ""


def test_mapped_spec_validates_like_vmspec():
    with pytest.raises(ColoError, match="forward_addr"):
        spec_from_params(params()).validate("primary")
    with pytest.raises(ColoError, match="mac"):
        spec_from_params(params(mac="01:00:00:00:00:01")).validate("plain")


def test_spec_summary_uses_option_names():
    s = spec_summary(spec_from_params(params(forward_address="10.0.0.1")), "primary")
    assert s["role"] == "primary" and s["forward_address"] == "10.0.0.1" and "forward_addr" not in s
    assert spec_summary(None, None) == {}


def test_with_overrides_ignores_none():
    spec = spec_from_params(params(forward_address="10.0.0.1", checkpoint_address="10.0.0.2"))
    new = with_overrides(spec, forward_addr="10.0.0.9", checkpoint_addr=None)
    assert (new.forward_addr, new.checkpoint_addr) == ("10.0.0.9", "10.0.0.2")
    assert spec.forward_addr == "10.0.0.1"


def test_stub_spec_locates_state_only():
    s = stub_spec("guest1", "/run/x")
    assert s.qmp_path == "/run/x/guest1/qmp.sock"


def test_settings_overrides_leave_the_recorded_ones_where_unset():
    spec = spec_from_params(params(forward_address="10.0.0.1", checkpoint_delay_ms=1500, compare_timeout=900))
    over = settings_overrides({"checkpoint_delay_ms": None, "compare_timeout": 2000, "expired_scan_cycle": None,
                               "max_queue_size": 64})
    new = with_overrides(spec, **over)
    assert (new.checkpoint_delay_ms, new.compare_timeout, new.max_queue_size) == (1500, 2000, 64)
    with pytest.raises(InvalidSpec, match="max_queue_size"):
        with_overrides(spec, max_queue_size=0)


# -- files checked before a start ------------------------------------------------------------


def test_image_problems(tmp_path):
    disk = tmp_path / "d.qcow2"
    spec = spec_from_params(params(disk=str(disk), kernel=str(tmp_path / "k"), initrd=None,
                                   state_root=str(tmp_path / "state")))
    probs = image_problems(spec, "plain")
    assert any("disk image" in p for p in probs) and any("kernel" in p for p in probs)
    disk.write_bytes(b"")
    (tmp_path / "k").write_bytes(b"")
    assert image_problems(spec, "secondary") == []  # state dir's parent exists and is writable


def test_image_problems_overlay_dir_not_writable(tmp_path):
    (tmp_path / "d").write_bytes(b"")
    spec = spec_from_params(params(disk=str(tmp_path / "d"), boot="disk", kernel=None, initrd=None,
                                   active_disk="/ro/nope/a.qcow2", hidden_disk="/ro/nope/h.qcow2"))
    probs = image_problems(spec, "secondary", access=lambda path, mode: not path.startswith("/ro") and path != "/")
    assert any("overlay directory /ro/nope" in p for p in probs)
    assert image_problems(spec, "primary") == []


# -- vm: what is on the state directory before a start ------------------------------------


def _start_case(record_role="primary", **kw):
    spec = spec_from_params(params(forward_address="10.0.0.1", **kw))
    want = qemu_argv(spec, "primary", daemonize=True)
    record = {"role": record_role, "spec": spec.to_dict()}
    return spec, want, record


def test_verdict_nothing_running():
    spec, want, dummy = _start_case()
    assert existing_verdict(spec, "primary", None, None, None, None, want) is False


def test_verdict_same_vm():
    spec, want, record = _start_case()
    assert existing_verdict(spec, "primary", "guest1", 42, record, None, want) is True
    assert existing_verdict(spec, "primary", "guest1", 42, None, want, want) is True  # argv matches
    # systemd-run execs QEMU by its absolute path: argv[0] may differ
    assert existing_verdict(spec, "primary", "guest1", 42, None, ["/usr/bin/" + want[0]] + want[1:], want) is True


def test_verdict_refuses_other_configuration():
    spec, want, record = _start_case()
    other = spec_from_params(params(forward_address="10.0.0.1", memory_mib=512))
    with pytest.raises(LaunchError, match="memory_mib 256 .asked 512"):
        existing_verdict(other, "primary", "guest1", 42, record, want, qemu_argv(other, "primary", daemonize=True))
    with pytest.raises(LaunchError, match="role primary .asked secondary"):
        existing_verdict(spec, "secondary", "guest1", 42, record, want, qemu_argv(spec, "secondary", daemonize=True))


def test_verdict_refuses_other_vm_and_mute_process():
    spec, want, record = _start_case()
    with pytest.raises(LaunchError, match="different VM"):
        existing_verdict(spec, "primary", "other", 42, record, None, want)
    with pytest.raises(LaunchError, match="does not answer"):
        existing_verdict(spec, "primary", None, 42, record, None, want)


# -- the plans behind check mode: checkpoint / failover / replication / proxy ------------------


def snap(mode="none", last="none", status="running", migrate=None, caps=None, exports=(), child=None,
         node=False, objects=None, chardevs=(), quorum=True, version=(11, 1, 3), delay=2000):
    return VMState(version=version, mode=mode, last_mode=last, migration=migrate or {}, run_state=status,
                   params={"x-checkpoint-delay": delay},
                   running=status == "running", caps=caps or {"x-colo": False, "return-path": False},
                   exports=tuple(exports), node_exists=node, has_quorum=quorum,
                   quorum_children={child: "replication0"} if child else {}, objects=objects or {},
                   chardevs=tuple(chardevs))


READY_CAPS = {"x-colo": True, "return-path": True}
ADDR = "10.213.3.12"


def ready(st):
    return checkpoint.plan_ready(st, "secondary", ADDR)


def protect(st, **kw):
    spec = VMSpec(name="guest1", disk="/d", mac="52:54:00:13:01:10", forward_addr="10.213.2.11", **kw)
    return checkpoint.plan_protect(st, spec, ADDR)


def test_plan_ready():
    assert ready(snap(status="inmigrate")).describe() == [
        "secondary: migrate-set-capabilities x-colo=on return-path=on",
        f"secondary: nbd-server-start {ADDR}:9999", "secondary: nbd-server-add parent0 writable",
        f"secondary: migrate-incoming tcp:{ADDR}:9998"]
    assert ready(snap(status="inmigrate", caps=READY_CAPS, exports=["parent0"])).changed is True  # not listening
    assert ready(snap(status="inmigrate", caps=READY_CAPS, exports=["parent0"],
                      migrate={"socket-address": [{}]})).changed is False
    assert ready(snap(mode="secondary", status="running")).changed is False
    with pytest.raises(ColoError, match="not waiting for an incoming migration"):
        ready(snap(status="running"))
    with pytest.raises(ColoError, match="took over the guest after a failover.*reprotect.yml"):
        ready(snap(status="running", last="secondary"))
    with pytest.raises(ColoError, match="runs on the secondary"):
        checkpoint.plan_ready(snap(status="inmigrate"), "primary", ADDR)


TLS_OBJECTS = {"colo-tls-server": "tls-creds-x509", "colo-tls-client": "tls-creds-x509"}


def test_plans_use_tls_when_the_vm_holds_the_credentials():
    assert ready(snap(status="inmigrate", objects=TLS_OBJECTS)).describe() == [
        "secondary: migrate-set-capabilities x-colo=on return-path=on",
        "secondary: migrate-set-parameters tls-creds=colo-tls-server",
        f"secondary: nbd-server-start {ADDR}:9999 tls-creds=colo-tls-server",
        "secondary: nbd-server-add parent0 writable",
        f"secondary: migrate-incoming tcp:{ADDR}:9998"]
    steps = protect(snap(objects=TLS_OBJECTS)).describe()
    assert steps[0] == f"drive-mirror colo-disk0 -> nbd+tls://{ADDR}:9999/parent0"
    assert f"blockdev-add replication0 -> nbd+tls://{ADDR}:9999/parent0" in steps
    assert "migrate-set-parameters tls-creds=colo-tls-client" in steps
    # A former secondary (server end set) protecting a new one switches to the client end; without TLS, cleartext.
    st = snap(objects=TLS_OBJECTS)
    st.params["tls-creds"] = "colo-tls-server"
    assert "migrate-set-parameters tls-creds=colo-tls-client" in protect(st).describe()
    st = snap()
    st.params["tls-creds"] = "colo-tls-client"
    assert "migrate-set-parameters tls-creds=(none)" in protect(st).describe()
    assert not [s for s in protect(snap()).describe() if "tls" in s]


def test_plan_ready_refuses_broken_qemu():
    with pytest.raises(ColoError):
        ready(snap(status="inmigrate", version=(10, 0, 13)))


def test_plan_protect():
    fresh = protect(snap(delay=20000), checkpoint_delay_ms=1500)
    assert fresh.changed is True
    steps = fresh.describe()
    assert steps[:3] == [f"drive-mirror colo-disk0 -> nbd://{ADDR}:9999/parent0", "stop", "block-job-cancel resync"]
    assert f"blockdev-add replication0 -> nbd://{ADDR}:9999/parent0" in steps
    assert "object-add colo-compare comp0" in steps and steps[-1] == f"migrate tcp:{ADDR}:9998"
    assert "migrate-set-parameters x-checkpoint-delay=1500" in steps
    protected = snap(mode="primary", migrate={"status": "colo"})
    assert protect(protected).changed is False
    assert protect(snap(mode="none", last="secondary")).changed is True  # re-protection of a survivor
    with pytest.raises(ColoError):
        protect(snap(mode="secondary"))


def test_plan_protect_never_trusts_the_secondary_disk_behind_a_stale_replication_child():
    """A replication child outside COLO (an interrupted protection, or a new secondary that died while being
    protected): it goes, and the secondary's image (maybe one created empty) is resynced in full."""
    for stale in (snap(child="children.1", node=True), snap(node=True)):
        steps = protect(stale).describe()
        detach = ["x-blockdev-change colo-disk0 -= children.1"] if stale.child else []
        assert steps[:len(detach) + 3] == [*detach, "blockdev-del replication0",
                                           f"drive-mirror colo-disk0 -> nbd://{ADDR}:9999/parent0", "stop"], steps
        assert f"blockdev-add replication0 -> nbd://{ADDR}:9999/parent0" in steps
        assert "x-blockdev-change colo-disk0 += replication0" in steps


def test_plan_protect_on_a_protected_pair_only_moves_the_delay():
    st = snap(mode="primary", migrate={"status": "colo"})
    assert protect(st).describe() == []
    assert protect(st, checkpoint_delay_ms=500).describe() == ["migrate-set-parameters x-checkpoint-delay=500"]


def test_plan_release():
    fresh_primary = snap(objects={"comp0": "colo-compare"})
    assert checkpoint.plan_release(fresh_primary).changed is True
    assert checkpoint.plan_release(snap(mode="primary")).describe() == ["x-colo-lost-heartbeat"]
    assert checkpoint.plan_release(snap(child="children.1")).changed is True
    assert checkpoint.plan_release(snap(node=True)).changed is True
    assert checkpoint.plan_release(snap(last="primary", objects={"rew0": "filter-rewriter"})).changed is False


def test_secondary_lost_side():
    with pytest.raises(failover.WrongSide):
        failover.plan_secondary_lost(snap(mode="secondary"))
    with pytest.raises(failover.WrongSide):
        failover.plan_secondary_lost(snap())
    failover.plan_secondary_lost(snap(last="primary"))
    failover.plan_secondary_lost(snap(child="children.1"))
    failover.plan_secondary_lost(snap(mode="primary"))


def lost_primary(st, tap_bridge, client_bridge):
    tap = "colo-guest1" if client_bridge else None
    return failover.plan_primary_lost(st, tap, tap_bridge, client_bridge, "br1").changed


def test_plan_primary_lost():
    with pytest.raises(failover.WrongSide):
        lost_primary(snap(mode="primary"), "br1", "br0")
    with pytest.raises(failover.WrongSide):
        lost_primary(snap(), "br1", "br0")
    assert lost_primary(snap(mode="secondary"), "br1", "br0") is True
    done = snap(last="secondary")
    assert lost_primary(done, "br0", "br0") is False
    assert lost_primary(done, None, None) is False  # tap not moved
    assert lost_primary(done, "br1", "br0") is True  # tap still to move
    assert lost_primary(snap(last="secondary", exports=["parent0"]), "br0", "br0") is True
    assert lost_primary(snap(last="secondary", objects={"f1": "filter-redirector"}), "br0", "br0") is True
    assert lost_primary(snap(last="secondary", chardevs=["red0"]), "br0", "br0") is True
    with pytest.raises(ColoError, match="expected br1 or br0"):
        lost_primary(snap(mode="secondary"), "br7", "br0")


def test_plan_primary_lost_lists_the_takeover_in_order():
    steps = failover.plan_primary_lost(snap(mode="secondary", exports=["parent0"], objects={
        "f1": "filter-redirector", "f2": "filter-redirector", "rew0": "filter-rewriter"},
        chardevs=["red0", "red1"]), "colo-guest1", "br1", "br0", "br1").describe()
    assert steps == ["nbd-server-stop", "x-colo-lost-heartbeat", "ip link set colo-guest1 master br0 (was br1)",
                     "object-del f2", "object-del f1", "chardev-remove red1", "chardev-remove red0", "announce-self"]


@pytest.mark.parametrize("st,side", [
    (snap(mode="secondary"), "primary"),
    (snap(last="secondary"), "primary"),
    (snap(mode="primary"), "secondary"),
    (snap(last="primary"), "secondary"),
    (snap(), "secondary"),
    (snap(mode="primary", last="secondary"), "secondary"),  # a reprotected survivor is primary now
    # A survivor in the middle of its re-protection (replication child attached, COLO not started yet)
    # whose new secondary died: it releases the child, as a primary does.
    (snap(last="secondary", child="children.1"), "secondary"),
])
def test_lost_auto_follows_the_colo_state(st, side):
    assert failover.lost_side(st) == side


def test_secondary_lost_yanks_the_streams_to_the_secondary_first():
    protected = snap(mode="primary", migrate={"status": "colo"}, child="children.1", node=True)
    steps = failover.plan_secondary_lost(protected).describe()
    assert steps[:2] == ["yank the replication child's NBD connection", "yank the migration stream"]
    assert steps[2:] == ["x-blockdev-change colo-disk0 -= children.1", "blockdev-del replication0",
                         "x-colo-lost-heartbeat"]
    # Released already (no node, COLO over): nothing to yank, and a second call plans nothing.
    assert failover.plan_secondary_lost(snap(last="primary")).describe() == []
    assert failover.yank_instances(snap(mode="primary", migrate={"status": "colo"})) == [failover.YANK_MIGRATION]


def test_failover_plan_reads_the_tap_only_when_it_takes_over():
    asked = []
    lost, plan = failover.plan(snap(mode="secondary"), "auto", "colo-guest1", "br0", "br1",
                               tap_bridge=lambda tap: asked.append(tap) or "br1")
    assert lost == "primary" and asked == ["colo-guest1"]
    assert "ip link set colo-guest1 master br0 (was br1)" in plan.describe()
    lost, plan = failover.plan(snap(mode="primary"), "auto", "colo-guest1", "br0", "br1",
                               tap_bridge=lambda tap: asked.append(tap) or "br1")
    assert lost == "secondary" and asked == ["colo-guest1"] and plan.describe() == ["x-colo-lost-heartbeat"]
    with pytest.raises(ColoError, match="lost must be"):
        failover.plan(snap(), "both")


def test_plan_replication():
    def changed(st, state, role="primary"):
        if state in ("exported", "stopped"):
            role = "secondary"
        return replication.plan(st, role, state, ADDR, 9999).changed
    assert changed(snap(), "exported") is True
    assert changed(snap(exports=["parent0"]), "exported") is False
    assert changed(snap(exports=["parent0"]), "stopped") is True
    assert changed(snap(), "stopped") is False
    assert changed(snap(), "attached") is True
    assert changed(snap(child="children.1"), "attached") is False
    assert changed(snap(node=True), "detached") is True
    assert changed(snap(), "detached") is False
    with pytest.raises(ColoError, match="runs on the secondary"):
        replication.plan(snap(), "primary", "exported", ADDR, 9999)
    with pytest.raises(ColoError, match="runs on the primary"):
        replication.plan(snap(mode="secondary"), "secondary", "attached", ADDR, 9999)


def test_plan_proxy():
    spec = VMSpec(name="guest1", disk="/d", mac="52:54:00:13:01:10", forward_addr="10.213.2.11")
    full = snap(objects={"m0": "filter-mirror"}, chardevs=["mirror0"])
    present = proxy.plan(full, spec, "primary", True).describe()
    assert "chardev-add mirror0" not in present and "object-add filter-mirror m0" not in present
    assert "chardev-add compare1" in present
    assert proxy.plan(full, spec, "primary", False).describe() == ["object-del m0"]
    assert proxy.plan(snap(), spec, "primary", False).changed is False
    former_secondary = snap(objects={"rew0": "filter-rewriter"})
    assert "object-add filter-mirror m0 before rew0" in proxy.plan(former_secondary, spec, "primary", True).describe()
    with pytest.raises(ColoError, match="set side"):
        proxy.plan(full, spec, "plain", True)


# -- info -------------------------------------------------------------------------------------------


STATUS = {
    "role": "primary",
    "colo": {"mode": "primary", "last_mode": "none", "reason": "none"},
    "migration": {"status": "colo"},
    "run_state": "running",
    "running": True,
    "qemu_version": "11.1.3",
    "checkpoint_delay_ms": 2000,
    "replication": {"node_attached": "children.1", "quorum_children": {}, "block_jobs": [], "nbd_exports": []},
    "proxy_objects": {"comp0": "colo-compare"},
    "tls": True,
    "checkpoints": {"window_s": 5.0, "count": 3, "pause_p50_ms": 80.0, "pause_p99_ms": 120.0, "pause_max_ms": 120.0,
                    "per_second": 0.6},
}


def test_vm_entry_running():
    e = vm_entry(STATUS, {"running": True, "pid": 42, "qemu_status": "running"}, {"role": "primary"})
    assert e["mode"] == "primary" and e["migration_status"] == "colo" and e["checkpoints"] == 3
    assert e["pause_p50_ms"] == 80.0 and e["pause_max_ms"] == 120.0 and e["replication"] == "attached"
    assert e["pause_p99_ms"] == 120.0 and e["checkpoint_delay_ms"] == 2000
    assert e["pid"] == 42 and e["recorded_role"] == "primary"
    assert e["tls"] is True and e["tls_dir"] is None


def test_vm_entry_tls_dir_from_the_record():
    e = vm_entry(None, {"running": False}, {"role": "primary", "spec": {"tls_dir": "/etc/colo-ft/tls"}})
    assert e["tls_dir"] == "/etc/colo-ft/tls" and e["tls"] is None


def test_vm_entry_not_running():
    e = vm_entry(None, {"running": False, "pid": None}, {"role": "secondary"})
    assert e["running"] is False and e["mode"] is None and e["recorded_role"] == "secondary"


def test_vm_entry_no_sample_no_migration():
    st = dict(STATUS, checkpoints=None, migration={})
    e = vm_entry(st, {"running": True}, None)
    assert e["checkpoints"] is None and e["migration_status"] == "none"


@pytest.mark.parametrize("rep,want", [
    ({"node_attached": "children.1"}, "attached"),
    ({"block_jobs": [{"type": "mirror"}]}, "resyncing"),
    ({"nbd_exports": ["parent0"]}, "exported"),
    ({}, "none"),
])
def test_replication_state(rep, want):
    assert replication_state({"replication": rep}) == want


def test_vm_names(tmp_path):
    for n in ("a", "b"):
        os.makedirs(tmp_path / n)
        (tmp_path / n / "spec.json").write_text("{}")
    os.makedirs(tmp_path / "junk")
    assert records.known_vms(str(tmp_path)) == ["a", "b"]
    assert records.known_vms(str(tmp_path / "missing")) == []


def test_qemu_info_not_installed():
    out = guard.qemu_report("/nonexistent/qemu-system-x86_64", True, [], offline=False)
    assert out["installed"] is False and out["supported"] is False and "not found" in out["reason"]


# -- the vm option of colo.ft.vm ----------------------------------------------------------------


def vm_params(**direct):
    """colo.ft.vm parameters as Ansible hands them over: every option present, defaults filled."""
    params = {k: v.get("default") for k, v in VM_SPEC_ARGS.items()}
    params.update(name="guest0", state_root="/run/colo-ft", vm=None)
    params.update(direct)
    return params


def test_vm_dict_fills_the_options_checked_and_converted():
    p = vm_params(vm={"name": "guest0", "disk": "/d.qcow2", "mac": "52:54:00:13:01:10", "memory_mib": "512",
                      "extra_args": ["-S"]}, bridge="br0")
    apply_vm_dict(p)
    assert p["disk"] == "/d.qcow2" and p["memory_mib"] == 512 and p["extra_args"] == ["-S"]
    assert p["vcpus"] == 1 and p["bridge"] == "br0"  # untouched: default, and the direct placement option
    assert spec_from_params(p).memory_mib == 512


def test_vm_dict_placement_given_directly_wins():
    p = vm_params(vm={"bridge": "br9", "forward_address": "10.0.0.1", "tap": "t0"}, bridge="br0")
    apply_vm_dict(p)
    assert p["bridge"] == "br0" and p["forward_address"] == "10.0.0.1" and p["tap"] == "t0"


@pytest.mark.parametrize("vm,match", [
    ({"name": "other"}, "vm.name 'other' differs from name 'guest0'"),
    ({"disk_source": "/x", "ready_port": 80}, "unknown keys disk_source, ready_port"),
    ({"memory_mib": "lots"}, "vm: .*memory_mib"),
    ({"accel": "xen"}, "vm: .*accel"),
])
def test_vm_dict_bad_input_is_refused(vm, match):
    with pytest.raises(InvalidSpec, match=match):
        apply_vm_dict(vm_params(vm=vm))


def test_vm_dict_absent_changes_nothing():
    p = vm_params(disk="/d.qcow2")
    before = dict(p)
    apply_vm_dict(p)
    assert p == before


def test_guest_and_placement_options_split_the_vm_options():
    assert set(GUEST_ARGS) | set(PLACEMENT_ARGS) == set(VM_SPEC_ARGS)
    assert not set(GUEST_ARGS) & set(PLACEMENT_ARGS) and "memory_mib" in GUEST_ARGS
