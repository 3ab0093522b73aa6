"""The lab behaves like two real hosts: ssh and Ansible reach them, links and faults act."""

from __future__ import annotations

import re
import socket
import subprocess
import time

from colo_lab.config import ARBITER, CLIENT_ADDR, HOSTS_BY_NAME
from colo_lab.testing import LAB, ansible, client_netns, in_client, lab_cmd, on_host

A, B = HOSTS_BY_NAME["colo-a"], HOSTS_BY_NAME["colo-b"]


def reaches(host: str, address: str) -> bool:
    return on_host(host, f"ping -c1 -W1 {address}", check=False).returncode == 0


def nspawn_pids() -> dict:
    from colo_lab import hosts
    return {h.name: hosts.nspawn_pid(h) for h in (A, B, ARBITER)}


def test_up_again_changes_nothing(lab):
    before = nspawn_pids()
    lab_cmd("up")
    assert nspawn_pids() == before and None not in before.values()


def test_hosts_run_systemd_and_answer_ansible(lab):
    result = ansible("ansible", "all", "-m", "ansible.builtin.setup", "-a", "filter=ansible_distribution*")
    assert result.stdout.count("SUCCESS") == 3
    assert '"ansible_distribution_major_version": "13"' in result.stdout
    for host in ("colo-a", "colo-b", "colo-arbiter"):
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


def test_arbiter_is_on_the_client_switch_only(lab):
    assert on_host(ARBITER.name, "ls /sys/class/net").stdout.split() == ["eth0", "lo", "mgmt0"]
    assert reaches(ARBITER.name, A.address("eth0")) and reaches("colo-b", ARBITER.address("eth0"))
    assert in_client("ping", "-c1", "-W1", ARBITER.address("eth0"), check=False).returncode == 0
    assert not reaches(ARBITER.name, A.address("eth2"))


def test_split_cuts_every_path_between_the_hosts_and_heal_ends_it(lab):
    lab_cmd("split")
    try:
        status = lab_cmd("status").stdout
        assert all(f"link {h}:{i}: cut" in status for h in ("colo-a", "colo-b") for i in ("eth1", "eth2")), status
        assert all(f"link {h}:eth0: up (isolated)" in status for h in ("colo-a", "colo-b")), status
        for link in ("mgmt0", "eth0", "eth1", "eth2"):
            assert not reaches("colo-a", B.address(link)), link
        for host in ("colo-a", "colo-b"):  # both still reach the arbiter and the client namespace
            assert reaches(host, ARBITER.address("eth0")) and reaches(host, CLIENT_ADDR.partition("/")[0])
            assert in_client("ping", "-c1", "-W1", HOSTS_BY_NAME[host].address("eth0"), check=False).returncode == 0
    finally:
        lab_cmd("heal", "split")
    assert "isolated" not in lab_cmd("status").stdout
    on_host("colo-a", f"for i in 1 2 3 4 5; do ping -c1 -W1 {B.address('eth0')} && ping -c1 -W1 {B.address('eth2')} "
                      "&& exit 0; sleep 1; done; exit 1")


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


def test_the_arbiter_freezes_crashes_and_restarts(lab):
    lab_cmd("freeze", ARBITER.name)
    try:
        assert "colo-arbiter: frozen" in lab_cmd("status").stdout
    finally:
        lab_cmd("thaw", ARBITER.name)
    lab_cmd("crash", ARBITER.name)
    assert "colo-arbiter: stopped" in lab_cmd("status").stdout
    assert not reaches("colo-a", ARBITER.address("eth0"))
    lab_cmd("restart", ARBITER.name)
    assert on_host(ARBITER.name, "systemctl is-system-running").stdout.strip() == "running"
    assert reaches("colo-a", ARBITER.address("eth0"))


