"""Bad input is refused before anything changes, with a message a person understands."""

from __future__ import annotations

import json
import subprocess

import pytest
from colo_lab.config import HOSTS_BY_NAME
from colo_lab.inventory import INVENTORY
from colo_lab.testing import ansible, on_host, recap, run_module, vm_info

A, B = HOSTS_BY_NAME["colo-a"], HOSTS_BY_NAME["colo-b"]


def adhoc(host: str, module: str, args: dict) -> dict:
    """One module on one host: its result, with failed=True when it failed."""
    rc, results = run_module(host, module, args)
    return dict(results[host], failed=rc != 0)


def vm_args(guest: dict, **overrides) -> dict:
    """colo.ft.vm options for the lab's guest (without the keys only the roles use), changed by overrides."""
    args = {k: v for k, v in guest.items() if k not in ("disk_source", "ready_host", "ready_port")}
    return dict(args, **overrides)


def no_vm_dir(host: str, name: str) -> bool:
    """Nothing was started or written for a VM of that name."""
    return on_host(host, f"test -e /run/colo-ft/{name}", check=False).returncode != 0


@pytest.fixture(scope="module")
def guest(lab) -> dict:
    return json.loads(INVENTORY.read_text())["all"]["vars"]["colo_vms"][0]


def second(guest: dict, **overrides) -> dict:
    """Another VM beside the lab's guest: its own name, MAC and disk, and ports of its own."""
    return {**guest, "name": "guest1", "mac": "52:54:00:13:01:99", "disk": "/var/lib/colo-ft/images/guest1.qcow2",
            "port_base": 9100, **overrides}


def site_refuses(tmp_path, words: list[str], colo_vms: list | None = None, hosts: dict | None = None,
                 *extra: str) -> str:
    """site.yml with colo_vms (and per-host variables) replaced stops in colo_host's validation, on both hosts
    (any_errors_fatal), saying each of words, before anything changed. Returns its output."""
    data: dict = {"all": {"vars": {}, "hosts": hosts or {}}}
    if colo_vms is not None:
        data["all"]["vars"]["colo_vms"] = colo_vms
    inventory = tmp_path / "bad.yml"
    inventory.write_text(json.dumps(data))
    result = ansible("ansible-playbook", "-i", str(inventory), "playbooks/site.yml", *extra, check=False)
    assert result.returncode != 0
    for w in words:
        assert w in result.stdout, result.stdout[-4000:]
    assert "TASK [colo.ft.colo_secondary" not in result.stdout and "TASK [colo.ft.colo_primary" not in result.stdout
    counts = recap(result.stdout)
    assert counts["colo-a"]["changed"] == 0 and counts["colo-b"]["changed"] == 0, counts
    return result.stdout


def test_site_refuses_vm_descriptions_that_differ_between_the_hosts(lab, guest, tmp_path):
    other = dict(guest, memory_mib=guest["memory_mib"] * 2)
    extra = tmp_path / "differ.yml"
    extra.write_text(json.dumps({"all": {"hosts": {"colo-b": {"colo_vms": [other]}}}}))
    before = vm_info()
    result = ansible("ansible-playbook", "-i", str(extra), "playbooks/site.yml", check=False)
    assert result.returncode != 0
    assert "colo_vms on colo-b differs from colo_vms on colo-a" in result.stdout
    counts = recap(result.stdout)
    assert counts["colo-a"]["changed"] == 0 and counts["colo-b"]["changed"] == 0
    assert vm_info() == before


@pytest.mark.parametrize("address", ["10.213.2.300", "10.213.2.0/24", "colo-b"])
def test_site_refuses_a_bad_link_address(lab, address):
    result = ansible("ansible-playbook", "playbooks/site.yml", "-e", f"colo_forward_address={address}", check=False)
    assert result.returncode != 0
    assert "must be two different IPv4 host addresses" in result.stdout
    assert all(c["changed"] == 0 for c in recap(result.stdout).values())


