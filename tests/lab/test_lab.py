"""The lab behaves like two real hosts: ssh and Ansible reach them, links and faults act."""

from __future__ import annotations

import re

from colo_lab.config import HOSTS_BY_NAME
from colo_lab.testing import ansible, in_client, lab_cmd, on_host

A, B = HOSTS_BY_NAME["colo-a"], HOSTS_BY_NAME["colo-b"]


def reaches(host: str, address: str) -> bool:
    return on_host(host, f"ping -c1 -W1 {address}", check=False).returncode == 0


def nspawn_pids() -> dict:
    from colo_lab import hosts
    return {h.name: hosts.nspawn_pid(h) for h in (A, B)}


def test_up_again_changes_nothing(lab):
    before = nspawn_pids()
    lab_cmd("up")
    assert nspawn_pids() == before and None not in before.values()


def test_hosts_run_systemd_and_answer_ansible(lab):
    result = ansible("ansible", "all", "-m", "ansible.builtin.setup", "-a", "filter=ansible_distribution*")
    assert result.stdout.count("SUCCESS") == 2
    assert '"ansible_distribution_major_version": "13"' in result.stdout
    for host in ("colo-a", "colo-b"):
        assert on_host(host, "systemctl is-system-running").stdout.strip() == "running"
        assert on_host(host, "hostname").stdout.strip() == host


def test_topology(lab):
    for link in ("eth0", "eth1", "eth2"):
        assert reaches("colo-a", B.address(link)), link
    assert in_client("ping", "-c1", "-W1", A.address("eth0"), check=False).returncode == 0
    # The forward and checkpoint links are direct cables: the client switch does not see them.
    assert in_client("ping", "-c1", "-W1", A.address("eth1"), check=False).returncode != 0
    # Hosts have no route out and packages come from the lab's own repository.
    assert "default" not in on_host("colo-a", "ip route").stdout
    policy = on_host("colo-a", "apt-get update -qq && apt-cache policy qemu-system-x86").stdout
    assert "Candidate: 1:11." in policy and "file:/srv/colo-lab/apt" in policy


def test_cut_and_heal_a_link(lab):
    lab_cmd("cut", "eth2")
    try:
        assert not reaches("colo-a", B.address("eth2"))
        assert reaches("colo-a", B.address("eth1"))
        assert "cut" in lab_cmd("status").stdout
    finally:
        lab_cmd("heal", "eth2")
    on_host("colo-a", f"for i in 1 2 3 4 5; do ping -c1 -W1 {B.address('eth2')} && exit 0; sleep 1; done; exit 1")
    lab_cmd("cut", "colo-b:eth0")
    try:
        assert not reaches("colo-a", B.address("eth0"))
        assert reaches("colo-a", B.address("eth1"))
    finally:
        lab_cmd("heal", "colo-b:eth0")
    on_host("colo-a", f"for i in 1 2 3 4 5; do ping -c1 -W1 {B.address('eth0')} && exit 0; sleep 1; done; exit 1")


def test_freeze_hangs_and_thaw_resumes(lab):
    pid = on_host("colo-b", "setsid -f sleep 600 </dev/null >/dev/null 2>&1; pgrep -nx sleep").stdout.strip()
    lab_cmd("freeze", "colo-b")
    try:
        assert on_host("colo-b", "true", check=False, timeout=20).returncode != 0
        assert re.search(r"colo-b: frozen", lab_cmd("status").stdout)
    finally:
        lab_cmd("thaw", "colo-b")
    assert on_host("colo-b", f"kill -0 {pid} && echo alive").stdout.strip() == "alive"
    on_host("colo-b", f"kill {pid}")


def test_crash_loses_processes_keeps_disk_and_restart_boots(lab):
    boot_id = on_host("colo-b", "cat /proc/sys/kernel/random/boot_id").stdout
    on_host("colo-b", "echo survived > /root/marker && sync /root/marker && setsid -f sleep 600 </dev/null >/dev/null 2>&1")
    lab_cmd("crash", "colo-b")
    assert "colo-b: stopped" in lab_cmd("status").stdout
    assert not reaches("colo-a", B.address("eth2"))
    lab_cmd("restart", "colo-b")
    assert on_host("colo-b", "cat /root/marker").stdout.strip() == "survived"
    assert on_host("colo-b", "pgrep -x sleep", check=False).returncode != 0
    assert on_host("colo-b", "systemctl is-system-running").stdout.strip() == "running"
    assert reaches("colo-a", B.address("eth2"))
    # A lab host has no kernel of its own: boot_id is the machine's, so the checks above are what
    # tells a restarted host from a running one.
    assert boot_id


def test_errors_are_clear(lab):
    result = lab_cmd("crash", "colo-z", check=False)
    assert result.returncode == 1 and "unknown host 'colo-z'" in result.stderr
    result = lab_cmd("cut", "eth7", check=False)
    assert result.returncode == 1 and "unknown link" in result.stderr