# On the host that crashes: accept connections and hold them, never reading; what a peer sent stays queued,
# so a close by a dying process would answer with RST (and one with nothing queued with FIN).
LISTENER = """import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
held = []
while True:
    held.append(s.accept()[0])
"""
# On the peer host: connect, send, say "connected", then report what the connection hears within WAIT s.
PEER = """import socket, sys, time
address, port, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = socket.create_connection((address, port), timeout=5)
c.sendall(b"unread")
print("connected", flush=True)
c.settimeout(wait)
try:
    print("data" if c.recv(1) else "eof", flush=True)
except socket.timeout:
    print("silent", flush=True)
except OSError as error:
    print(type(error).__name__, flush=True)
"""
SILENT_PORT = 7999


def connect_from_client(address: str, port: int, timeout: float = 20) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with client_netns():
                return socket.create_connection((address, port), timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_crash_is_silent_no_fin_or_rst_reaches_a_peer(lab):
    """A power cut sends nothing: connections to the crashed host, from the client switch and from the other
    host over the checkpoint link, hear neither FIN nor RST; their reads block until their timeout."""
    on_host("colo-b", f"setsid -f python3 -c '{LISTENER}' {SILENT_PORT} </dev/null >/dev/null 2>&1")
    client = connect_from_client(B.address("eth0"), SILENT_PORT)
    peer = None
    try:
        client.sendall(b"unread")
        peer = subprocess.Popen([str(LAB), "ssh", "colo-a", f"python3 -c '{PEER}' {B.address('eth2')} {SILENT_PORT} 8"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert peer.stdout.readline().strip() == "connected", peer.stderr.read()
        started = time.monotonic()
        lab_cmd("crash", "colo-b")
        crash_s = time.monotonic() - started
        client.settimeout(4)
        try:
            heard = "data" if client.recv(1) else "eof"
        except TimeoutError:
            heard = "silent"
        except OSError as error:  # ConnectionResetError: the old crash, whose dying kernel answered
            heard = type(error).__name__
        assert heard == "silent", f"the client's connection to the crashed host heard {heard}"
        out, err = peer.communicate(timeout=60)
        assert out.strip() == "silent", f"colo-a's connection to the crashed host heard {out.strip()} {err}"
        assert "colo-b: stopped" in lab_cmd("status").stdout
        assert crash_s < 10, f"crash took {crash_s:.1f}s"
    finally:
        client.close()
        if peer and peer.poll() is None:
            peer.kill()
            peer.wait()
        lab_cmd("restart", "colo-b")
    status = lab_cmd("status").stdout
    assert all(f"link colo-b:{iface}: up" in status for iface in ("eth0", "eth1", "eth2")), status
    assert reaches("colo-a", B.address("eth2")) and in_client("ping", "-c1", "-W1", B.address("eth0"), check=False).returncode == 0


def test_client_and_ssh_commands_do_not_hold_the_lab_lock(lab):
    """A long `colo-lab client` or `ssh` command does not hold up the lab's other commands: a fault can strike
    while it runs (before, each of these waited until the long command had ended)."""
    long_commands = [subprocess.Popen([str(LAB), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for argv in (["client", "sh", "-c", "echo started; exec sleep 15"],
                                  ["ssh", "colo-a", "echo started; exec sleep 15"])]
    for proc in long_commands:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()
    started = time.monotonic()
    assert "colo-a: running" in lab_cmd("status").stdout
    lab_cmd("freeze", "colo-b")
    lab_cmd("thaw", "colo-b")
    took = time.monotonic() - started
    assert [proc.poll() for proc in long_commands] == [None, None], "a long command ended early"
    assert took < 8, f"status, freeze and thaw took {took:.1f}s while client and ssh commands ran"
    for proc in long_commands:
        assert proc.wait(timeout=60) == 0


def test_errors_are_clear(lab):
    result = lab_cmd("crash", "colo-z", check=False)
    assert result.returncode == 1 and "unknown host 'colo-z'" in result.stderr
    result = lab_cmd("cut", "eth7", check=False)
    assert result.returncode == 1 and "unknown link" in result.stderr
