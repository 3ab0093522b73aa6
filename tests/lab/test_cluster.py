"""Membership and quorum (role colo_cluster): corosync on both hosts over two knet links, a quorum device on each,
corosync-qnetd on the arbiter over TLS; in a split the arbiter's vote goes to the side whose heuristic passes (the
COLO primary's, which the agent marks with /run/colo-ft/agent/primary), and only that side stays quorate."""

from __future__ import annotations

import time

from colo_lab.testing import ansible, lab_cmd, on_host, quorum, recap

HOSTS = ("colo-a", "colo-b")
PLAYBOOK = "tests/lab/playbooks/cluster.yml"
MARKER = "/run/colo-ft/agent/primary"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s"
        time.sleep(0.3)
    return value


def quorate(host: str) -> bool:
    return quorum(host).get("Quorate") == "Yes"


def all_votes() -> bool:
    """Both hosts quorate, each seeing 3 votes: both nodes and the quorum device."""
    return all(quorate(h) and quorum(h).get("Total votes") == "3" for h in HOSTS)


def test_role_sets_up_a_quorate_cluster_with_the_arbiter(lab):
    ansible("ansible-playbook", PLAYBOOK)
    wait_for(all_votes, 30, "quorum with 3 votes on both hosts")
    for host in HOSTS:
        status = quorum(host)
        assert status["Expected votes"] == "3" and "Qdevice" in status["Flags"], status
        links = on_host(host, "corosync-cfgtool -s").stdout
        assert "LINK ID 0" in links and "LINK ID 1" in links and links.count("connected") == 2, links
        # corosync keeps the realtime priority Debian's unit gives it.
        assert "SCHED_RR" in on_host(host, "chrt -p $(pidof corosync)").stdout
        assert on_host(host, "stat -c %a:%U /etc/corosync/authkey").stdout.strip() == "400:root"
    qnetd = on_host("colo-arbiter", "corosync-qnetd-tool -lv").stdout
    assert qnetd.count("TLS active:\t\tYes (client certificate verified)") == 2, qnetd
    assert 'Cluster "colo-ft"' in qnetd and "Membership node list:\t1, 2" in qnetd, qnetd


def test_role_rerun_and_check_mode_change_nothing(lab):
    for extra in ((), ("--check", "--diff")):
        result = ansible("ansible-playbook", PLAYBOOK, *extra)
        assert all(counts["changed"] == 0 for counts in recap(result.stdout).values()), result.stdout[-4000:]


def split_keeps(winner: str) -> float:
    """Mark winner as the COLO primary, split the pair: only winner stays quorate; heal: both again. The seconds
    from the split until the loser lost quorum."""
    loser = next(h for h in HOSTS if h != winner)
    for host in HOSTS:  # an agent left by an earlier site.yml would keep the marker as its VMs say
        on_host(host, "systemctl stop colo-ft-agent.service 2>/dev/null || true")
    on_host(winner, f"mkdir -p {MARKER.rsplit('/', 1)[0]} && touch {MARKER}")
    on_host(loser, f"rm -f {MARKER}")
    lab_cmd("split")
    split_at = time.monotonic()
    try:
        wait_for(lambda: not quorate(loser), 20, f"{loser} to lose quorum")
        decided = time.monotonic() - split_at
        # The winner keeps it (its node and the device's vote), also a while later.
        time.sleep(2)
        assert quorate(winner) and not quorate(loser), (quorum(winner), quorum(loser))
        assert quorum(winner)["Total votes"] == "2"
    finally:
        lab_cmd("heal", "split")
        on_host(winner, f"rm -f {MARKER}")
    wait_for(all_votes, 30, "quorum with 3 votes on both hosts after the heal")
    return decided


def test_split_keeps_only_the_primarys_side_quorate(lab):
    # colo-b first: node 2, which ffsplit's tie-breaker (lowest node id) alone would not pick.
    assert split_keeps("colo-b") < 10
    assert split_keeps("colo-a") < 10