def test_site_refuses_a_bad_mac(lab, guest, tmp_path):
    extra = tmp_path / "mac.yml"
    extra.write_text(json.dumps({"all": {"vars": {"colo_vms": [dict(guest, mac="01:00:5e:00:00:01")]}}}))
    result = ansible("ansible-playbook", "-i", str(extra), "playbooks/site.yml", check=False)
    assert result.returncode != 0 and "unicast MAC" in result.stdout
    assert all(c["changed"] == 0 for c in recap(result.stdout).values())


def test_vm_refuses_a_missing_image(lab, guest):
    out = adhoc("colo-a", "colo.ft.vm", vm_args(guest, name="badimg", disk="/var/lib/colo-ft/images/nope.qcow2"))
    assert out.get("failed") and "/var/lib/colo-ft/images/nope.qcow2" in out["msg"]
    assert no_vm_dir("colo-a", "badimg")


def test_vm_lists_every_problem_of_a_bad_description(lab, guest):
    bad = vm_args(guest, name="badspec", mac="zz:zz", memory_mib=0, role="primary", forward_address=A.address("eth1"),
                  mirror_port=70000)
    out = adhoc("colo-a", "colo.ft.vm", bad)
    assert out.get("failed")
    for words in ("mac", "memory_mib", "mirror_port"):
        assert words in out["msg"], out["msg"]
    assert no_vm_dir("colo-a", "badspec")


def test_vm_reports_a_port_in_use(lab, guest):
    # sshd listens on port 22 of every address: a secondary cannot take it for its migration port.
    # (colo-a has QEMU: test_guest_unprotected ran colo_host there.)
    on_host("colo-a", "cp -n /srv/colo-lab/guest/disk.qcow2 /tmp/portcheck.qcow2")
    clash = vm_args(guest, name="portuse", disk="/tmp/portcheck.qcow2", role="secondary", bridge="br1",
                    forward_address=B.address("eth1"), checkpoint_address=A.address("eth2"), migration_port=22)
    out = adhoc("colo-a", "colo.ft.vm", clash)
    assert out.get("failed") and "port 22" in out["msg"] and "in use" in out["msg"], out["msg"]
    assert no_vm_dir("colo-a", "portuse")


def test_guard_refuses_a_broken_qemu_with_advice():
    """The machine's own QEMU (Debian 12: 7.2) is one of the versions COLO fails on."""
    version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True).stdout
    if " 11." in version.splitlines()[0]:
        pytest.fail(f"this test needs a QEMU the guard refuses; the machine has {version.splitlines()[0]}")
    info = run_module("localhost", "colo.ft.info")[1]["localhost"]
    assert info["qemu"]["supported"] is False
    assert "11.1" in info["qemu"]["reason"] and "trixie-backports" in info["qemu"]["reason"], info["qemu"]["reason"]


def test_site_refuses_duplicate_vm_names(lab, guest, tmp_path):
    site_refuses(tmp_path, ["VM name guest0 is used 2 times: give each VM its own name"],
                 [guest, dict(second(guest), name=guest["name"])])


def test_site_refuses_duplicate_macs(lab, guest, tmp_path):
    site_refuses(tmp_path, ["VMs guest0 and guest1 have the same MAC", "give each VM its own MAC"],
                 [guest, second(guest, mac=guest["mac"].upper())])


def test_site_refuses_two_vms_on_one_disk(lab, guest, tmp_path):
    site_refuses(tmp_path, ["VMs guest0 and guest1 have the same disk"], [guest, second(guest, disk=guest["disk"])])


@pytest.mark.parametrize("ports, words", [
    ({}, "both use ports 9003 (mirror_port of guest0, mirror_port of guest1)"),  # no port_base: the defaults
    ({"port_base": 9001}, "9003 (mirror_port of guest0, migration_port of guest1)"),  # ranges overlap
    ({"nbd_port": 9004}, "port 9004 (compare_port of guest0, nbd_port of guest1)"),  # an explicit port
])
def test_site_refuses_port_clashes_between_vms(lab, guest, tmp_path, ports, words):
    other = second(guest, **ports)
    if not ports:
        del other["port_base"]
    site_refuses(tmp_path, [words, "give each VM its own port_base"], [guest, other])


