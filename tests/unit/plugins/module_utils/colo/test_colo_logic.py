"""Pure decisions of the COLO runtime: capabilities, statistics, overlays, graph, proxy args."""
from __future__ import annotations

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import migration, proxy, replication, stats
from ansible_collections.colo.ft.plugins.module_utils.colo.state import VMState
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import UnsupportedQemu
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import primary_objects
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec


# -- capabilities -----------------------------------------------------------------


@pytest.mark.parametrize(
    "version, caps",
    [
        ((11, 1, 3), {"x-colo": True, "return-path": True}),
        ((11, 0, 0), {"x-colo": True, "return-path": True}),
        ((12, 0, 0), {"x-colo": True, "return-path": True}),
        ((7, 2, 0), {"x-colo": True}),
    ],
)
def test_capabilities_by_version(version, caps):
    assert migration.colo_capabilities(version) == caps


@pytest.mark.parametrize("version", [(10, 0, 13), (10, 1, 0)])
def test_known_broken_versions_are_refused(version):
    with pytest.raises(UnsupportedQemu, match="known broken"):
        migration.colo_capabilities(version)


# -- checkpoint statistics ------------------------------------------------------------


def ev(name, t):
    return {"event": name, "timestamp": {"seconds": int(t), "microseconds": round((t - int(t)) * 1e6)}}


def test_pauses_pair_stop_with_next_resume():
    events = [ev("RESUME", 99.0), ev("STOP", 100.0), ev("RESUME", 100.08), ev("STOP", 102.0), ev("RESUME", 102.2),
              ev("STOP", 104.0)]
    assert [round(p) for p in stats.pauses_from_events(events)] == [80, 200]
    # The window cuts events by QEMU's timestamps.
    assert [round(p) for p in stats.pauses_from_events(events, since=101.0)] == [200]
    assert stats.pauses_from_events(events, until=101.0) == pytest.approx([80.0], abs=0.01)


def test_stats_summary():
    s = stats.CheckpointStats(10.0, [50.0, 70.0, 200.0])
    d = s.to_dict()
    assert d == {"window_s": 10.0, "count": 3, "pause_p50_ms": 70.0, "pause_p99_ms": 200.0, "pause_max_ms": 200.0,
                 "per_second": 0.3}
    empty = stats.CheckpointStats(5.0).to_dict()
    assert empty["pause_p99_ms"] is None
    assert empty["count"] == 0 and empty["pause_p50_ms"] is None


# -- NBD ------------------------------------------------------------------------------------


def test_nbd_uri():
    assert replication.nbd_uri("10.213.3.12", 9999, "parent0") == "nbd://10.213.3.12:9999/parent0"
    assert replication.nbd_uri("fd00::2", 9999, "parent0") == "nbd://[fd00::2]:9999/parent0"


# -- block graph ------------------------------------------------------------------------------

GRAPH = {
    "nodes": [
        {"name": "colo-disk0", "type": "block-backend", "id": 1},
        {"name": "#block095", "type": "block-driver", "id": 2},
        {"name": "#block253", "type": "block-driver", "id": 3},
        {"name": "replication0", "type": "block-driver", "id": 5},
        {"name": "#block173", "type": "block-driver", "id": 4},
    ],
    "edges": [
        {"name": "root", "parent": 1, "child": 2},
        {"name": "children.0", "parent": 2, "child": 3},
        {"name": "children.1", "parent": 2, "child": 5},
        {"name": "file", "parent": 3, "child": 4},
    ],
}


def test_quorum_children_from_graph():
    assert replication.children_from_graph(GRAPH, "colo-disk0") == {"children.0": "#block253",
                                                                    "children.1": "replication0"}
    assert replication.children_from_graph(GRAPH, "nope") is None


def test_quorum_given_by_node_name():
    g = {"nodes": [{"name": "colo-disk0", "type": "block-driver", "id": 7}, {"name": "a", "type": "block-driver", "id": 8}],
         "edges": [{"name": "children.0", "parent": 7, "child": 8}]}
    assert replication.children_from_graph(g, "colo-disk0") == {"children.0": "a"}


# -- proxy arguments ---------------------------------------------------------------------------


def spec(**kw):
    return VMSpec(name="vm1", disk="/srv/vm1.qcow2", mac="52:54:00:13:01:10", kernel="/k", forward_addr="10.213.2.11",
                  **kw)


def test_filters_go_before_rew0_on_a_former_secondary():
    args = proxy.object_args(primary_objects(spec()), before="rew0")
    filters = [a for a in args if a["qom-type"].startswith("filter-")]
    assert [a["id"] for a in filters] == ["m0", "redire0", "redire1"]
    assert all(a["insert"] == "before" and a["position"] == "id=rew0" for a in filters)
    others = [a for a in args if not a["qom-type"].startswith("filter-")]
    assert all("position" not in a for a in others)


def test_fresh_primary_has_no_position_and_compare_gets_options():
    args = proxy.object_args(primary_objects(spec(compare_timeout=1000, max_queue_size=2048)), None)
    assert all("position" not in a for a in args)
    comp = next(a for a in args if a["id"] == "comp0")
    assert comp["compare_timeout"] == 1000 and comp["max_queue_size"] == 2048 and "expired_scan_cycle" not in comp
    assert comp["primary_in"] == "compare0-0" and comp["secondary_in"] == "compare1"


def test_virtio_net_sets_vnet_hdr_on_every_filter():
    args = proxy.object_args(primary_objects(spec(nic_model="virtio-net-pci")))
    assert all(a.get("vnet_hdr_support") is True for a in args if a["qom-type"] != "iothread")
    args = proxy.object_args(primary_objects(spec()))
    assert not any("vnet_hdr_support" in a for a in args)


def test_deletion_order_starts_with_compare():
    assert proxy.PRIMARY_OBJECTS[0] == "comp0"
    assert proxy.SECONDARY_OBJECTS == ("f2", "f1") and proxy.SECONDARY_CHARDEVS == ("red1", "red0")


# -- status --------------------------------------------------------------------------------------


def test_role_names():
    assert VMState(mode="primary", quorum_children={"children.1": "replication0"}).role == "primary"
    assert VMState(mode="secondary").role == "secondary"
    assert VMState(mode="none", quorum_children={"children.1": "replication0"}).role == "primary-unprotected"
    assert VMState(mode="none").role == "standalone"


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([3, 1, 2], 0) == 1  # the smallest, whatever the order
    assert stats.percentile([], 50) is None


def test_nbd_uri_tls():
    assert replication.nbd_uri("10.213.3.12", 9999, "parent0", "colo-tls-client") == "nbd+tls://10.213.3.12:9999/parent0"
