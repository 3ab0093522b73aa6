"""colo.ft.vm_problems: the roles ask the runtime what it would refuse in colo_vms, before anything changes."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.filter.vm_problems import FilterModule, vm_problems

ROLE_KEYS = ["disk_source", "ready_host", "ready_port"]
GUEST = {"name": "guest0", "memory_mib": 128, "mac": "52:54:00:13:01:10", "disk": "/var/lib/colo-ft/images/guest0.qcow2",
         "disk_source": "/srv/guest/disk.qcow2", "boot": "kernel", "kernel": "/srv/guest/vmlinux",
         "initrd": "/srv/guest/initrd.img", "append": "console=ttyS0", "accel": "tcg", "nic_model": "virtio-net-pci",
         "ready_host": "10.213.1.100", "ready_port": 7000}


def second(**kw):
    return {**GUEST, "name": "guest1", "mac": "52:54:00:13:01:11", "disk": "/var/lib/colo-ft/images/guest1.qcow2", **kw}


def test_a_good_list_has_no_problem():
    assert vm_problems([GUEST], "qemu", ROLE_KEYS) == []
    assert vm_problems([GUEST, second(port_base=10000)], "qemu", ROLE_KEYS) == []
    assert FilterModule().filters()["vm_problems"] is vm_problems


@pytest.mark.parametrize("change, words", [
    ({"colour": "red"}, ["(guest0) has unknown keys colour", "the roles read disk_source, ready_host, ready_port"]),
    ({"memory": 512}, ["unknown keys memory", "memory_mib"]),
    ({"compare_timeout": 0}, ["compare_timeout must be an integer from 1 to 600000"]),
    ({"expired_scan_cycle": 600001}, ["expired_scan_cycle must be an integer from 1 to 600000"]),
    ({"max_queue_size": 1048577}, ["max_queue_size must be an integer from 1 to 1048576"]),
    ({"checkpoint_delay_ms": 3600001}, ["checkpoint_delay_ms must be an integer from 1 to 3600000"]),
    ({"compare_timeout": "soon"}, ["(guest0): argument 'compare_timeout' is of type str", "int"]),
    ({"boot": "cdrom"}, ["(guest0): value of boot must be one of: kernel, disk, got: cdrom"]),
    ({"port_base": 65533}, ["port_base must be an integer from 1 to 65532"]),
])
def test_what_the_runtime_refuses_in_an_entry(change, words):
    found = vm_problems([dict(GUEST, **change)], "qemu", ROLE_KEYS)
    assert found and all(f.startswith("colo_vms entry 1 (guest0)") for f in found), found
    for w in words:
        assert w in found[0], found


def test_role_keys_are_refused_unless_the_role_reads_them():
    assert "unknown keys disk_source, ready_host, ready_port" in vm_problems([GUEST], "qemu", [])[0]
    xen = dict(GUEST, xen_vdev="hda")
    assert "unknown keys xen_vdev" in vm_problems([xen], "qemu", ROLE_KEYS)[0]
    assert vm_problems([xen], "xen", ROLE_KEYS + ["xen_vdev"]) == []


@pytest.mark.parametrize("other, words", [
    (dict(GUEST), "VM name guest0 is used 2 times"),
    (second(mac=GUEST["mac"].upper(), port_base=10000), "VMs guest0 and guest1 have the same MAC"),
    (second(disk=GUEST["disk"], port_base=10000), "VMs guest0 and guest1 have the same disk"),
    (second(), "VMs guest0 and guest1 both use ports 9003"),
    (second(port_base=9001), "both use ports 9003 (mirror_port of guest0, migration_port of guest1)"),
    (second(port_base=10000, migration_port=9999), "both use port 9999 (nbd_port of guest0, migration_port of guest1)"),
])
def test_clashes_between_entries(other, words):
    found = vm_problems([GUEST, other], "qemu", ROLE_KEYS)
    assert any(words in f for f in found), found


def test_xen_checks_keys_names_macs_and_disks_not_ports():
    assert vm_problems([GUEST, second()], "xen", ROLE_KEYS) == []
    assert any("same MAC" in f for f in vm_problems([GUEST, second(mac=GUEST["mac"])], "xen", ROLE_KEYS))
    assert "unknown keys colour" in vm_problems([dict(GUEST, colour=1)], "xen", ROLE_KEYS)[0]


def test_not_a_list_of_mappings():
    assert vm_problems({"name": "x"}) == ["colo_vms must be a list of VM descriptions, got dict"]
    assert vm_problems(["guest0"]) == ["colo_vms entry 1 must be a mapping of VM options, got 'guest0'"]
    with pytest.raises(AnsibleFilterError):
        vm_problems([], "kvm")
