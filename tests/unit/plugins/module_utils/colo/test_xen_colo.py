"""The Xen backend's command sequences (pure: no hypervisor here)."""
from __future__ import annotations

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import xen_colo as xc
from ansible_collections.colo.ft.plugins.module_utils.colo.xen_proxy import KernelState

RAMFS = "/mnt/ramfs"
DISK = "/home/changlox/suse-64hvm.img"
GiB20 = 20 * 1024 ** 3


def vm(name="hvm_nopv_colo", config_dir="/etc/xen/colo-ft"):
    return xc.vm_from_entry({"name": name, "disk": DISK if name == "hvm_nopv_colo" else f"/srv/{name}.img",
                             "mac": "00:16:4f:00:00:11"}, RAMFS, config_dir)


def cmds(plan):
    return [str(c) for c in plan]


def test_secondary_from_scratch_follows_the_seed():
    st = xc.HostState(kernel=KernelState("4.0.0-colo"), virtual_sizes={DISK: GiB20})
    assert cmds(xc.plan_secondary([vm()], st, RAMFS)) == [
        "mount -t ramfs -o size=2048m,mode=0700 none /mnt/ramfs",
        f"qemu-img create -q -f qcow2 /mnt/ramfs/hvm_nopv_colo-active_disk.img {GiB20}",
        f"qemu-img create -q -f qcow2 /mnt/ramfs/hvm_nopv_colo-hidden_disk.img {GiB20}",
        "modprobe nf_conntrack",
        "modprobe nf_conntrack_ipv4",
        "modprobe nf_nat",
        "modprobe xt_SECCOLO",
    ]


def test_secondary_in_place_plans_nothing():
    v = vm()
    st = xc.HostState(kernel=KernelState("4.0.0", loaded=frozenset({"nf_conntrack", "nf_conntrack_ipv4", "nf_nat", "xt_SECCOLO"})),
                      mounts=(("/mnt/ramfs/", "ramfs"),), existing=frozenset({v.active_disk, v.hidden_disk}),
                      virtual_sizes={DISK: GiB20})
    assert xc.plan_secondary([v], st, RAMFS) == []


def test_secondary_overlays_hidden_by_a_fresh_ramfs_are_recreated():
    v = vm()
    st = xc.HostState(kernel=KernelState("6.1.0", builtin=frozenset({"nf_conntrack", "nf_nat"}), loaded=frozenset({"xt_SECCOLO"})),
                      existing=frozenset({v.active_disk, v.hidden_disk}), virtual_sizes={DISK: 1 << 30})
    assert [c.argv[0] for c in xc.plan_secondary([v], st, RAMFS)] == ["mount", "qemu-img", "qemu-img"]


def test_secondary_needs_the_disk_size():
    with pytest.raises(xc.XenColoError, match="virtual size of /home/changlox/suse-64hvm.img"):
        xc.plan_secondary([vm()], xc.HostState(kernel=KernelState("6.1.0")), RAMFS)


def test_primary_from_scratch_follows_the_seed():
    st = xc.HostState(kernel=KernelState("4.0.0"), existing=frozenset({"/etc/xen/colo-ft/hvm_nopv_colo.cfg"}))
    assert cmds(xc.plan_primary([vm()], st, "eth1", "192.168.2.88", log_dir="/var/lib/colo-ft")) == [
        "modprobe nf_conntrack",
        "modprobe nf_conntrack_ipv4",
        "modprobe nf_nat",
        "modprobe xt_PMYCOLO sec_dev=eth1",
        "xl create -p /etc/xen/colo-ft/hvm_nopv_colo.cfg",
        "setsid -f /bin/sh -c 'exec \"$0\" \"$@\" >>/var/lib/colo-ft/xen-remus-hvm_nopv_colo.log 2>&1' "
        "xl remus -c -u hvm_nopv_colo 192.168.2.88",
    ]


def test_primary_under_systemd_and_idempotent():
    kernel = KernelState("6.1.0", loaded=frozenset({"nf_conntrack", "nf_nat", "xt_PMYCOLO"}), params={"xt_PMYCOLO": {"sec_dev": "eth1"}})
    a, b = vm("a"), vm("b")
    st = xc.HostState(kernel=kernel, existing=frozenset({a.config, b.config}), domains={"Domain-0": "r-----", "a": "--p---"},
                      remus={"b": (42,)}, systemd=True)
    # a exists (paused, no remus): only remus; b runs COLO already: nothing.
    assert cmds(xc.plan_primary([a, b], st, "eth1", "10.0.3.2")) == [
        "systemd-run --unit=colo-ft-xen-a --collect --quiet -- xl remus -c -u a 10.0.3.2"]
    st = xc.HostState(kernel=kernel, existing=frozenset({a.config}), domains={"a": "r-----"}, remus={"a": (7,)})
    assert xc.plan_primary([a], st, "eth1", "10.0.3.2") == []
    # Another forward NIC: xt_PMYCOLO is reloaded (sec_dev is read at load time).
    assert cmds(xc.plan_primary([a], st, "eth3", "10.0.3.2")) == ["modprobe -r xt_PMYCOLO", "modprobe xt_PMYCOLO sec_dev=eth3"]