@pytest.mark.parametrize("key", ["colour", "memory", "xen_vdev"])
def test_site_refuses_an_unknown_key_in_a_vm(lab, guest, tmp_path, key):
    site_refuses(tmp_path, [f"colo_vms entry 1 (guest0) has unknown keys {key}; it takes accel,",
                            "(and the roles read disk_source, ready_host, ready_port)"], [dict(guest, **{key: 1})])


@pytest.mark.parametrize("key, value, words", [
    ("compare_timeout", 0, "compare_timeout must be an integer from 1 to 600000 (ms), got 0"),
    ("expired_scan_cycle", 600001, "expired_scan_cycle must be an integer from 1 to 600000 (ms), got 600001"),
    ("max_queue_size", 1048577, "max_queue_size must be an integer from 1 to 1048576 (packets), got 1048577"),
    ("checkpoint_delay_ms", 0, "checkpoint_delay_ms must be an integer from 1 to 3600000 (ms), got 0"),
    ("compare_timeout", "soon", "argument 'compare_timeout' is of type str"),
])
def test_site_refuses_colo_settings_out_of_range(lab, guest, tmp_path, key, value, words):
    site_refuses(tmp_path, [f"colo_vms entry 1 (guest0): {words}"], [dict(guest, **{key: value})])


@pytest.mark.parametrize("change", [{"ready_port": 70000}, {"ready_port": "ledger"}, {"ready_host": None},
                                    {"disk_source": "images/guest0.qcow2"}])
def test_site_refuses_bad_role_keys(lab, guest, tmp_path, change):
    vm = {k: v for k, v in dict(guest, **change).items() if v is not None}
    site_refuses(tmp_path, ["ready_port (a TCP port from 1 to 65535) and ready_host"], [vm])


@pytest.mark.parametrize("nics", [{"colo_forward_nic": "eth2"}, {"colo_checkpoint_nic": "eth0"},
                                  {"colo_client_nic": "eth1"}])
def test_site_refuses_one_nic_for_two_links(lab, tmp_path, nics):
    site_refuses(tmp_path, ["must be three different NICs"], hosts={"colo-a": nics, "colo-b": nics})


def test_site_refuses_a_link_address_that_is_only_part_of_the_nics(lab, tmp_path):
    """10.x.2.1 is a prefix of colo-a's 10.x.2.11 on eth1, not its address."""
    part = A.address("eth1")[:-1]
    out = site_refuses(tmp_path, [f"{part} is not an address of eth1 on colo-a (its IPv4 addresses: {A.address('eth1')})"],
                       hosts={"colo-a": {"colo_forward_address": part}})
    assert "set colo_forward_address to one of them" in out


def test_one_host_refused_stops_the_other(lab, tmp_path):
    """Only colo-b is wrong: colo-a stops at the same task (any_errors_fatal), nothing of the pair starts."""
    out = site_refuses(tmp_path, ["colo_forward_nic (eth2) and colo_checkpoint_nic (eth2) of colo-b"],
                       hosts={"colo-b": {"colo_forward_nic": "eth2"}})
    assert "TASK [colo.ft.colo_host : Refuse missing NICs]" not in out


def test_primary_refuses_a_vm_without_ready_port_when_asked(lab, guest, tmp_path):
    unready = {k: v for k, v in guest.items() if k not in ("ready_host", "ready_port")}
    inventory = tmp_path / "unready.yml"
    inventory.write_text(json.dumps({"all": {"vars": {"colo_vms": [unready]}}}))
    result = ansible("ansible-playbook", "-i", str(inventory), "tests/lab/playbooks/colo_primary_only.yml",
                     "-e", "colo_primary_require_ready_port=true", check=False)
    assert result.returncode != 0
    assert "colo_primary_require_ready_port is set and these VMs have no ready_port: guest0" in result.stdout
    assert recap(result.stdout)["colo-a"]["changed"] == 0
    # Without it: a warning before anything else (check mode: whatever follows changes nothing).
    result = ansible("ansible-playbook", "-i", str(inventory), "tests/lab/playbooks/colo_primary_only.yml", "--check",
                     check=False)
    warning = result.stdout.find("WARNING: these VMs have no ready_port and are protected as soon as QEMU runs")
    assert 0 < warning < result.stdout.find("TASK [colo.ft.colo_primary : Look for the directories of the disks]")


