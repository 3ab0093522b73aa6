"""The pair protects itself: the colo.ft agents fail over with no person and no playbook.

Runs after test_colo.py, which leaves the pair protected (colo-b primary, colo-a secondary) with the
agents in maintenance (test_colo exercises the manual path). Here the agents are switched back on (and
the pair protected again if it is not); then each fault of the matrix is made under client load, and
every case asserts what users care about: no acknowledged ledger write lost, the idle connection kept,
and never two guests answering the guest's address (ARP replies watched per host at the client
switch). After each case the agents put the pair back by themselves once the lost host is back
(automatic re-protection: the survivor stays primary, the returning host becomes its secondary), with
ledger writes all along.
"""

from __future__ import annotations

import json
import time

import pytest
from colo_lab.arpwatch import ArpWatch
from colo_lab.probe import Prober
from colo_lab.testing import ClientLoad, ansible, lab_cmd, on_host, quorum, record_metric, vm_info

pytestmark = pytest.mark.usefixtures("lab")

HOSTS = ("colo-a", "colo-b")
FAILOVER_LOG = "/var/lib/colo-ft/failovers/guest0.jsonl"


def agent_state(host: str) -> dict | None:
    done = on_host(host, "cat /run/colo-ft/agent/state.json", check=False, timeout=10)
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else None


def failover_entries(host: str) -> list[dict]:
    """guest0's failover log on host, oldest entry first."""
    return [json.loads(line) for line in on_host(host, f"cat {FAILOVER_LOG}", check=False).stdout.splitlines()]


def logged_since(host: str, action: str, since: float, why: str = "") -> bool:
    """host's agent logged `action` (its why containing `why`) after `since` (time.time()). The log, not the QEMU's
    state, says it: a given-up QEMU may be replaced by a new secondary (automatic re-protection) a second later."""
    return any(entry["action"] == action and entry["by"] == "colo-ft-agent" and entry["at"] >= since
               and why in entry["why"] for entry in failover_entries(host))


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(every)


def agents_ready() -> None:
    """Both agents quorate, seeing both nodes and each other, watching guest0, not in maintenance."""
    def ready() -> bool:
        states = [agent_state(host) for host in HOSTS]
        return all(s and s["quorate"] and len(s["nodes"]) == 2 and len(s["agents"]) == 2 and not s["maintenance"]
                   and s["vms"]["guest0"]["alive"] for s in states)
    wait_for("both agents ready", ready, timeout=90)


def serving_alone(host: str) -> bool:
    vm = (agent_state(host) or {}).get("vms", {}).get("guest0", {})
    return vm.get("alive") and vm.get("mode") == "none" and vm.get("running") and not vm.get("fenced")


def roles(info: dict | None = None) -> dict:
    """{host: COLO mode of guest0} where it runs."""
    return {host: vms["guest0"]["mode"] for host, vms in (info or vm_info()).items()
            if vms and vms.get("guest0", {}).get("running")}


def reprotect(repaired: str, survivor: str, restart: bool) -> None:
    """The agents put the pair back by themselves: survivor primary, repaired its secondary (after a reboot if it
    lost its power); nothing lost meanwhile, and the survivor's failover log says its agent re-protected."""
    tag = f"reprotect_{repaired}"
    with ClientLoad(tag) as load:
        load.wait_acks(10)
        t0 = time.monotonic()
        if restart:
            lab_cmd("restart", repaired)
        wait_for(f"the agents re-protect the guest ({survivor} primary, {repaired} secondary)",
                 lambda: roles() == {survivor: "primary", repaired: "secondary"}, timeout=240, every=2)
        record_metric(f"ha_{tag}_s", round(time.monotonic() - t0, 1))
        load.wait_acks(10)
    assert not load.errors, load.errors
    assert load.lost() == [], "acknowledged records lost during the re-protection"
    last = failover_entries(survivor)[-1]
    assert last["action"] == "reprotected" and last["by"] == "colo-ft-agent", last


# A thawed primary's QEMU fails COLO over by itself and colo-compare lets out what it held at the same instant,
# before any agent can act (measured: 2.5 ms after COLO_EXIT; docs/agent.md, limits). Double answers are tolerated
# while the thaw command runs and this long after it only; one later means the thawed guest was not stopped.
THAW_RELEASE_S = 0.3


