"""VMSpec validation and the QEMU argv of each role, option by option (docs/qemu-colo.md, "Primary command line", "Secondary command line")."""
from __future__ import annotations

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec
from ansible_collections.colo.ft.plugins.module_utils.colo.argv import qemu_argv
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import primary_chardevs, primary_objects, replication_blockdev, secondary_objects
from ansible_collections.colo.ft.plugins.module_utils.colo.host import tap_plumbing
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import LIVE_SETTINGS, VMSpec

FWD = "10.213.2.11"
CKPT = "10.213.3.12"


def make(**kw) -> VMSpec:
    base = dict(name="guest1", disk="/var/lib/colo/guest1.qcow2", mac="52:54:00:13:01:10",
                kernel="/srv/colo-lab/guest/vmlinux", initrd="/srv/colo-lab/guest/initrd.img",
                append="console=ttyS0 ip=10.213.1.10", bridge="br-client",
                forward_addr=FWD, checkpoint_addr=CKPT)
    base.update(kw)
    return VMSpec(**base)


def opts(argv: list[str], flag: str) -> list[str]:
    """Values of every occurrence of a flag."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def kv(option: str) -> dict[str, str]:
    """'type,a=b,c=d' -> {'': 'type', 'a': 'b', 'c': 'd'} (no ',,' escapes in tests)."""
    out: dict[str, str] = {}
    for part in option.split(","):
        k, sep, v = part.partition("=")
        if sep:
            out[k] = v
        else:
            out[""] = k
    return out


def by_id(argv: list[str], flag: str) -> dict[str, dict[str, str]]:
    return {kv(o)["id"]: kv(o) for o in opts(argv, flag)}


# -- common part --------------------------------------------------------------------

@pytest.mark.parametrize("role", ["plain", "primary", "secondary"])
def test_common_options(role):
    spec = make()
    argv = qemu_argv(spec, role)
    assert argv[0] == "qemu-system-x86_64"
    assert opts(argv, "-name") == ["guest1,debug-threads=on"]
    # The modules' monitor and the agent's.
    assert opts(argv, "-qmp") == ["unix:/run/colo-ft/guest1/qmp.sock,server=on,wait=off",
                                  "unix:/run/colo-ft/guest1/agent.sock,server=on,wait=off"]
    assert opts(argv, "-serial") == ["file:/run/colo-ft/guest1/serial.log"]
    assert opts(argv, "-pidfile") == ["/run/colo-ft/guest1/qemu.pid"]
    assert opts(argv, "-display") == ["none"]
    assert "-nodefaults" in argv
    assert opts(argv, "-accel") == ["tcg"]          # auto means TCG
    assert opts(argv, "-m") == ["256"] and opts(argv, "-smp") == ["1"]
    assert opts(argv, "-kernel") == ["/srv/colo-lab/guest/vmlinux"]
    assert opts(argv, "-initrd") == ["/srv/colo-lab/guest/initrd.img"]
    assert opts(argv, "-append") == ["console=ttyS0 ip=10.213.1.10"]
    netdev = kv(opts(argv, "-netdev")[0])
    assert netdev == {"": "tap", "id": "hn0", "ifname": "colo-guest1", "vhost": "off",
                      "script": "no", "downscript": "no"}
    devices = [kv(d) for d in opts(argv, "-device")]
    nic = next(d for d in devices if d.get("netdev") == "hn0")
    assert nic[""] == "e1000" and nic["mac"] == "52:54:00:13:01:10"
    disk = next(d for d in devices if d.get("drive"))
    assert disk[""] == "virtio-blk-pci" and disk["drive"] == "colo-disk0"
    assert "-daemonize" not in argv and "-S" not in argv


def test_same_guest_hardware_on_both_sides():
    spec = make()

    def hw(argv):
        return (opts(argv, "-device"), opts(argv, "-netdev"), opts(argv, "-m"), opts(argv, "-machine"),
                opts(argv, "-kernel"), opts(argv, "-append"))
    assert hw(qemu_argv(spec, "primary")) == hw(qemu_argv(spec, "secondary"))


def test_accel_kvm_only_when_asked():
    assert opts(qemu_argv(make(accel="kvm"), "plain"), "-accel") == ["kvm"]
    assert opts(qemu_argv(make(accel="tcg"), "plain"), "-accel") == ["tcg"]


def test_daemonize_keeps_stderr_in_log():
    argv = qemu_argv(make(), "plain", daemonize=True, paused=True)
    assert "-daemonize" in argv and "-S" in argv
    assert opts(argv, "-D") == ["/run/colo-ft/guest1/qemu.log"]


def test_extra_args_last():
    argv = qemu_argv(make(extra_args=["-trace", "colo_vm_state_change"]), "primary")
    assert argv[-2:] == ["-trace", "colo_vm_state_change"]


def test_disk_boot_has_no_kernel():
    argv = qemu_argv(make(boot="disk", kernel=None, initrd=None, append=""), "plain")
    assert "-kernel" not in argv and "-append" not in argv
    disk = [kv(d) for d in opts(argv, "-device") if "drive=" in d][0]
    assert disk["bootindex"] == "1"


# -- roles ---------------------------------------------------------------------------

def test_plain_role_plain_disk():
    argv = qemu_argv(make(), "plain")
    assert opts(argv, "-chardev") == [] and opts(argv, "-object") == []
    assert [kv(d) for d in opts(argv, "-drive")] == [
        {"if": "none", "id": "colo-disk0", "driver": "qcow2", "file.filename": "/var/lib/colo/guest1.qcow2"}]
    assert "-incoming" not in argv


def test_primary_chardevs():
    ch = by_id(qemu_argv(make(), "primary"), "-chardev")
    assert set(ch) == {"mirror0", "compare1", "compare0", "compare0-0", "compare_out", "compare_out0"}
    assert ch["mirror0"] == {"": "socket", "id": "mirror0", "host": FWD, "port": "9003", "server": "on", "wait": "off"}
    assert ch["compare1"] == {"": "socket", "id": "compare1", "host": FWD, "port": "9004", "server": "on", "wait": "off"}
    # loopback pairs: a server and a client on the same unix socket
    assert ch["compare0"]["server"] == "on" and "server" not in ch["compare0-0"]
    assert ch["compare0"]["path"] == ch["compare0-0"]["path"] == "/run/colo-ft/guest1/qemu/compare0.sock"
    assert ch["compare_out"]["server"] == "on" and "server" not in ch["compare_out0"]
    assert ch["compare_out"]["path"] == ch["compare_out0"]["path"] == "/run/colo-ft/guest1/qemu/compare_out.sock"


def test_primary_objects():
    argv = qemu_argv(make(), "primary")
    objs = opts(argv, "-object")
    assert [kv(o)["id"] for o in objs] == ["m0", "redire0", "redire1", "iothread1", "comp0"]
    o = by_id(argv, "-object")
    assert o["m0"] == {"": "filter-mirror", "id": "m0", "netdev": "hn0", "queue": "tx", "outdev": "mirror0"}
    assert o["redire0"] == {"": "filter-redirector", "id": "redire0", "netdev": "hn0", "queue": "rx",
                            "indev": "compare_out"}
    assert o["redire1"] == {"": "filter-redirector", "id": "redire1", "netdev": "hn0", "queue": "rx",
                            "outdev": "compare0"}
    assert o["iothread1"] == {"": "iothread", "id": "iothread1"}
    assert o["comp0"] == {"": "colo-compare", "id": "comp0", "primary_in": "compare0-0", "secondary_in": "compare1",
                          "outdev": "compare_out0", "iothread": "iothread1"}


def test_primary_quorum_drive():
    drives = [kv(d) for d in opts(qemu_argv(make(), "primary"), "-drive")]
    assert drives == [{"if": "none", "id": "colo-disk0", "driver": "quorum", "read-pattern": "fifo",
                       "vote-threshold": "1", "children.0.file.filename": "/var/lib/colo/guest1.qcow2",
                       "children.0.driver": "qcow2"}]
    assert "-incoming" not in qemu_argv(make(), "primary")


def test_secondary_chardevs_and_filters():
    argv = qemu_argv(make(), "secondary")
    ch = by_id(argv, "-chardev")
    assert ch == {
        "red0": {"": "socket", "id": "red0", "host": FWD, "port": "9003", "reconnect-ms": "1000"},
        "red1": {"": "socket", "id": "red1", "host": FWD, "port": "9004", "reconnect-ms": "1000"},
    }
    assert [kv(o) for o in opts(argv, "-object")] == [
        {"": "filter-redirector", "id": "f1", "netdev": "hn0", "queue": "tx", "indev": "red0"},
        {"": "filter-redirector", "id": "f2", "netdev": "hn0", "queue": "rx", "outdev": "red1"},
        {"": "filter-rewriter", "id": "rew0", "netdev": "hn0", "queue": "all"},
    ]


def test_secondary_drives():
    argv = qemu_argv(make(), "secondary")
    d = by_id(argv, "-drive")
    assert list(d) == ["parent0", "childs0", "colo-disk0"]
    assert d["parent0"] == {"if": "none", "id": "parent0", "driver": "qcow2",
                            "file.filename": "/var/lib/colo/guest1.qcow2"}
    assert d["childs0"] == {"if": "none", "id": "childs0", "driver": "replication", "mode": "secondary",
                            "top-id": "colo-disk0", "file.driver": "qcow2",
                            "file.file.filename": "/run/colo-ft/guest1/active.qcow2",
                            "file.backing.driver": "qcow2",
                            "file.backing.file.filename": "/run/colo-ft/guest1/hidden.qcow2",
                            "file.backing.backing": "parent0"}
    assert d["colo-disk0"] == {"if": "none", "id": "colo-disk0", "driver": "quorum", "read-pattern": "fifo",
                               "vote-threshold": "1", "children.0": "childs0"}
    assert opts(argv, "-incoming") == ["defer"]


def test_virtio_net_needs_vnet_hdr_everywhere():
    spec = make(nic_model="virtio-net-pci")
    for role in ("primary", "secondary"):
        argv = qemu_argv(spec, role)
        assert kv(opts(argv, "-netdev")[0])["vnet_hdr"] == "on"
        for o in opts(argv, "-object"):
            if not o.startswith("iothread"):
                assert kv(o)["vnet_hdr_support"] == "on", o
    assert all("vnet_hdr" not in o for o in opts(qemu_argv(make(), "primary"), "-object"))


def test_commas_in_paths_are_escaped():
    argv = qemu_argv(make(disk="/srv/a,b.qcow2"), "plain")
    assert "file.filename=/srv/a,,b.qcow2" in opts(argv, "-drive")[0]


def test_port_base_moves_all_ports():
    spec = make(port_base=9100)
    assert (spec.mirror_port, spec.compare_port, spec.migration_port, spec.nbd_port) == (9100, 9101, 9102, 9103)
    ch = by_id(qemu_argv(spec, "secondary"), "-chardev")
    assert ch["red0"]["port"] == "9100" and ch["red1"]["port"] == "9101"
    spec = make(port_base=9100, nbd_port=9200)
    assert spec.nbd_port == 9200


def test_qmp_forms_match_command_line():
    spec = make()
    ch = {c.id: c.qmp() for c in primary_chardevs(spec)}
    assert ch["mirror0"] == {"id": "mirror0", "backend": {"type": "socket", "data": {
        "addr": {"type": "inet", "data": {"host": FWD, "port": "9003"}}, "server": True, "wait": False}}}
    assert ch["compare0-0"]["backend"]["data"] == {
        "addr": {"type": "unix", "data": {"path": "/run/colo-ft/guest1/qemu/compare0.sock"}}, "server": False}
    objs = {o.id: o.qmp() for o in primary_objects(spec)}
    assert objs["comp0"] == {"qom-type": "colo-compare", "id": "comp0", "primary_in": "compare0-0",
                             "secondary_in": "compare1", "outdev": "compare_out0", "iothread": "iothread1"}
    assert primary_objects(spec)[0].qmp(insert="before", position="id=rew0")["position"] == "id=rew0"
    assert [o.id for o in secondary_objects(spec)] == ["f1", "f2", "rew0"]
    assert replication_blockdev(spec) == {
        "driver": "replication", "mode": "primary", "node-name": "replication0",
        "file": {"driver": "nbd", "server": {"type": "inet", "host": CKPT, "port": "9999"}, "export": "parent0",
                 "node-name": "replication0-nbd"}}


def test_tap_plumbing():
    plan = tap_plumbing(make())
    assert plan.tap == "colo-guest1"
    assert plan.commands == (("ip", "tuntap", "add", "dev", "colo-guest1", "mode", "tap"),
                             ("ip", "link", "set", "dev", "colo-guest1", "master", "br-client"),
                             ("ip", "link", "set", "dev", "colo-guest1", "up"))
    assert tap_plumbing(make(bridge=None)).commands[-1] == ("ip", "link", "set", "dev", "colo-guest1", "up")


def test_tap_name_fits_ifnamsiz_and_is_distinct():
    a = make(name="a-rather-long-vm-name").tap_name
    b = make(name="a-rather-long-vm-other").tap_name
    assert len(a) <= 15 and len(b) <= 15 and a != b
    assert make(tap="mytap0").tap_name == "mytap0"


# -- validation ------------------------------------------------------------------------

@pytest.mark.parametrize("kw,fragment", [
    ({"mac": "52:54:00:13:01"}, "mac '52:54:00:13:01' must look like"),
    ({"mac": "53:54:00:13:01:10"}, "multicast"),
    ({"memory_mib": 0}, "memory_mib must be a positive integer"),
    ({"vcpus": 0}, "vcpus must be an integer from 1 to 255"),
    ({"name": "bad name"}, "name 'bad name' must start with a letter"),
    ({"name": "../x"}, "must start with a letter"),
    ({"disk": "relative.qcow2"}, "disk 'relative.qcow2' must be an absolute path"),
    ({"disk_format": "vmdk"}, "disk_format must be qcow2 or raw"),
    ({"kernel": None}, "kernel is required (boot: kernel needs a kernel image)"),
    ({"boot": "disk"}, "kernel/initrd are set but boot is 'disk'"),
    ({"boot": "pxe"}, "boot must be 'kernel' or 'disk'"),
    ({"accel": "hvf"}, "accel must be auto, kvm or tcg"),
    ({"mirror_port": 0}, "mirror_port must be a port number from 1 to 65535"),
    ({"nbd_port": 70000}, "nbd_port must be a port number"),
    ({"nbd_port": 9998}, "nbd_port and migration_port are both 9998"),
    ({"bridge": "a-bridge-name-too-long"}, "bridge 'a-bridge-name-too-long' is not a valid interface name"),
    ({"forward_addr": "not an address"}, "forward_addr 'not an address' is not an IP address"),
    ({"active_disk": "/x.qcow2", "hidden_disk": "/x.qcow2"}, "must be different files"),
    ({"state_root": "run"}, "state_root 'run' must be an absolute path"),
    ({"extra_args": "-S"}, "extra_args must be a list of strings"),
])
def test_validation_messages(kw, fragment):
    with pytest.raises(InvalidSpec) as exc:
        make(**kw).validate()
    assert fragment in str(exc.value)
    assert str(exc.value).startswith("invalid VM description")


@pytest.mark.parametrize("kw,fragment", [
    ({"checkpoint_delay_ms": 0}, "checkpoint_delay_ms must be an integer from 1 to 3600000 (ms), got 0"),
    ({"checkpoint_delay_ms": 3600001}, "checkpoint_delay_ms must be an integer from 1 to 3600000"),
    ({"checkpoint_delay_ms": None}, "checkpoint_delay_ms must be an integer from 1 to 3600000 (ms), got None"),
    ({"reconnect_ms": 0}, "reconnect_ms must be an integer from 1 to 60000 (ms), got 0"),
    ({"reconnect_ms": 60001}, "reconnect_ms must be an integer from 1 to 60000"),
    ({"compare_timeout": 0}, "compare_timeout must be an integer from 1 to 600000 (ms), got 0"),
    ({"compare_timeout": 600001}, "compare_timeout must be an integer from 1 to 600000"),
    ({"expired_scan_cycle": -5}, "expired_scan_cycle must be an integer from 1 to 600000 (ms), got -5"),
    ({"max_queue_size": 0}, "max_queue_size must be an integer from 1 to 1048576 (packets), got 0"),
    ({"max_queue_size": 1048577}, "max_queue_size must be an integer from 1 to 1048576"),
    ({"max_queue_size": True}, "max_queue_size must be an integer"),
])
def test_colo_setting_ranges(kw, fragment):
    with pytest.raises(InvalidSpec) as exc:
        make(**kw).validate()
    assert fragment in str(exc.value)


def test_colo_settings_defaults_and_bounds():
    spec = make()
    assert (spec.checkpoint_delay_ms, spec.reconnect_ms) == (2000, 1000)
    assert (spec.compare_timeout, spec.expired_scan_cycle, spec.max_queue_size) == (None, None, None)
    assert spec.problems() == []
    assert make(checkpoint_delay_ms=1, reconnect_ms=60000, compare_timeout=600000, expired_scan_cycle=1,
                max_queue_size=1048576).problems() == []
    assert LIVE_SETTINGS == ("checkpoint_delay_ms",)


def test_colo_settings_from_dict_and_argv():
    data = dict(make().to_dict(), compare_timeout="500", max_queue_size=2048)
    spec = VMSpec.from_dict(data)
    assert spec.compare_timeout == 500 and spec.max_queue_size == 2048 and spec.expired_scan_cycle is None
    comp = by_id(qemu_argv(spec, "primary"), "-object")["comp0"]
    assert comp["compare_timeout"] == "500" and comp["max_queue_size"] == "2048"
    assert "expired_scan_cycle" not in comp
    assert "compare_timeout" not in by_id(qemu_argv(make(), "primary"), "-object")["comp0"]
    with pytest.raises(InvalidSpec, match="compare_timeout must be an integer"):
        VMSpec.from_dict(dict(make().to_dict(), compare_timeout="soon"))


def test_validation_lists_every_problem():
    with pytest.raises(InvalidSpec) as exc:
        make(memory_mib=-1, mac="xx").validate()
    assert "memory_mib" in str(exc.value) and "mac" in str(exc.value)


def test_roles_need_forward_addr():
    spec = make(forward_addr=None)
    qemu_argv(spec, "plain")
    for role in ("primary", "secondary"):
        with pytest.raises(InvalidSpec, match="forward_addr"):
            qemu_argv(spec, role)
    with pytest.raises(InvalidSpec, match="role must be one of"):
        qemu_argv(make(), "tertiary")


def test_replication_blockdev_needs_checkpoint_addr():
    with pytest.raises(InvalidSpec, match="checkpoint_addr"):
        replication_blockdev(make(checkpoint_addr=None))


def test_dict_round_trip():
    spec = make(port_base=9100, extra_args=["-trace", "x"])
    again = VMSpec.from_dict(spec.to_dict())
    assert again == spec
    assert qemu_argv(again, "primary") == qemu_argv(spec, "primary")


def test_from_dict_coerces_and_rejects():
    d = make().to_dict()
    d["memory_mib"] = "512"
    assert VMSpec.from_dict(d).memory_mib == 512
    d["memory_mib"] = "lots"
    with pytest.raises(InvalidSpec, match="memory_mib must be an integer"):
        VMSpec.from_dict(d)
    with pytest.raises(InvalidSpec, match="unknown VM field"):
        VMSpec.from_dict({**make().to_dict(), "colour": "blue"})
    with pytest.raises(InvalidSpec, match="lacks required field"):
        VMSpec.from_dict({"name": "x"})
    with pytest.raises(InvalidSpec, match="must be a mapping"):
        VMSpec.from_dict(["x"])  # type: ignore[arg-type]


def test_unit_name():
    assert make().unit_name == "colo-ft-guest1"
    a, b = make(state_root="/tmp/a").unit_name, make(state_root="/tmp/b").unit_name
    assert a.startswith("colo-ft-guest1-") and a != b


def test_primary_without_proxy_keeps_chardevs_iothread_and_quorum():
    full = qemu_argv(make(), "primary")
    bare = qemu_argv(make(), "primary", proxy=False)
    assert [kv(o)["id"] for o in opts(bare, "-object")] == ["iothread1"]
    assert opts(bare, "-chardev") == opts(full, "-chardev")
    assert opts(bare, "-drive") == opts(full, "-drive")
    assert qemu_argv(make(), "secondary", proxy=False) == qemu_argv(make(), "secondary")


def test_clashes_between_vms():
    from ansible_collections.colo.ft.plugins.module_utils.colo.vm import clashes
    a = make(name="a", mac="52:54:00:00:00:01", disk="/srv/a.qcow2", port_base=9100)
    assert clashes([a, make(name="b", mac="52:54:00:00:00:02", disk="/srv/b.qcow2", port_base=9104)]) == []
    # overlapping port ranges: b's mirror and compare are a's migration and NBD ports
    found = clashes([a, make(name="b", mac="52:54:00:00:00:02", disk="/srv/b.qcow2", port_base=9102)])
    assert len(found) == 1 and "ports 9102 (migration_port of a, mirror_port of b), 9103" in found[0], found
    assert "port_base" in found[0]
    # an explicit port inside another VM's range
    found = clashes([a, make(name="b", mac="52:54:00:00:00:02", disk="/srv/b.qcow2", port_base=9200, nbd_port=9101)])
    assert len(found) == 1 and "port 9101 (compare_port of a, nbd_port of b)" in found[0], found
    # same name, MAC (any case), disk (same file written another way), tap
    assert clashes([a, a]) == ["VM name a is used 2 times: give each VM its own name"]
    found = clashes([a, make(name="b", mac="52:54:00:00:00:01".upper(), disk="/srv//a.qcow2", port_base=9200)])
    assert len(found) == 2 and any("same MAC 52:54:00:00:00:01" in f for f in found) and any("same disk /srv/a.qcow2" in f for f in found)
    found = clashes([a, make(name="b", mac="52:54:00:00:00:02", disk="/srv/b.qcow2", port_base=9200, tap="colo-a")])
    assert found == ["VMs a and b have the same tap colo-a: set tap, or pick another name"]
    # without host resources (the Xen backend): ports and taps are not QEMU COLO's
    two = [make(name="a", mac="52:54:00:00:00:01", disk="/a"), make(name="b", mac="52:54:00:00:00:02", disk="/b")]
    assert clashes(two, host_resources=False) == [] and len(clashes(two)) == 1


# -- TLS --------------------------------------------------------------------------------------------


def test_tls_credentials_on_both_roles_and_every_tcp_chardev():
    for role in ("primary", "secondary"):
        argv = qemu_argv(make(tls_dir="/etc/colo-ft/tls"), role)
        objs = [o for o in opts(argv, "-object") if o.startswith("tls-creds-x509")]
        assert objs == ["tls-creds-x509,id=colo-tls-server,endpoint=server,dir=/etc/colo-ft/tls,verify-peer=on",
                        "tls-creds-x509,id=colo-tls-client,endpoint=client,dir=/etc/colo-ft/tls"]
        tcp = [c for c in opts(argv, "-chardev") if "host=" in c]
        assert tcp and all("tls-creds=" in c for c in tcp)
        # Objects come first: QEMU creates tls-creds before the chardevs that name them.
        assert argv.index(objs[0]) < argv.index("-chardev")
    assert not [c for c in opts(qemu_argv(make(tls_dir="/t"), "secondary"), "-chardev") if "colo-tls-server" in c]
    unix = [c for c in primary_chardevs(make(tls_dir="/t")) if c.path]
    assert unix and not any(c.tls_creds for c in unix)  # loopback pairs stay in the state dir


def test_no_tls_without_tls_dir():
    argv = qemu_argv(make(), "primary")
    assert not [o for o in opts(argv, "-object") if o.startswith("tls-creds")]
    assert not [c for c in opts(argv, "-chardev") if "tls-creds" in c]
    assert "tls-creds" not in replication_blockdev(make())["file"]
    assert not [o for o in opts(qemu_argv(make(tls_dir="/t"), "plain"), "-object") if o.startswith("tls")]


def test_tls_replication_client_and_chardev_qmp():
    node = replication_blockdev(make(tls_dir="/t"))
    assert node["file"]["tls-creds"] == "colo-tls-client"
    mirror = next(c for c in primary_chardevs(make(tls_dir="/t")) if c.id == "mirror0")
    assert mirror.qmp()["backend"]["data"]["tls-creds"] == "colo-tls-server"


def test_tls_dir_must_be_absolute():
    with pytest.raises(InvalidSpec, match="tls_dir"):
        make(tls_dir="etc/tls").validate("primary")
