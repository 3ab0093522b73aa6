"""The COLO proxy definitions (devices.py): one list of QOM types, comp0 tuned from the spec."""
from __future__ import annotations

from ansible_collections.colo.ft.plugins.module_utils.colo import guard
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import FILTER_TYPES, PROXY_QOM_TYPES, compare_props, primary_objects, secondary_objects
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec


def make(**kw) -> VMSpec:
    base = dict(name="guest1", disk="/var/lib/colo/guest1.qcow2", mac="52:54:00:13:01:10", boot="disk",
                forward_addr="10.0.0.1", checkpoint_addr="10.0.0.2")
    base.update(kw)
    return VMSpec(**base)


def test_proxy_qom_types_cover_every_object_defined():
    assert PROXY_QOM_TYPES == ("colo-compare", "filter-mirror", "filter-redirector", "filter-rewriter", "iothread")
    assert set(FILTER_TYPES) < set(PROXY_QOM_TYPES)
    used = {o.qom_type for o in primary_objects(make()) + secondary_objects(make())}
    assert used == set(PROXY_QOM_TYPES)


def test_guard_requires_the_proxy_types():
    feats = guard.features_from_schema([], ["colo-compare", "iothread"])
    assert feats.missing_types == ["filter-mirror", "filter-redirector", "filter-rewriter"]


def test_compare_props_only_the_set_ones():
    assert compare_props(make()) == ()
    assert compare_props(make(expired_scan_cycle=100, compare_timeout=50)) == (
        ("compare_timeout", 50), ("expired_scan_cycle", 100))


def test_primary_objects_carry_compare_settings():
    comp = {o.id: o for o in primary_objects(make(compare_timeout=500, max_queue_size=4096))}["comp0"]
    assert comp.qmp()["compare_timeout"] == 500 and comp.qmp()["max_queue_size"] == 4096
    assert "expired_scan_cycle" not in comp.qmp()
    assert comp.cli().endswith(",compare_timeout=500,max_queue_size=4096")