DISKS = "/tmp/colo-ft-dirtest"


def test_disks_leave_existing_directories_alone(lab, tmp_path):
    """A disk in /tmp, or in a directory of someone else, keeps that directory's owner and mode; what is missing
    is created root's, traversable by QEMU's group only (0710), and the image is QEMU's user's (0600, it reopens
    it by name after dropping root). On the primary (disk_source) and on the secondary (created for the resync)."""
    on_host("colo-a", "head -c 65536 /dev/urandom > /root/colo-ft-dirtest.img")
    prepare = f"rm -rf {DISKS}* && mkdir -m 0751 {DISKS}-keep && chown nobody {DISKS}-keep && chmod 1777 /tmp"
    for host in ("colo-a", "colo-b"):
        on_host(host, prepare)
    vms = [{"name": "dirtest0", "mac": "52:54:00:13:02:01", "disk": f"{DISKS}0.img"},
           {"name": "dirtest1", "mac": "52:54:00:13:02:02", "disk": f"{DISKS}-keep/d1.img"},
           {"name": "dirtest2", "mac": "52:54:00:13:02:03", "disk": f"{DISKS}-new/sub/d2.img"}]
    vms = [dict(vm, boot="disk", disk_format="raw", disk_source="/root/colo-ft-dirtest.img") for vm in vms]
    extra = tmp_path / "disks.json"
    extra.write_text(json.dumps({"colo_vms": vms}))
    try:
        ansible("ansible-playbook", "tests/lab/playbooks/disk_dirs.yml", "-e", f"@{extra}")
        for host in ("colo-a", "colo-b"):
            modes = on_host(host, f"stat -c '%n %a %U:%G' /tmp {DISKS}-keep {DISKS}-new {DISKS}-new/sub "
                                  f"{DISKS}0.img {DISKS}-keep/d1.img {DISKS}-new/sub/d2.img").stdout.split("\n")
            qemu = "colo-qemu:colo-qemu"
            assert modes[:7] == ["/tmp 1777 root:root", f"{DISKS}-keep 751 nobody:root",
                                 f"{DISKS}-new 710 root:colo-qemu", f"{DISKS}-new/sub 710 root:colo-qemu",
                                 f"{DISKS}0.img 600 {qemu}", f"{DISKS}-keep/d1.img 600 {qemu}",
                                 f"{DISKS}-new/sub/d2.img 600 {qemu}"], (host, modes)
    finally:
        for host in ("colo-a", "colo-b"):
            on_host(host, f"rm -rf {DISKS}* /root/colo-ft-dirtest.img", check=False)


BIG = "/var/lib/colo-ft/images/colo-ft-sizetest.img"


