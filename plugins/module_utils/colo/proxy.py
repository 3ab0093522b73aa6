"""QEMU's COLO network proxy: hot-add and removal of its objects.

Primary side: filter-mirror m0 copies the packets for the guest to the
secondary; redire1/redire0 route the guest's own output through
colo-compare comp0, which also gets the secondary's output on compare1 and
releases a packet once both sides agree (else a checkpoint follows). Secondary side: f1 injects the
mirrored packets, f2 sends the output back, rew0 fixes TCP sequence numbers.

vm.py defines these chardevs/objects once (command line of a fresh VM);
this module hot-adds the same definitions for re-protection and removes
them at failover. Everything is idempotent: /objects and query-chardev are
read first.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import (
    COMPARE_ID,
    IOTHREAD_ID,
    ChardevDef,
    ObjectDef,
    VMSpec,
    primary_chardevs,
    primary_objects,
)

REWRITER = "rew0"
# Deletion order: comp0 holds iothread1 and the compare chardevs, so it goes first.
PRIMARY_OBJECTS = (COMPARE_ID, IOTHREAD_ID, "m0", "redire0", "redire1")
PRIMARY_CHARDEVS = ("mirror0", "compare1", "compare0", "compare0-0", "compare_out", "compare_out0")
# rew0 stays on a former secondary: it keeps fixing the sequence numbers of
# TCP connections opened while it was the secondary.
SECONDARY_OBJECTS = ("f2", "f1")
SECONDARY_CHARDEVS = ("red1", "red0")
FILTER_TYPES = ("filter-mirror", "filter-redirector", "filter-rewriter")


@dataclass(frozen=True)
class CompareOptions:
    """colo-compare tuning; None keeps QEMU's default."""

    compare_timeout: int | None = None  # ms a packet waits for its twin before release (QEMU: 3000)
    expired_scan_cycle: int | None = None  # ms between scans for expired packets (QEMU: 3000)
    max_queue_size: int | None = None  # packets queued per connection (QEMU: 1024)

    def props(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if v is not None}


def objects(qmp: QMPClient) -> dict[str, str]:
    """{id: QOM type} of the objects under /objects."""
    out: dict[str, str] = {}
    for prop in qmp.execute("qom-list", {"path": "/objects"}):
        t = prop.get("type", "")
        if t.startswith("child<"):
            out[prop["name"]] = t[len("child<"):-1]
    return out


def chardevs(qmp: QMPClient) -> set[str]:
    return {c["label"] for c in qmp.execute("query-chardev")}


def object_args(
    defs: Iterable[ObjectDef], before: str | None = None, compare: CompareOptions | None = None
) -> list[dict[str, Any]]:
    """object-add arguments: filters inserted before `before` if given, comp0 tuned."""
    out = []
    for d in defs:
        extra: dict[str, Any] = {}
        if before and d.qom_type in FILTER_TYPES:
            extra = {"insert": "before", "position": f"id={before}"}
        if d.qom_type == "colo-compare" and compare is not None:
            extra.update(compare.props())
        out.append(d.qmp(**extra))
    return out


def add(
    qmp: QMPClient, cdefs: Iterable[ChardevDef], odefs: Iterable[ObjectDef], compare: CompareOptions | None = None
) -> list[str]:
    """Create the missing chardevs then objects, in order.

    A VM that carries rew0 (a former secondary) gets the new filters before
    it, so the guest's traffic is mirrored/compared before any rewriting.
    """
    done: list[str] = []
    have_cd = chardevs(qmp)
    for c in cdefs:
        if c.id not in have_cd:
            qmp.execute("chardev-add", c.qmp())
            done.append(f"chardev-add {c.id}")
    have = objects(qmp)
    before = REWRITER if have.get(REWRITER) == "filter-rewriter" else None
    for args in object_args(odefs, before, compare):
        if args["id"] not in have:
            qmp.execute("object-add", args)
            where = f" before {before}" if "position" in args else ""
            done.append(f"object-add {args['qom-type']} {args['id']}{where}")
    return done


def add_primary(qmp: QMPClient, spec: VMSpec, compare: CompareOptions | None = None) -> list[str]:
    """Hot-add the proxy a primary of spec would have had on its command line.

    spec.forward_addr must be this host's forward-link address (the new
    secondary connects there).
    """
    return add(qmp, primary_chardevs(spec), primary_objects(spec), compare)


def remove(qmp: QMPClient, object_ids: Iterable[str], chardev_ids: Iterable[str] = ()) -> list[str]:
    """object-del then chardev-remove, each only if present, in the given order."""
    done: list[str] = []
    have = objects(qmp)
    for oid in object_ids:
        if oid in have:
            qmp.execute("object-del", {"id": oid})
            done.append(f"object-del {oid}")
    have_cd = chardevs(qmp)
    for cid in chardev_ids:
        if cid in have_cd:
            qmp.execute("chardev-remove", {"id": cid})
            done.append(f"chardev-remove {cid}")
    return done


def remove_primary(qmp: QMPClient, with_chardevs: bool = False) -> list[str]:
    """comp0, iothread1, m0, redire0, redire1 (colo-facts' failover order).

    The chardevs stay by default: a later re-protection reuses them and the
    new secondary reconnects to mirror0/compare1.
    """
    return remove(qmp, PRIMARY_OBJECTS, PRIMARY_CHARDEVS if with_chardevs else ())


def remove_secondary(qmp: QMPClient) -> list[str]:
    """f2, f1, then their chardevs red1, red0."""
    return remove(qmp, SECONDARY_OBJECTS, SECONDARY_CHARDEVS)