def fault(tag: str, make_fault, survivor: str, then=None) -> float:
    """Make the fault under load (then: what follows it, e.g. a thaw, returning when it happened); wait until
    survivor serves alone; assert the users' view. Returns the seconds from the fault to the first answer to a
    request sent after it (the fault counts from the moment its command returned: the cut itself is a few ms
    earlier)."""
    with ClientLoad(tag) as load, ArpWatch() as arp, Prober() as probe:
        load.wait_acks(20)
        make_fault()
        t0 = time.monotonic()
        thawed = then() if then is not None else None
        first = probe.first_answer_after(t0)
        wait_for(f"{survivor} serves the guest alone", lambda: serving_alone(survivor), timeout=60)
        served = time.monotonic()
        load.wait_acks(20)
        time.sleep(max(0.0, served + 1.0 - time.monotonic()))  # ARP answers for a second at least
        gap = load.longest_gap(t0)
    assert not load.errors, load.errors
    assert load.lost() == [], "acknowledged records lost"
    load.held.ping()
    assert load.held.put(f"{tag}-held") > 0, "the connection opened before the fault no longer works"
    both = arp.both_answered()
    if thawed is not None:
        record_metric(f"ha_{tag}_double_answers_at_thaw", len(both))
        start, end = thawed
        both = [pair for pair in both if not any(start <= t <= end + THAW_RELEASE_S for t in pair)]
    assert both == [], "two guests answered the guest's address"
    assert arp.answering(served) == {survivor}, {host: len(times) for host, times in arp.replies.items()}
    last = failover_entries(survivor)[-1]
    assert last["by"] == "colo-ft-agent", last
    record_metric(f"ha_{tag}_first_answer_s", round(first, 3))
    record_metric(f"ha_{tag}_longest_gap_s", round(gap, 3))
    return first


@pytest.fixture(scope="module", autouse=True)
def protected_pair():
    """test_colo leaves the agents in maintenance (and a protected pair; one host serving alone, the other
    crashed or not, is protected again): switch them on."""
    info = vm_info()
    now = roles(info)
    if sorted(now.values()) != ["primary", "secondary"]:
        alone = [host for host, mode in now.items() if mode == "none"]
        if len(alone) != 1:
            pytest.fail(f"test_ha expects a protected pair or one host serving alone; found {now}")
        repaired = next(host for host in HOSTS if host != alone[0])
        if info.get(repaired) is None:  # the host does not answer
            lab_cmd("restart", repaired)
        ansible("ansible-playbook", "playbooks/reprotect.yml")  # the agents are paused: by hand
    ansible("ansible-playbook", "playbooks/maintenance.yml", "-e", "colo_maintenance=off")
    agents_ready()


# What a failed case leaves to read in the CI log: how each host's agent and QEMU saw the pair at the end.
EVIDENCE = (f"cat /run/colo-ft/agent/state.json; echo; tail -n 5 {FAILOVER_LOG}; "
            "journalctl -u colo-ft-agent -n 60 --no-pager -o short-monotonic")


@pytest.fixture(autouse=True)
def evidence_on_failure(request):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    for host in HOSTS:
        try:
            done = on_host(host, EVIDENCE, check=False, timeout=30)
            print(f"=== {host} (exit {done.returncode})\n{done.stdout}{done.stderr}")
        except Exception as exc:  # pylint: disable=broad-except  # evidence only: a host down says so here
            print(f"=== {host}: {exc!r}")
    try:
        print(f"=== colo.ft.info\n{json.dumps(vm_info(), indent=1)}")
    except Exception as exc:  # pylint: disable=broad-except
        print(f"=== colo.ft.info: {exc!r}")


def layout() -> tuple[str, str]:
    """(primary, secondary) now; each case starts from a protected pair with both agents ready."""
    now = roles()
    agents_ready()
    return next(h for h, m in now.items() if m == "primary"), next(h for h, m in now.items() if m == "secondary")


def test_primary_power_cut():
    primary, secondary = layout()
    fault("primary_power_cut", lambda: lab_cmd("crash", primary), secondary)
    reprotect(primary, secondary, restart=True)


def test_secondary_power_cut():
    primary, secondary = layout()
    fault("secondary_power_cut", lambda: lab_cmd("crash", secondary), primary)
    reprotect(secondary, primary, restart=True)


def qemu_pid(host: str) -> int:
    return int(on_host(host, "cat /run/colo-ft/guest0/qemu.pid").stdout.strip())


