"""The agent's rules (agent_rules.decide) and the failover log it writes: pure logic and files."""
from __future__ import annotations

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import failover, failover_log
from ansible_collections.colo.ft.plugins.module_utils.colo.agent_rules import (
    FAILOVER,
    FENCE,
    PROTECT,
    READY,
    ClusterView,
    VMView,
    decide,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.state import VMState
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

PRIMARY = VMView("g1", alive=True, mode="primary", last_mode="none", running=True)
SECONDARY = VMView("g1", alive=True, mode="secondary", last_mode="none", running=True)
BOTH = ClusterView(me=1, quorate=True, nodes=(1, 2), peer_seen=True)


def cluster(**changes) -> ClusterView:
    return ClusterView(**{**BOTH.__dict__, "peer_qemu_died": set(), "peer_alone": set(), "peer_ready": set(), **changes})


def test_a_whole_pair_does_nothing():
    assert decide(BOTH, [PRIMARY]) == []


@pytest.mark.parametrize("vm", [PRIMARY, SECONDARY])
def test_peer_host_gone_while_quorate_fails_over(vm):
    assert decide(cluster(nodes=(1,)), [vm]) == [("g1", FAILOVER, "the peer host left the cluster")]


def test_a_peer_never_seen_is_not_lost():
    """An agent that starts on a host alone has seen no peer: it takes nothing over."""
    assert decide(cluster(nodes=(1,), peer_seen=False), [SECONDARY]) == []


@pytest.mark.parametrize("vm", [PRIMARY, SECONDARY])
def test_quorum_lost_fences_every_vm_in_colo(vm):
    assert decide(cluster(quorate=False, nodes=(1,)), [vm]) == [("g1", FENCE, "this host lost quorum")]


def test_quorum_lost_leaves_a_guest_running_alone():
    """Unprotected, or the survivor of a failover: no twin on the other side could take it over."""
    assert decide(cluster(quorate=False, nodes=(1,)), [VMView("g1", alive=True, mode="none", running=True)]) == []


def test_quorum_lost_leaves_a_stopped_vm_and_a_fenced_one():
    paused = VMView("g1", alive=True, mode="none", running=False)
    fenced = VMView("g2", alive=True, mode="primary", running=False, fenced=True)
    assert decide(cluster(quorate=False, nodes=(1,)), [paused, fenced]) == []


def test_no_quorum_notification_yet_means_nothing():
    assert decide(cluster(quorate=None, nodes=()), [PRIMARY]) == []


def test_maintenance_stops_every_rule():
    assert decide(cluster(quorate=False, maintenance=True), [PRIMARY]) == []
    assert decide(cluster(nodes=(1,), maintenance=True), [SECONDARY]) == []


def test_the_peers_qemu_died_fails_over_that_vm_only():
    other = VMView("g2", alive=True, mode="secondary", running=True)
    assert decide(cluster(peer_qemu_died={"g1"}), [SECONDARY, other]) == [("g1", FAILOVER, "the peer's QEMU died")]


ALONE = VMView("g1", alive=True, mode="none", last_mode="primary", running=True)


def test_two_guests_the_side_without_a_decision_is_fenced():
    """A primary that hung and came back: its QEMU left COLO by itself (no decision), the peer took over."""
    assert decide(cluster(peer_serving={"g1": 1000.0}, peer_node=2), [ALONE]) == [
        ("g1", FENCE, "the peer serves this guest by a newer decision (two guests)")]
    assert decide(cluster(peer_serving={"g1": 1000.0}, peer_node=2), [PRIMARY]) != []


def test_two_guests_the_side_with_the_decision_keeps_serving():
    decided = VMView("g1", alive=True, mode="none", running=True, decided_at=1000.0)
    assert decide(cluster(peer_serving={"g1": None}, peer_node=2), [decided]) == []
    assert decide(cluster(peer_serving={"g1": 900.0}, peer_node=2), [decided]) == []
    assert decide(cluster(peer_serving={"g1": 1100.0}, peer_node=2), [decided])[0][1] == FENCE


def test_two_guests_with_equal_decisions_the_higher_node_gives_up():
    decided = VMView("g1", alive=True, mode="none", running=True, decided_at=1000.0)
    assert decide(cluster(me=1, peer_serving={"g1": 1000.0}, peer_node=2), [decided]) == []
    assert decide(cluster(me=2, nodes=(1, 2), peer_serving={"g1": 1000.0}, peer_node=1), [decided])[0][1] == FENCE


def test_two_guests_without_any_decision_nothing_is_done():
    assert decide(cluster(peer_serving={"g1": None}, peer_node=2), [ALONE]) == []


def test_a_peer_serving_what_does_not_serve_here_is_no_conflict():
    assert decide(cluster(peer_serving={"g1": 1000.0}, peer_node=2), [SECONDARY]) == []


HELD = VMView("g1", alive=True, mode="none", last_mode="primary", running=False, held_since=100.0)


def test_a_held_guest_is_fenced_without_quorum_or_when_the_peer_took_it_over():
    assert decide(cluster(quorate=False, nodes=(1,), now=101.0), [HELD])[0][1] == FENCE
    assert decide(cluster(peer_serving={"g1": 99.0}, peer_node=2, now=101.0), [HELD])[0][1] == FENCE


def test_a_held_guest_fails_over_once_membership_settled_and_the_peer_does_not_serve_it():
    waiting = cluster(changed_at=99.0, peer_state_at=100.2, now=101.0)
    assert decide(waiting, [HELD]) == []  # nothing new since the hold: the peer may still say it took over
    settled = cluster(changed_at=100.5, peer_state_at=100.6, now=101.0)
    assert decide(settled, [HELD]) == [("g1", FAILOVER, "COLO failed and the peer does not serve the guest")]
    assert decide(cluster(changed_at=99.0, peer_state_at=100.2, now=102.5), [HELD])[0][1] == FAILOVER  # SETTLE_S
    assert decide(cluster(nodes=(1,), changed_at=99.0, now=100.2), [HELD])[0][1] == FAILOVER  # the peer is gone


def test_a_held_guest_waits_for_the_peer_to_speak():
    """Silence is not "I do not serve it": a peer agent that said nothing since the hold may have taken over."""
    assert decide(cluster(changed_at=100.5, peer_state_at=99.0, now=110.0), [HELD]) == []


def test_a_dead_or_fenced_local_qemu_is_not_acted_on():
    dead = VMView("g1", alive=False, mode="secondary")
    fenced = VMView("g2", alive=True, mode="secondary", fenced=True)
    assert decide(cluster(nodes=(1,)), [dead, fenced]) == []


def test_serving_is_the_primary_or_a_guest_running_alone():
    assert PRIMARY.serving and not SECONDARY.serving
    assert VMView("g", alive=True, mode="none", running=True).serving
    assert not VMView("g", alive=True, mode="none", running=True, fenced=True).serving


# -- the failover log ---------------------------------------------------------------


def test_failover_log_gives_up_one_qemu(tmp_path):
    spec = VMSpec(name="g1", disk="/x.qcow2", mac="52:54:00:00:00:01")
    log = str(tmp_path / "log")
    assert failover_log.given_up(spec, 42, log) is None
    failover_log.append(spec, "took_over", "the peer host left the cluster", "colo-ft-agent", 41, log)
    failover_log.append(spec, "fenced", "this host lost quorum", "colo-ft-agent", 42, log)
    with open(failover_log.path(spec, log), "a") as f:
        f.write('{"torn": ')  # a power cut in the middle of a line
    assert failover_log.given_up(spec, 42, log)["why"] == "this host lost quorum"
    assert failover_log.given_up(spec, 43, log) is None  # a QEMU started afterwards
    assert failover_log.given_up(spec, 41, log) is None
    assert [e["action"] for e in failover_log.entries(spec, log)] == ["took_over", "fenced"]
    assert failover_log.last(spec, log)["boot_id"] == failover_log.boot_id()
    with pytest.raises(ValueError):
        failover_log.append(spec, "resumed", "", "x", 1, log)


def test_a_fence_of_another_boot_gives_up_nothing(tmp_path):
    """pids are reused across boots: a fence entry counts only in the boot it was written in."""
    spec = VMSpec(name="g1", disk="/x.qcow2", mac="52:54:00:00:00:01")
    log = tmp_path / "log"
    log.mkdir()
    (log / "g1.jsonl").write_text('{"action": "fenced", "qemu_pid": 42, "boot_id": "an-earlier-boot"}\n')
    assert failover_log.given_up(spec, 42, str(log)) is None


def test_a_given_up_qemu_is_never_failed_over():
    st = VMState(mode="secondary", last_mode="none")
    with pytest.raises(failover.GivenUp, match="never resumed"):
        failover.plan(st, "auto", given_up={"when": "2026-12-03T10:00:00Z", "why": "this host lost quorum"})


# -- automatic re-protection

SURVIVOR = VMView("g1", alive=True, mode="none", running=True, decided_at=100.0, looked=True)
NO_QEMU = VMView("g1", looked=True)


def test_a_host_back_without_its_qemu_readies_a_secondary_for_the_survivor():
    assert decide(cluster(auto_reprotect=True, peer_alone={"g1"}), [NO_QEMU]) == [
        ("g1", READY, "the peer runs the guest alone after a failover")]


def test_a_host_back_with_a_fenced_qemu_readies_a_secondary_too():
    fenced = VMView("g1", alive=True, mode="none", running=False, fenced=True, looked=True)
    assert decide(cluster(auto_reprotect=True, peer_alone={"g1"}), [fenced])[0][1] == READY


@pytest.mark.parametrize("vm", [PRIMARY, SECONDARY, VMView("g1", alive=True, mode="none", running=True, looked=True)])
def test_a_live_qemu_is_never_replaced(vm):
    """A live guest here (protected, or serving alone) is not stopped for a secondary, whatever the peer says."""
    assert all(action != READY for _vm, action, _why in decide(cluster(auto_reprotect=True, peer_alone={"g1"}), [vm]))


def test_before_the_first_look_nothing_is_readied():
    assert decide(cluster(auto_reprotect=True, peer_alone={"g1"}), [VMView("g1")]) == []


def test_the_survivor_protects_towards_a_readied_secondary():
    assert decide(cluster(auto_reprotect=True, peer_ready={"g1"}), [SURVIVOR]) == [
        ("g1", PROTECT, "the peer readied a new secondary")]


def test_a_guest_alone_without_a_failover_decision_is_not_protected_by_the_agent():
    """site.yml's primary runs alone until the role protects it: the agent must not race the playbook."""
    first_start = VMView("g1", alive=True, mode="none", running=True, looked=True)
    assert decide(cluster(auto_reprotect=True, peer_ready={"g1"}), [first_start]) == []


@pytest.mark.parametrize("changes", [{"auto_reprotect": False}, {"maintenance": True}, {"quorate": False},
                                     {"nodes": (1,)}])
def test_no_reprotection_when_off_paused_not_quorate_or_alone(changes):
    assert decide(cluster(**{"auto_reprotect": True, "peer_alone": {"g1"}, **changes}), [NO_QEMU]) == []
    assert all(action != PROTECT for _vm, action, _why in
               decide(cluster(**{"auto_reprotect": True, "peer_ready": {"g1"}, **changes}), [SURVIVOR]))


def test_a_secondary_starting_colo_is_not_a_second_guest():
    """While COLO starts, a new secondary's vCPUs run before query-colo-status says secondary: not serving, so the
    survivor's newer decision does not fence it; a secondary that left COLO (last_mode secondary) is serving."""
    starting = VMView("g1", alive=True, mode="none", last_mode="none", running=True, looked=True, started_as="secondary")
    assert not starting.serving
    assert decide(cluster(peer_serving={"g1": 100.0}, peer_node=2), [starting]) == []
    left_colo = VMView("g1", alive=True, mode="none", last_mode="secondary", running=True, started_as="secondary")
    assert left_colo.serving


def test_a_secondary_left_over_from_before_the_peers_decision_is_fenced_then_replaced():
    """A secondary that hung while the primary released it: COLO broke, it serves nothing, and it started before the
    peer's decision. A secondary this agent started after that decision is not touched."""
    left = VMView("g1", alive=True, mode="secondary", running=False, looked=True, started_as="secondary",
                  started_at=50.0)
    peer = {"auto_reprotect": True, "peer_alone": {"g1"}, "peer_serving": {"g1": 100.0}}
    assert decide(cluster(**peer), [left]) == [("g1", FENCE, "left over from before the peer ran the guest alone")]
    new = VMView("g1", alive=True, mode="none", running=False, looked=True, started_as="secondary", started_at=150.0)
    assert decide(cluster(**peer), [new]) == []


STALL = "no checkpoint with the secondary: COLO stalled"


def primary_checkpointed(at: float, delay_s: float = 2.0, polled_at: float = 111.5) -> VMView:
    return VMView("g1", alive=True, mode="primary", last_mode="none", running=True, checkpoint_at=at,
                  checkpoint_delay_s=delay_s, polled_at=polled_at)


def test_a_primary_without_a_checkpoint_for_its_delay_plus_the_stall_time_releases_its_secondary():
    """A cut checkpoint link (or a stuck secondary on a host that stays in the cluster) stalls the guest's writes
    and output with no membership change: past delay + checkpoint_stall_s the primary serves alone."""
    stalled = cluster(checkpoint_stall_s=10.0, now=112.0)
    assert decide(stalled, [primary_checkpointed(at=100.0)]) == [("g1", FAILOVER, STALL)]
    assert decide(cluster(checkpoint_stall_s=10.0, now=111.9), [primary_checkpointed(at=100.0)]) == []


def test_a_stall_seen_in_an_old_view_waits_for_a_fresh_look():
    """Right after this host hung, the view is as old as the hang: the peer may have taken over meanwhile."""
    assert decide(cluster(checkpoint_stall_s=10.0, now=130.0), [primary_checkpointed(at=100.0, polled_at=110.0)]) == []


@pytest.mark.parametrize("changes, vm", [
    ({"checkpoint_stall_s": 0.0}, primary_checkpointed(at=0.0, polled_at=999.0)),        # off
    ({"quorate": False, "nodes": (1,)}, primary_checkpointed(at=0.0, polled_at=999.0)),  # fenced, not released
    ({}, VMView("g1", alive=True, mode="secondary", checkpoint_at=0.0, polled_at=999.0)),  # never on a secondary
    ({}, VMView("g1", alive=True, mode="primary", checkpoint_at=0.0, polled_at=999.0, fenced=True)),
    ({"maintenance": True}, primary_checkpointed(at=0.0, polled_at=999.0)),
])
def test_a_stalled_checkpoint_is_not_acted_on_when(changes, vm):
    decided = decide(cluster(**{"checkpoint_stall_s": 10.0, "now": 1000.0, **changes}), [vm])
    assert all(why != STALL for _vm, _action, why in decided), decided
