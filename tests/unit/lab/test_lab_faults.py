"""Pure logic of the lab's faults and of its lock: a crash takes the host's links dark before any of its
processes dies, and only the commands that change the lab wait for each other.

The real effect (a peer hears no FIN or RST; a crash goes through while `client` runs) is checked on a
running lab by tests/lab/test_lab.py.
"""

from __future__ import annotations

import fcntl
import threading

import pytest
from colo_lab import cli, hosts, net
from colo_lab.arpwatch import same_request
from colo_lab.config import HOSTS_BY_NAME

B = HOSTS_BY_NAME["colo-b"]

IP_LINK = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00
2: br-client: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 5e:1c:aa:00:00:01
7: b-mgmt0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master br-mgmt state UP mode DEFAULT
9: b-eth0@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master br-client state UP mode DEFAULT
11: b-eth2@if10: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master br-ckpt state UP mode DEFAULT
13: a-eth1@if12: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master br-fwd state UP mode DEFAULT
"""


def test_link_names_reads_ip_o_link_output():
    assert net.link_names(IP_LINK) == {"lo", "br-client", "b-mgmt0", "b-eth0", "b-eth2", "a-eth1"}
    assert net.link_names("") == set()


def test_ports_down_batch_is_one_ip_batch_line_per_port():
    assert net.ports_down_batch(["b-mgmt0", "b-eth0"]) == "link set b-mgmt0 down\nlink set b-eth0 down\n"
    assert net.ports_down_batch([]) == ""


def test_unplug_host_takes_every_present_port_of_the_host_down_in_one_batch(monkeypatch):
    calls = []

    def run(argv, **kwargs):
        calls.append((list(argv), kwargs.get("input"), kwargs.get("netns")))
        return type("Done", (), {"stdout": IP_LINK, "returncode": 0})()

    monkeypatch.setattr(net, "run", run)
    monkeypatch.setattr(net, "netns_exists", lambda name: True)
    # b-eth1 is missing (say, an interrupted start): the others still go down; colo-a's a-eth1 is not touched.
    assert net.unplug_host(B) == ["b-mgmt0", "b-eth0", "b-eth2"]
    assert calls[1:] == [(["ip", "-batch", "-"], "link set b-mgmt0 down\nlink set b-eth0 down\nlink set b-eth2 down\n",
                          net.SWITCH_NS)]


def test_unplug_host_without_switches_does_nothing(monkeypatch):
    monkeypatch.setattr(net, "netns_exists", lambda name: False)
    monkeypatch.setattr(net, "run", lambda *a, **k: pytest.fail("no switch namespace: nothing to run"))
    assert net.unplug_host(B) == []


def test_a_crash_darkens_the_links_before_any_process_dies(monkeypatch, tmp_path):
    order = []
    monkeypatch.setattr(hosts, "nspawn_pid", lambda host: 4242)
    monkeypatch.setattr(hosts, "_pidfile", lambda host: tmp_path / "nspawn.pid")
    monkeypatch.setattr(hosts, "unplug_host", lambda host: order.append(("dark", host.name)))
    monkeypatch.setattr(hosts, "kill_all", lambda host: order.append(("kill", host.name)))
    monkeypatch.setattr(hosts, "drop_host_net", lambda host: order.append(("drop", host.name)))
    hosts.crash(B)
    assert order == [("dark", "colo-b"), ("kill", "colo-b"), ("drop", "colo-b")]
    order.clear()
    hosts.crash(B, loud=True)  # the dying kernel still resets its connections
    assert order == [("kill", "colo-b"), ("drop", "colo-b")]


@pytest.fixture
def lab_state(monkeypatch, tmp_path):
    """cli.main on a state folder of the test's own, as root, with the command functions replaced."""
    state = tmp_path / "state"
    monkeypatch.setattr(cli, "STATE", state)
    monkeypatch.setattr(cli, "LOCK", tmp_path / ".state.lock")
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    ran = []
    for name in ("client", "ssh", "crash", "restart", "status", "cut"):
        monkeypatch.setattr(cli, f"cmd_{name}", lambda args, name=name: ran.append(name))
    return ran


def hold_lock(path):
    lock = open(path, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


@pytest.mark.parametrize("argv", [["client", "sleep", "60"], ["ssh", "colo-a", "sleep 60"]])
def test_client_and_ssh_run_while_another_command_holds_the_lock(lab_state, argv):
    with hold_lock(cli.LOCK):
        assert cli.main(argv) == 0
    assert lab_state == [argv[0]]
    assert not cli.STATE.exists(), "a command without the lock must not make the state folder (down may be removing it)"


@pytest.mark.parametrize("argv", [["crash", "colo-b"], ["restart", "colo-b"], ["status"], ["cut", "eth2"]])
def test_other_commands_wait_for_the_lock(lab_state, argv):
    lock = hold_lock(cli.LOCK)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (cli.main(argv), done.set()), daemon=True)
    thread.start()
    try:
        assert not done.wait(0.5), f"{argv[0]} ran while the lock was held"
        assert lab_state == []
    finally:
        lock.close()
    assert done.wait(10)
    assert lab_state == [argv[0]]


def test_the_unlocked_commands_are_the_ones_that_only_reach_into_the_lab():
    assert cli.UNLOCKED == {"client", "stranger", "ssh"}


def test_arpwatch_tells_two_guests_from_a_handover():
    """Replies carry the request's sender address: two hosts answering one request is split brain; one host's
    last reply and the next host's first, to different requests, is a clean handover."""
    r = [bytes([10, 213, 1, 150 + k]) for k in range(100)]
    a = [(0.05 * k, r[k]) for k in range(10)]                  # host A answers requests 0..9
    b = [(0.05 * k + 0.01, r[k]) for k in range(10, 20)]       # host B answers 10..19: a handover
    assert same_request(a, b, 2.5) == []
    both = b + [(0.05 * 9 + 0.02, r[9])]                       # B answered request 9 too
    assert len(same_request(a, both, 2.5)) == 1
    later = [(0.05 * 9 + 5.0, r[9])]                            # the same sender address, one cycle later
    assert same_request(a, later, 2.5) == []