@pytest.mark.parametrize("secondary, vm, extra, words", [
    ("qemu-img create -q -f raw {img} 32M", {}, [],
     ["sizetest: the secondary's image /var/lib/colo-ft/images/colo-ft-sizetest.img has a virtual size of 33554432 "
      "bytes (0.03 GiB), the primary's 67108864 bytes (0.06 GiB)", "remove it on the secondary host"]),
    ("qemu-img create -q -f qcow2 {img} 64M", {}, [],
     ["sizetest: the secondary's image /var/lib/colo-ft/images/colo-ft-sizetest.img is qcow2, but the VM's "
      "disk_format is raw"]),
    # A qcow2 header that qemu-img cannot open (any other file would pass as a raw image).
    (r"printf 'QFI\373\0\0\0\3garbage' > {img}", {}, [],
     ["/var/lib/colo-ft/images/colo-ft-sizetest.img on this host is not a disk image qemu-img can read",
      "Unsupported cluster size"]),
    (None, {}, ["-e", "colo_backend=xen"], ["Xen COLO starts without a resync, so the secondary needs an identical "
                                            "copy"]),
], ids=["size", "format", "unreadable", "xen-missing"])
def test_a_secondary_disk_the_resync_cannot_fill_is_refused(lab, tmp_path, secondary, vm, extra, words):
    """The secondary's image must take the primary's full resync: the VM's format and the primary's virtual size
    (and no backing file, nor a primary image of another format than the VM's: tests/unit/.../test_images.py).
    Anything else is refused before it (or anything) changes, saying what to fix. Without a resync (Xen) a missing
    image is refused."""
    on_host("colo-a", f"mkdir -p /var/lib/colo-ft/images && qemu-img create -q -f raw {BIG} 64M")
    before = "absent"
    if secondary:
        on_host("colo-b", "mkdir -p /var/lib/colo-ft/images && " + secondary.format(img=BIG))
        before = on_host("colo-b", f"sha256sum {BIG} && stat -c '%s %Y %U' {BIG}").stdout
    vms = [dict({"name": "sizetest", "mac": "52:54:00:13:02:09", "disk": BIG, "boot": "disk", "disk_format": "raw"},
                **vm)]
    extra_vars = tmp_path / "disks.json"
    extra_vars.write_text(json.dumps({"colo_vms": vms}))
    try:
        result = ansible("ansible-playbook", "tests/lab/playbooks/disk_dirs.yml", "-e", f"@{extra_vars}", *extra,
                         check=False)
        assert result.returncode != 0
        for w in words:
            assert w in result.stdout, result.stdout[-3000:]
        assert "TASK [colo.ft.colo_secondary : Create the image with the primary's format" not in result.stdout
        after = on_host("colo-b", f"sha256sum {BIG} && stat -c '%s %Y %U' {BIG}", check=False)
        assert (after.stdout if after.returncode == 0 else "absent") == before
    finally:
        for host in ("colo-a", "colo-b"):
            on_host(host, f"rm -f {BIG}", check=False)


MIRROR_PLAY = """
- hosts: colo-a
  gather_facts: true
  gather_subset: [min]
  tasks:
    - ansible.builtin.include_role:
        name: colo.ft.colo_host
        tasks_from: backports_mirror.yml
    - ansible.builtin.debug:
        msg: "MIRROR={{ __colo_host_backports_uri }}"
"""


def test_the_backports_source_uses_the_hosts_own_mirror_or_says_what_to_set(lab, tmp_path):
    """colo_host_backports_mirror empty (the default): the mirror that the host's apt sources use for its release
    (the lab's hosts use a local repository only, so an apt source is added for the test; only the files are read,
    nothing is fetched); none there: refused, naming the variable. Set: taken as it is."""
    play = tmp_path / "mirror.yml"
    play.write_text(MIRROR_PLAY)
    source = "/etc/apt/sources.list.d/zz-colo-test.list"
    refused = ansible("ansible-playbook", "-i", str(INVENTORY), str(play), check=False)
    assert refused.returncode != 0 and "set colo_host_backports_mirror" in refused.stdout, refused.stdout[-2000:]
    on_host("colo-a", f"echo 'deb http://192.0.2.10/debian trixie main' > {source}")
    try:
        found = ansible("ansible-playbook", "-i", str(INVENTORY), str(play))
        assert '"MIRROR=http://192.0.2.10/debian"' in found.stdout, found.stdout[-2000:]
        chosen = ansible("ansible-playbook", "-i", str(INVENTORY), str(play), "-e",
                         "colo_host_backports_mirror=http://192.0.2.20/debian")
        assert '"MIRROR=http://192.0.2.20/debian"' in chosen.stdout, chosen.stdout[-2000:]
    finally:
        on_host("colo-a", f"rm -f {source}")
