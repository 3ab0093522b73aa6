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
