"""Plans of the Xen COLO proxy loader (pure: no kernel is touched)."""
from __future__ import annotations

import os

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import xen_proxy as xp
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError


def argvs(steps):
    return [" ".join(s.argv) for s in steps]


def test_primary_on_new_kernel_skips_conntrack_ipv4():
    k = xp.KernelState("6.1.0-50-amd64")
    assert argvs(xp.plan("primary", k, "eth1")) == [
        "modprobe nf_conntrack",
        "modprobe nf_nat",
        "modprobe xt_PMYCOLO sec_dev=eth1",
    ]


def test_secondary_on_old_kernel_loads_conntrack_ipv4():
    k = xp.KernelState("4.0.0-colo")
    assert argvs(xp.plan("secondary", k)) == [
        "modprobe nf_conntrack",
        "modprobe nf_conntrack_ipv4",
        "modprobe nf_nat",
        "modprobe xt_SECCOLO",
    ]


def test_builtin_and_loaded_modules_are_skipped():
    k = xp.KernelState("6.12.0", loaded=frozenset({"nf_nat"}), builtin=frozenset({"nf_conntrack"}))
    assert argvs(xp.plan("secondary", k)) == ["modprobe xt_SECCOLO"]


def test_everything_in_place_plans_nothing():
    k = xp.KernelState(
        "6.12.0",
        loaded=frozenset({"nf_conntrack", "nf_nat", "xt_PMYCOLO"}),
        params={"xt_PMYCOLO": {"sec_dev": "eth1"}},
    )
    assert xp.plan("primary", k, "eth1") == []


def test_loaded_with_other_sec_dev_is_reloaded():
    k = xp.KernelState(
        "6.12.0",
        loaded=frozenset({"nf_conntrack", "nf_nat", "xt_PMYCOLO"}),
        params={"xt_PMYCOLO": {"sec_dev": "eth2"}},
    )
    assert argvs(xp.plan("primary", k, "eth1")) == ["modprobe -r xt_PMYCOLO", "modprobe xt_PMYCOLO sec_dev=eth1"]


def test_missing_module_is_refused():
    k = xp.KernelState("6.12.0", available=frozenset({"nf_conntrack", "nf_nat"}))
    with pytest.raises(ColoError, match="xt_SECCOLO"):
        xp.plan("secondary", k)


def test_primary_needs_forward_nic_and_roles_are_checked():
    with pytest.raises(ColoError, match="sec_dev"):
        xp.plan("primary", xp.KernelState("6.1.0"))
    with pytest.raises(ColoError, match="primary or secondary"):
        xp.plan("plain", xp.KernelState("6.1.0"))


def test_kernel_version_parsing():
    assert xp.kernel_version("4.19.0-21-amd64") == (4, 19)
    with pytest.raises(ColoError):
        xp.kernel_version("garbage")


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def test_read_kernel_from_a_tree(tmp_path):
    rel = "6.1.0-test"
    root = str(tmp_path)
    _write(f"{root}/proc/modules", "nf_nat 57344 0 - Live 0x0\nxt_PMYCOLO 16384 0 - Live 0x0\n")
    # nf_nat and xt_PMYCOLO are loadable (initstate); nf_conntrack built in (no initstate).
    _write(f"{root}/sys/module/nf_nat/initstate", "live\n")
    _write(f"{root}/sys/module/xt_PMYCOLO/initstate", "live\n")
    _write(f"{root}/sys/module/xt_PMYCOLO/parameters/sec_dev", "eth9\n")
    _write(f"{root}/sys/module/nf_conntrack/parameters/hashsize", "1024\n")
    _write(f"{root}/lib/modules/{rel}/modules.builtin", "kernel/net/netfilter/nf_conntrack.ko\n")
    _write(
        f"{root}/lib/modules/{rel}/modules.dep",
        "kernel/net/netfilter/nf_nat.ko.xz: kernel/net/netfilter/nf_conntrack.ko\n"
        "extra/xt_PMYCOLO.ko:\nextra/xt_SECCOLO.ko:\n",
    )
    k = xp.read_kernel(root, rel)
    assert k.loaded == {"nf_nat", "xt_PMYCOLO"}
    assert "nf_conntrack" in k.builtin and "nf_nat" not in k.builtin
    assert k.params["xt_PMYCOLO"] == {"sec_dev": "eth9"}
    assert k.available is not None and {"nf_nat", "xt_PMYCOLO", "xt_SECCOLO"} <= k.available
    assert argvs(xp.plan("primary", k, "eth1")) == ["modprobe -r xt_PMYCOLO", "modprobe xt_PMYCOLO sec_dev=eth1"]
