"""QEMU's COLO network proxy: hot-add and removal of its objects.

Primary side: filter-mirror m0 copies the packets for the guest to the
secondary; redire1/redire0 route the guest's own output through
colo-compare comp0, which also gets the secondary's output on compare1 and
releases a packet once both sides agree (else a checkpoint follows). Secondary side: f1 injects the
mirrored packets, f2 sends the output back, rew0 fixes TCP sequence numbers.

devices.py defines these chardevs/objects once (command line of a fresh VM);
the planners here hot-add the same definitions for re-protection and remove
them at failover: a step for each chardev or object that is missing (or
present), decided from a VMState, so a second run plans nothing.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.devices import (
    FILTER_TYPES,
    ChardevDef,
    ObjectDef,
    primary_chardevs,
    primary_objects,
    secondary_chardevs,
    secondary_objects,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.plan import Plan, send
from ansible_collections.colo.ft.plugins.module_utils.colo.state import VMState
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import COMPARE_ID, IOTHREAD_ID, VMSpec

REWRITER = "rew0"
# Deletion order: comp0 holds iothread1 and the compare chardevs, so it goes first.
PRIMARY_OBJECTS = (COMPARE_ID, IOTHREAD_ID, "m0", "redire0", "redire1")
PRIMARY_CHARDEVS = ("mirror0", "compare1", "compare0", "compare0-0", "compare_out", "compare_out0")
# rew0 stays on a former secondary: it keeps fixing the sequence numbers of
# TCP connections opened while it was the secondary.
SECONDARY_OBJECTS = ("f2", "f1")
SECONDARY_CHARDEVS = ("red1", "red0")


def object_args(defs: Iterable[ObjectDef], before: str | None = None) -> list[dict[str, Any]]:
    """object-add arguments, filters inserted before `before` if given."""
    out = []
    for d in defs:
        extra: dict[str, Any] = {}
        if before and d.qom_type in FILTER_TYPES:
            extra = {"insert": "before", "position": f"id={before}"}
        out.append(d.qmp(**extra))
    return out


def definitions(spec: VMSpec, side: str) -> tuple[list[ChardevDef], list[ObjectDef]]:
    """The chardevs and objects of one side's proxy (the secondary's rew0 is never hot-added)."""
    if side == "primary":
        return primary_chardevs(spec), primary_objects(spec)
    return secondary_chardevs(spec), [o for o in secondary_objects(spec) if o.id != REWRITER]


def plan_add(plan: Plan, st: VMState, cdefs: Iterable[ChardevDef], odefs: Iterable[ObjectDef]) -> None:
    """Steps creating the missing chardevs then objects, in order.

    A VM that carries rew0 (a former secondary) gets the new filters before
    it, so the guest's traffic is mirrored/compared before any rewriting.
    """
    for c in cdefs:
        if c.id not in st.chardevs:
            plan.add(send("chardev-add", c.qmp(), f"chardev-add {c.id}"), f"chardev-add {c.id}")
    before = REWRITER if st.objects.get(REWRITER) == "filter-rewriter" else None
    for args in object_args(odefs, before):
        if args["id"] not in st.objects:
            where = f" before {before}" if "position" in args else ""
            text = f"object-add {args['qom-type']} {args['id']}{where}"
            plan.add(send("object-add", args, text), text)


def plan_remove(plan: Plan, st: VMState, object_ids: Iterable[str], chardev_ids: Iterable[str] = ()) -> None:
    """Steps for object-del then chardev-remove, each only if present, in the given order."""
    for oid in object_ids:
        if oid in st.objects:
            plan.add(send("object-del", {"id": oid}, f"object-del {oid}"), f"object-del {oid}")
    for cid in chardev_ids:
        if cid in st.chardevs:
            plan.add(send("chardev-remove", {"id": cid}, f"chardev-remove {cid}"), f"chardev-remove {cid}")


def plan_remove_primary(plan: Plan, st: VMState, with_chardevs: bool = False) -> None:
    """comp0, iothread1, m0, redire0, redire1 (the failover order of docs/qemu-colo.md).

    The chardevs stay by default: a later re-protection reuses them and the
    new secondary reconnects to mirror0/compare1.
    """
    plan_remove(plan, st, PRIMARY_OBJECTS, PRIMARY_CHARDEVS if with_chardevs else ())


def plan_remove_secondary(plan: Plan, st: VMState) -> None:
    """f2, f1, then their chardevs red1, red0."""
    plan_remove(plan, st, SECONDARY_OBJECTS, SECONDARY_CHARDEVS)


def plan(st: VMState, spec: VMSpec, side: str, present: bool, with_chardevs: bool = False) -> Plan:
    """colo.ft.proxy: one side's proxy present (what is missing is added) or absent."""
    if side not in ("primary", "secondary"):
        raise ColoError(f"VM {spec.name} was started as {side}: set side (primary or secondary)")
    out = Plan()
    if present:
        if not spec.forward_addr:
            raise ColoError("the proxy needs the primary's forward-link address: set forward_address")
        plan_add(out, st, *definitions(spec, side))
    elif side == "primary":
        plan_remove_primary(out, st, with_chardevs)
    else:
        plan_remove_secondary(out, st)
    return out
