"""The COLO proxy of a VM: chardevs, filters, colo-compare and the replication child.

Each chardev and object is defined once (ChardevDef/ObjectDef) and rendered
either as a command-line option (argv.qemu_argv) or as QMP chardev-add /
object-add arguments, so the failover/resume code re-creates exactly what a
fresh primary would have had (docs/qemu-colo.md, "Primary command line" and
"Secondary command line").
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo.argv import opt
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import COMPARE_ID, IOTHREAD_ID, NETDEV_ID, PARENT_ID, REPLICATION_NODE, VMSpec

# The COLO proxy's QOM types, once: the filters, then what the primary adds.
FILTER_TYPES: tuple[str, ...] = ("filter-mirror", "filter-redirector", "filter-rewriter")
PROXY_QOM_TYPES: tuple[str, ...] = ("colo-compare", *FILTER_TYPES, "iothread")

# x509 credentials of every COLO channel: each QEMU gets both ends, since a failover swaps the roles
# (the secondary's servers become the new primary's clients and the other way round).
TLS_SERVER = "colo-tls-server"
TLS_CLIENT = "colo-tls-client"


@dataclass(frozen=True)
class ChardevDef:
    """A socket chardev: TCP (host/port) or unix (path), server or client."""

    id: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    server: bool = False
    reconnect_ms: int | None = None
    tls_creds: str | None = None  # TLS_SERVER or TLS_CLIENT (TCP only)

    def cli(self) -> str:
        parts = [f"socket,id={self.id}"]
        if self.path is not None:
            parts.append(f"path={opt(self.path)}")
        else:
            parts.append(f"host={self.host},port={self.port}")
        if self.tls_creds:
            parts.append(f"tls-creds={self.tls_creds}")
        if self.server:
            parts.append("server=on,wait=off")  # never block QEMU start on the peer
        if self.reconnect_ms:
            parts.append(f"reconnect-ms={self.reconnect_ms}")
        return ",".join(parts)

    def qmp(self) -> dict[str, Any]:
        """Arguments for QMP chardev-add."""
        if self.path is not None:
            addr: dict[str, Any] = {"type": "unix", "data": {"path": self.path}}
        else:
            addr = {"type": "inet", "data": {"host": self.host, "port": str(self.port)}}
        data: dict[str, Any] = {"addr": addr, "server": self.server}
        if self.tls_creds:
            data["tls-creds"] = self.tls_creds
        if self.server:
            data["wait"] = False
        if self.reconnect_ms:
            data["reconnect-ms"] = self.reconnect_ms
        return {"id": self.id, "backend": {"type": "socket", "data": data}}


@dataclass(frozen=True)
class ObjectDef:
    qom_type: str
    id: str
    props: tuple[tuple[str, Any], ...] = ()

    def cli(self) -> str:
        parts = [self.qom_type, f"id={self.id}"]
        for key, value in self.props:
            if isinstance(value, bool):
                value = "on" if value else "off"
            parts.append(f"{key}={opt(value)}")
        return ",".join(parts)

    def qmp(self, **extra: Any) -> dict[str, Any]:
        """Arguments for QMP object-add (extra: e.g. insert="before", position="id=rew0")."""
        return {"qom-type": self.qom_type, "id": self.id, **dict(self.props), **extra}


def tls_objects(spec: VMSpec) -> list[ObjectDef]:
    """The server and client credentials from spec.tls_dir ([] without TLS).

    The server checks the client's certificate (verify-peer), the client the server's
    certificate and that it names the address it connected to (docs/security.md).
    """
    if not spec.tls_dir:
        return []
    return [ObjectDef("tls-creds-x509", TLS_SERVER, (("endpoint", "server"), ("dir", spec.tls_dir),
                                                     ("verify-peer", True))),
            ObjectDef("tls-creds-x509", TLS_CLIENT, (("endpoint", "client"), ("dir", spec.tls_dir)))]


def tls_creds(objects: dict[str, str] | VMSpec, endpoint: str) -> str | None:
    """The credentials id for one end ("server"/"client") if this VM uses TLS, else None.

    objects: a running VM's {id: QOM type} (state.VMState.objects), or the spec it is started from.
    """
    has = bool(objects.tls_dir) if isinstance(objects, VMSpec) else objects.get(TLS_SERVER) == "tls-creds-x509"
    if not has:
        return None
    return TLS_SERVER if endpoint == "server" else TLS_CLIENT


def primary_chardevs(spec: VMSpec) -> list[ChardevDef]:
    """Chardevs of a primary: mirror0/compare1 on the forward link, two loopback pairs.

    The loopback pairs (compare0/compare0-0, compare_out/compare_out0) are unix
    sockets in the VM's qemu_dir instead of 127.0.0.1 ports: nothing to
    allocate per VM and nothing reachable over the network (qemu_dir: a failover
    hot-adds them after QEMU dropped root).
    """
    sd = spec.qemu_dir
    return [
        ChardevDef("mirror0", host=spec.forward_addr, port=spec.mirror_port, server=True,
                   tls_creds=tls_creds(spec, "server")),
        ChardevDef("compare1", host=spec.forward_addr, port=spec.compare_port, server=True,
                   tls_creds=tls_creds(spec, "server")),
        ChardevDef("compare0", path=os.path.join(sd, "compare0.sock"), server=True),
        ChardevDef("compare0-0", path=os.path.join(sd, "compare0.sock")),
        ChardevDef("compare_out", path=os.path.join(sd, "compare_out.sock"), server=True),
        ChardevDef("compare_out0", path=os.path.join(sd, "compare_out.sock")),
    ]


def primary_objects(spec: VMSpec) -> list[ObjectDef]:
    """Filters, iothread and colo-compare of a primary, in creation order; comp0 carries the
    spec's compare_timeout, expired_scan_cycle and max_queue_size when they are set."""
    vh: tuple[tuple[str, Any], ...] = (("vnet_hdr_support", True),) if spec.vnet_hdr else ()
    return [
        ObjectDef("filter-mirror", "m0", (("netdev", NETDEV_ID), ("queue", "tx"), ("outdev", "mirror0")) + vh),
        ObjectDef("filter-redirector", "redire0", (("netdev", NETDEV_ID), ("queue", "rx"), ("indev", "compare_out")) + vh),
        ObjectDef("filter-redirector", "redire1", (("netdev", NETDEV_ID), ("queue", "rx"), ("outdev", "compare0")) + vh),
        ObjectDef("iothread", IOTHREAD_ID),
        ObjectDef("colo-compare", COMPARE_ID, (("primary_in", "compare0-0"), ("secondary_in", "compare1"),
                                               ("outdev", "compare_out0"), ("iothread", IOTHREAD_ID)) + vh
                  + compare_props(spec)),
    ]


