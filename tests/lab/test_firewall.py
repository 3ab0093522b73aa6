"""colo_host's firewall on the lab: only the peer host reaches the COLO ports (nftables table inet colo_ft).

Strangers: the client namespace (on the client link; it reaches the hosts' link addresses through their client
address, which Linux answers on whatever interface a packet comes in) and the stranger namespace (a third address
on the forward and on the checkpoint link). Every COLO port of both hosts, on both link addresses, must drop their
connections (no answer: with no firewall a port nobody listens on refuses at once), while sshd on the same addresses
answers them (the path works). The peer keeps connecting: COLO checkpoints, fails over and re-protects.

These tests run inside test_colo.py's scenario (tests/lab/conftest.py orders them): on the pair its site.yml
protected, colo-a primary and colo-b secondary, with the agents paused. They leave the pair so.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time

import pytest
from colo_lab.config import CLIENT_NS, HOSTS_BY_NAME, STRANGER_NS
from colo_lab.testing import ansible, lab_cmd, on_host, recap, tcp_probe, vm_info

pytestmark = pytest.mark.usefixtures("lab")

COLO_PORTS = (9003, 9004, 9998, 9999)  # the test guest's: mirror, compare, migration, NBD (no port_base)
CONTROL_PORT = 22  # sshd, on every address of a host
LINKS = ("eth1", "eth2")  # forward, checkpoint


def link_addresses(host: str) -> list[str]:
    return [HOSTS_BY_NAME[host].address(link) for link in LINKS]


@contextlib.contextmanager
def client_routes():
    """The client namespace reaches each host's link addresses through that host's client address."""
    routes = [[f"{address}/32", "via", HOSTS_BY_NAME[host].address("eth0")]
              for host in HOSTS_BY_NAME for address in link_addresses(host)]
    for route in routes:
        subprocess.run(["ip", "-n", CLIENT_NS, "route", "replace", *route], check=True)
    try:
        yield
    finally:
        for route in routes:
            subprocess.run(["ip", "-n", CLIENT_NS, "route", "del", *route], check=False)


def probe(hosts=tuple(HOSTS_BY_NAME), ports=COLO_PORTS + (CONTROL_PORT,)) -> dict:
    """{(source, address, port): outcome} from both strangers to the given ports of the hosts' link addresses."""
    targets = [(address, port) for host in hosts for address in link_addresses(host) for port in ports]
    with client_routes():
        return {(source, *target): outcome for source in (CLIENT_NS, STRANGER_NS)
                for target, outcome in tcp_probe(source, targets).items()}


def assert_closed_to_strangers(hosts=tuple(HOSTS_BY_NAME)) -> None:
    found = probe(hosts)
    control = {k: v for k, v in found.items() if k[2] == CONTROL_PORT}
    assert set(control.values()) == {"open"}, f"the strangers do not reach sshd, so the probe proves nothing: {control}"
    colo = {k: v for k, v in found.items() if k[2] != CONTROL_PORT}
    assert len(colo) == 2 * len(hosts) * len(LINKS) * len(COLO_PORTS)
    assert {k: v for k, v in colo.items() if v != "dropped"} == {}, "a stranger got an answer from a COLO port"


def listening_ports(host: str) -> set[int]:
    out = on_host(host, "ss -Hltnp").stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if "qemu-system" in line}


def table(host: str) -> str:
    return on_host(host, "nft list table inet colo_ft", check=False).stdout


def marker(text: str) -> str:
    found = re.search(r'comment "(colo\.ft [0-9a-f]{40})"', text)
    return found.group(1) if found else ""


def assert_protected(primary: str, secondary: str) -> None:
    vms = vm_info(sample_seconds=4)
    assert vms[primary]["guest0"]["mode"] == "primary" and vms[secondary]["guest0"]["mode"] == "secondary", vms
    assert vms[primary]["guest0"]["replication"] == "attached"
    assert vms[primary]["guest0"]["checkpoints"] > 0, "no checkpoint in 4 s: the peer cannot reach the COLO ports"


def test_only_the_peer_reaches_the_colo_ports():
    assert_protected("colo-a", "colo-b")
    # QEMU listens on the ports probed here and no other: the primary on mirror/compare, the secondary on
    # migration/NBD.
    assert listening_ports("colo-a") == {9003, 9004}
    assert listening_ports("colo-b") == {9998, 9999}
    for host in HOSTS_BY_NAME:
        assert marker(table(host)), table(host)
        rules = on_host(host, "cat /etc/colo-ft/firewall.nft").stdout
        assert marker(rules) == marker(table(host))
    assert_closed_to_strangers()


def test_a_missing_table_is_loaded_again_and_other_tables_stay():
    """Without the table, a stranger's connection to a port nobody listens on is refused (not dropped): the drops
    above come from the table. colo_host (site.yml's first play) loads it again (changing colo-a only) and leaves
    other tables alone."""
    on_host("colo-a", "nft delete table inet colo_ft && nft add table inet colo_test")
    assert probe(hosts=("colo-a",), ports=(9998,))[(STRANGER_NS, HOSTS_BY_NAME["colo-a"].address("eth2"), 9998)] == "refused"
    result = ansible("ansible-playbook", "tests/lab/playbooks/colo_host_only.yml")
    counts = recap(result.stdout)
    assert counts["colo-a"]["changed"] == 1 and counts["colo-b"]["changed"] == 0, result.stdout[-3000:]
    assert "table inet colo_test" in on_host("colo-a", "nft list tables").stdout
    on_host("colo-a", "nft delete table inet colo_test")
    assert_closed_to_strangers(hosts=("colo-a",))


def test_firewall_off_removes_it_and_on_puts_it_back():
    extra = ("--limit", "colo-b", "-e", "colo_host_firewall=false")
    ansible("ansible-playbook", "tests/lab/playbooks/colo_host_only.yml", *extra)
    assert on_host("colo-b", "nft list table inet colo_ft", check=False).returncode != 0
    assert on_host("colo-b", "ls /etc/colo-ft/firewall.nft /etc/systemd/system/colo-ft-firewall.service",
                   check=False).returncode != 0
    address = HOSTS_BY_NAME["colo-b"].address("eth1")
    assert probe(hosts=("colo-b",), ports=(9003,))[(STRANGER_NS, address, 9003)] == "refused"
    again = ansible("ansible-playbook", "tests/lab/playbooks/colo_host_only.yml", *extra)
    assert recap(again.stdout)["colo-b"]["changed"] == 0
    ansible("ansible-playbook", "tests/lab/playbooks/colo_host_only.yml", "--limit", "colo-b")
    assert_closed_to_strangers(hosts=("colo-b",))
    assert_protected("colo-a", "colo-b")


def test_rules_are_loaded_at_boot_and_colo_survives_failover_and_reprotect():
    lab_cmd("crash", "colo-b")
    ansible("ansible-playbook", "playbooks/failover.yml")
    lab_cmd("restart", "colo-b")
    # Before any playbook: colo-ft-firewall.service loaded the table while the host booted.
    deadline = time.monotonic() + 30
    while not marker(table("colo-b")) and time.monotonic() < deadline:
        time.sleep(1)
    assert marker(table("colo-b")) == marker(on_host("colo-b", "cat /etc/colo-ft/firewall.nft").stdout)
    ansible("ansible-playbook", "playbooks/reprotect.yml")
    assert_protected("colo-a", "colo-b")
    assert_closed_to_strangers()