def test_primary_qemu_killed():
    """The host stays up: its agent sees its QEMU end without a shutdown and tells the peer's at once."""
    primary, secondary = layout()
    pid = qemu_pid(primary)
    fault("primary_qemu_killed", lambda: on_host(primary, f"kill -KILL {pid}"), secondary)
    reprotect(primary, secondary, restart=False)


def test_secondary_qemu_killed():
    primary, secondary = layout()
    pid = qemu_pid(secondary)
    fault("secondary_qemu_killed", lambda: on_host(secondary, f"kill -KILL {pid}"), primary)
    reprotect(secondary, primary, restart=False)


def test_every_link_between_the_hosts_cut():
    """Both hosts alive, nothing between them: the arbiter gives quorum to the primary's side only; the
    secondary's side fences its guest."""
    primary, secondary = layout()
    since = time.time()
    try:
        fault("split", lambda: lab_cmd("split"), primary)
        wait_for(f"{secondary} fences its guest", lambda: logged_since(secondary, "fenced", since), timeout=30)
        assert agent_state(secondary)["quorate"] is False
    finally:
        lab_cmd("heal", "split")
    reprotect(secondary, primary, restart=False)


def test_checkpoint_link_cut():
    """Only the checkpoint link is cut: both hosts stay in the cluster (corosync's client link), while the guest's
    disk writes (replicated over it) and COLO's checkpoints wait. The primary's agent releases the secondary once
    checkpoints stop (the checkpoint delay plus colo_cluster_checkpoint_stall_s) and serves alone."""
    primary, secondary = layout()
    since = time.time()
    try:
        fault("checkpoint_link_cut", lambda: lab_cmd("cut", "eth2"), primary)
        assert all(agent_state(host)["quorate"] for host in HOSTS)
        assert logged_since(primary, "released", since, why="no checkpoint"), failover_entries(primary)[-3:]
    finally:
        lab_cmd("heal", "eth2")
    reprotect(secondary, primary, restart=False)


def test_corosync_killed_on_the_secondary():
    """The secondary's agent loses corosync: it cannot know quorum, so it fences; the primary goes on alone."""
    primary, secondary = layout()
    since = time.time()
    fault("corosync_killed", lambda: on_host(secondary, "kill -KILL $(pidof corosync)"), primary)
    wait_for(f"{secondary} fences its guest", lambda: logged_since(secondary, "fenced", since), timeout=30)
    # corosync back (systemd may have restarted it already with corosync-qdevice): the host rejoins, and its agent
    # replaces the given-up QEMU by a new secondary.
    on_host(secondary, "systemctl start corosync corosync-qdevice")
    reprotect(secondary, primary, restart=False)


def thaw_after(host: str, seconds: float) -> tuple[float, float]:
    """Let the frozen host hang this long, thaw it; the thaw happened between the two times returned."""
    time.sleep(seconds)
    start = time.monotonic()
    lab_cmd("thaw", host)
    return start, time.monotonic()


def test_primary_frozen_then_thawed():
    """A host that hangs for 10 s and comes back must find its guest taken over and stop its own."""
    primary, secondary = layout()
    since = time.time()
    fault("primary_frozen", lambda: lab_cmd("freeze", primary), secondary,
          then=lambda: thaw_after(primary, 10))
    wait_for(f"the thawed {primary} fences its guest", lambda: logged_since(primary, "fenced", since), timeout=30)
    reprotect(primary, secondary, restart=False)


def test_secondary_frozen_then_thawed():
    """A secondary that hangs for 10 s: the primary's agent releases it (the guest goes on alone); the thawed
    secondary's QEMU, whatever it did by itself, is replaced by a new secondary."""
    primary, secondary = layout()
    fault("secondary_frozen", lambda: lab_cmd("freeze", secondary), primary,
          then=lambda: thaw_after(secondary, 10))
    reprotect(secondary, primary, restart=False)


def test_arbiter_down_keeps_the_pair_protected():
    """Without the arbiter both hosts still hold 2 of 3 votes: nothing fails over, COLO goes on."""
    primary, secondary = layout()
    lab_cmd("crash", "colo-arbiter")
    try:
        time.sleep(5)
        assert roles() == {primary: "primary", secondary: "secondary"}
        assert all(agent_state(host)["quorate"] for host in HOSTS)
    finally:
        lab_cmd("restart", "colo-arbiter")
    wait_for("the quorum device votes again", lambda: all(quorum(host).get("Total votes") == "3" for host in HOSTS), 60)