def compare_props(spec: VMSpec) -> tuple[tuple[str, Any], ...]:
    """colo-compare properties of the spec's tuning that are set (None keeps QEMU's default)."""
    props = (("compare_timeout", spec.compare_timeout), ("expired_scan_cycle", spec.expired_scan_cycle),
             ("max_queue_size", spec.max_queue_size))
    return tuple((key, value) for key, value in props if value is not None)


def secondary_chardevs(spec: VMSpec) -> list[ChardevDef]:
    return [
        ChardevDef("red0", host=spec.forward_addr, port=spec.mirror_port, reconnect_ms=spec.reconnect_ms,
                   tls_creds=tls_creds(spec, "client")),
        ChardevDef("red1", host=spec.forward_addr, port=spec.compare_port, reconnect_ms=spec.reconnect_ms,
                   tls_creds=tls_creds(spec, "client")),
    ]


def secondary_objects(spec: VMSpec) -> list[ObjectDef]:
    vh: tuple[tuple[str, Any], ...] = (("vnet_hdr_support", True),) if spec.vnet_hdr else ()
    return [
        ObjectDef("filter-redirector", "f1", (("netdev", NETDEV_ID), ("queue", "tx"), ("indev", "red0")) + vh),
        ObjectDef("filter-redirector", "f2", (("netdev", NETDEV_ID), ("queue", "rx"), ("outdev", "red1")) + vh),
        ObjectDef("filter-rewriter", "rew0", (("netdev", NETDEV_ID), ("queue", "all")) + vh),
    ]


def nbd_node(host: str, port: int, tls: str | None = None) -> dict[str, Any]:
    """Block node options of an NBD client of the secondary's export (tls: client credentials id)."""
    node: dict[str, Any] = {"driver": "nbd", "server": {"type": "inet", "host": host, "port": str(port)},
                            "export": PARENT_ID}
    if tls:
        node["tls-creds"] = tls
    return node


# The replication child's NBD client, named so a failover can yank its connection (failover.yank).
REPLICATION_NBD_NODE = f"{REPLICATION_NODE}-nbd"


def replication_node(host: str, port: int, tls: str | None = None) -> dict[str, Any]:
    """QMP blockdev-add arguments for the primary's replication child: NBD to the secondary's export."""
    return {"driver": "replication", "mode": "primary", "node-name": REPLICATION_NODE,
            "file": {**nbd_node(host, port, tls), "node-name": REPLICATION_NBD_NODE}}


def replication_blockdev(spec: VMSpec, secondary_checkpoint_addr: str | None = None) -> dict[str, Any]:
    """replication_node() towards spec's secondary (or the address given)."""
    host = secondary_checkpoint_addr or spec.checkpoint_addr
    if not host:
        raise InvalidSpec("checkpoint_addr (the secondary's checkpoint-link address) is required")
    return replication_node(host, spec.nbd_port, tls_creds(spec, "client"))