def test_primary_refusals():
    st = xc.HostState(kernel=KernelState("6.1.0"))
    with pytest.raises(xc.XenColoError, match="xl config /etc/xen/colo-ft/hvm_nopv_colo.cfg does not exist"):
        xc.plan_primary([vm()], st, "eth1", "192.168.2.88")
    with pytest.raises(xc.XenColoError, match="forward NIC"):
        xc.plan_primary([vm()], st, "", "192.168.2.88")
    bad = xc.vm_from_entry({"name": "x", "disk": "/srv/a,b.img"}, RAMFS, "/etc/xen/colo-ft")
    with pytest.raises(xc.XenColoError, match="cannot go into an xl disk spec"):
        xc.plan_primary([bad], st, "eth1", "192.168.2.88")


def test_failover_on_the_secondary():
    st = xc.HostState(kernel=KernelState("6.1.0"), domains={"hvm_nopv_colo--incoming": "--p---"})
    assert cmds(xc.plan_failover("primary", [vm()], st)) == [
        "xl rename hvm_nopv_colo--incoming hvm_nopv_colo", "xl unpause hvm_nopv_colo"]
    # Done already (renamed and running): nothing.
    st = xc.HostState(kernel=KernelState("6.1.0"), domains={"hvm_nopv_colo": "-b----"})
    assert xc.plan_failover("primary", [vm()], st) == []
    with pytest.raises(xc.XenColoError, match="nothing to take over"):
        xc.plan_failover("primary", [vm()], xc.HostState(kernel=KernelState("6.1.0")))


def test_failover_on_the_primary():
    st = xc.HostState(kernel=KernelState("6.1.0"), domains={"hvm_nopv_colo": "--p---"}, remus={"hvm_nopv_colo": (100, 101)})
    assert cmds(xc.plan_failover("secondary", [vm()], st)) == [
        "kill -TERM 100", "kill -TERM 101", "xl unpause hvm_nopv_colo"]
    st = xc.HostState(kernel=KernelState("6.1.0"), domains={"hvm_nopv_colo": "r-----"})
    assert xc.plan_failover("secondary", [vm()], st) == []


def test_failover_auto_reads_the_side_from_the_domains():
    kernel = KernelState("6.1.0")
    secondary = xc.HostState(kernel=kernel, domains={"hvm_nopv_colo--incoming": "--p---"})
    assert xc.plan_failover("auto", [vm()], secondary) == xc.plan_failover("primary", [vm()], secondary)
    primary = xc.HostState(kernel=kernel, domains={"hvm_nopv_colo": "--p---"}, remus={"hvm_nopv_colo": (100,)})
    assert cmds(xc.plan_failover("auto", [vm()], primary)) == ["kill -TERM 100", "xl unpause hvm_nopv_colo"]
    with pytest.raises(xc.XenColoError, match="no domain hvm_nopv_colo or hvm_nopv_colo--incoming"):
        xc.plan_failover("auto", [vm()], xc.HostState(kernel=kernel))


def test_stop_fences_every_domain_of_the_guest():
    st = xc.HostState(kernel=KernelState("6.1.0"), domains={"hvm_nopv_colo": "r-----", "other": "r-----"},
                      remus={"hvm_nopv_colo": (100,)})
    assert cmds(xc.plan_stop([vm()], st)) == ["kill -TERM 100", "xl destroy hvm_nopv_colo"]
    st = xc.HostState(kernel=KernelState("6.1.0"), domains={"hvm_nopv_colo--incoming": "--p---"})
    assert cmds(xc.plan_stop([vm()], st)) == ["xl destroy hvm_nopv_colo--incoming"]
    assert xc.plan_stop([vm()], xc.HostState(kernel=KernelState("6.1.0"), domains={"other": "r-----"})) == []


def test_parsers():
    text = ("Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
            "Domain-0                                     0  1024     2     r-----      12.3\n"
            "hvm_nopv_colo--incoming                      3  1024     2     --p---       0.0\n")
    assert xc.parse_xl_list(text) == {"Domain-0": "r-----", "hvm_nopv_colo--incoming": "--p---"}
    assert xc.remus_processes({9: ["/usr/sbin/xl", "remus", "-c", "-u", "web0", "10.0.0.2"], 10: ["xl", "list"],
                               11: ["bash"]}) == {"web0": (9,)}
    assert xc.vm_from_entry({"name": "w", "disk": "/d.img", "xen_active_disk": "/r/a.img"}, "/r").hidden_disk == "/r/w-hidden_disk.img"
