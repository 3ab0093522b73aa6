"""Checkpoint causes from QEMU's log-backend trace lines (pure logic; the lab's runtime stage reads a real QEMU's)."""
from __future__ import annotations

from ansible_collections.colo.ft.plugins.module_utils.colo.checkpoint_causes import attribute, events

STOP = "colo_vm_state_change Change 'run' => 'stop'"
RUN = "colo_vm_state_change Change 'stop' => 'run'"
IP = ("colo_compare_ip_info ppkt size = {}, ip_src = 10.0.0.2, ip_dst = 10.0.0.9, spkt size = {}, "
      "ip_src = 10.0.0.2, ip_dst = 10.0.0.9")
IP270, IP73 = IP.format(270, 270), IP.format(73, 73)
TCP_MATCH = ["colo_compare_tcp_info pri: seq/ack= 1/2 hdlen= 54 pdlen= 12 offset= 0 flags=24",
             "colo_compare_tcp_info sec: seq/ack= 1/2 hdlen= 54 pdlen= 12 offset= 0 flags=24"]
RELEASE = "colo_compare_main : packet same and release packet"


def causes(lines: list[str]) -> dict:
    stamped = [f"2026-12-03T22:20:24.{i:06d}Z {line}" for i, line in enumerate(lines)]
    return attribute(events(stamped))


def test_a_checkpoint_without_a_request_is_the_timers():
    got = causes([IP270, *TCP_MATCH, RELEASE, STOP, RUN, STOP, RUN])
    assert got == {"checkpoints": {"periodic": 2, "tcp": 0, "udp": 0, "icmp": 0, "other": 0, "compare_timeout": 0},
                   "differing_frames": {}, "dropped_packets": 0}


def test_a_tcp_comparison_with_no_match_forces_the_next_checkpoint_once():
    # Compare asks again for each packet until the checkpoint: one checkpoint for tcp, every difference listed.
    got = causes([IP270, RELEASE, IP73, IP73, "colo_compare_main : pri: this packet has compared", IP270, STOP, RUN,
                  STOP])
    assert (got["checkpoints"]["tcp"], got["checkpoints"]["periodic"]) == (1, 1)
    assert got["differing_frames"] == {"tcp 270": 2, "tcp 73": 1}


def test_the_first_request_since_the_last_checkpoint_names_it():
    got = causes(["colo_old_packet_check_found 1796336067001", IP270, RELEASE, STOP, RUN,
                  "colo_compare_main : compare udp", IP73, "colo_compare_main : packet different", IP270, RELEASE,
                  STOP])
    assert got["checkpoints"] | {"periodic": 0} == {
        "periodic": 0, "tcp": 0, "udp": 1, "icmp": 0, "other": 0, "compare_timeout": 1}
    assert got["differing_frames"] == {"tcp 270": 2, "udp 73": 1}


def test_protocols_other_than_tcp_are_named_by_their_compare():
    got = causes(["colo_compare_main : compare icmp", "colo_compare_main : ICMP: payload size of packets are different",
                  "colo_compare_main : packet different", STOP, RUN,
                  "colo_compare_main : compare other", IP73, "colo_compare_main : packet different", STOP, RUN,
                  "colo_compare_main : compare udp", IP73, RELEASE, IP270, *TCP_MATCH, RELEASE, STOP])
    c = got["checkpoints"]
    assert (c["icmp"], c["other"], c["udp"], c["tcp"], c["periodic"]) == (1, 1, 0, 0, 1)
    assert got["differing_frames"] == {"icmp": 1, "other 73": 1}


def test_drops_are_counted_and_foreign_lines_ignored():
    got = attribute(events(["qemu-system-x86_64: warning: something else",
                            "colo_compare_drop_packet : primary: queue size too big, drop packet",
                            "colo_filter_rewriter_pkt_info not one of ours", STOP]))
    assert got["dropped_packets"] == 1 and got["checkpoints"]["periodic"] == 1


def test_older_timestamps_and_lines_without_one_parse_too():
    assert events(["4242@1796336067.770804:colo_compare_main : compare udp", STOP]) == [
        ("colo_compare_main", "compare udp"), ("colo_vm_state_change", "Change 'run' => 'stop'")]
