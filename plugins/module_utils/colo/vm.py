"""One protected VM: its description (VMSpec) and the QEMU command lines for it.

The argv for the three roles follows docs colo-facts ("Primary command line",
"Secondary command line"), which was measured with QEMU 11.1.3:

* plain:     the guest alone, unprotected (same hardware, plain disk).
* primary:   tap hn0 + filter-mirror/redirectors + colo-compare (iothread) and
             a one-child quorum `colo-disk0` over the image, so protection can
             be added at run time (drive-mirror, replication child, migrate).
* secondary: same hardware and MAC, redirector/rewriter filters fed from the
             primary's forward link, replication (secondary mode) over
             active -> hidden -> parent0, quorum `colo-disk0`, `-incoming defer`.

The proxy chardevs and objects are defined once (ChardevDef/ObjectDef) and
rendered either as command-line options or as QMP chardev-add/object-add
arguments, so the failover/resume code re-creates exactly what a fresh
primary would have had.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec

Role = Literal["plain", "primary", "secondary"]
ROLES: tuple[str, ...] = ("plain", "primary", "secondary")

STATE_ROOT = "/run/colo-ft"
DEFAULT_PORTS = {"mirror_port": 9003, "compare_port": 9004, "migration_port": 9998, "nbd_port": 9999}
# With port_base P: mirror P, compare P+1, migration P+2, NBD P+3.
PORT_OFFSETS = {"mirror_port": 0, "compare_port": 1, "migration_port": 2, "nbd_port": 3}

# Fixed ids the COLO sequences refer to (replication.py, proxy.py, failover.py).
NETDEV_ID = "hn0"
NIC_ID = "nic0"
DISK_ID = "colo-disk0"          # quorum on both sides; x-blockdev-change parent
DISK_DEVICE_ID = "disk0"
PARENT_ID = "parent0"           # secondary: copy of the primary image, NBD export
CHILD_ID = "childs0"            # secondary: replication node
REPLICATION_NODE = "replication0"  # primary: replication child added at run time
IOTHREAD_ID = "iothread1"
COMPARE_ID = "comp0"

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,47}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def opt(value: str) -> str:
    """Escape a value for a QEMU -option string (a comma is written twice)."""
    return str(value).replace(",", ",,")


@dataclass
class VMSpec:
    """A VM description; the same spec is used on both hosts of a pair.

    forward_addr is the primary's forward-link address (the secondary connects
    to its mirror/compare ports); checkpoint_addr is the secondary's
    checkpoint-link address (migration and NBD listen there). After a failover
    the caller swaps them for the new direction.

    accel: "auto" means TCG. /dev/kvm can exist and still not run stock guest
    kernels (the lab's paravirtual KVM), so KVM is used only when asked for.
    """

    name: str
    disk: str
    mac: str
    memory_mib: int = 256
    vcpus: int = 1
    disk_format: Literal["qcow2", "raw"] = "qcow2"
    disk_device: str = "virtio-blk-pci"
    nic_model: str = "e1000"
    boot: Literal["kernel", "disk"] = "kernel"
    kernel: str | None = None
    initrd: str | None = None
    append: str = ""
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    machine: str = "pc"
    cpu: str | None = None
    bridge: str | None = None       # client bridge the tap joins; None: tap left alone
    tap: str | None = None          # default: derived from name (<= 15 chars)
    forward_addr: str | None = None
    checkpoint_addr: str | None = None
    port_base: int | None = None
    mirror_port: int | None = None
    compare_port: int | None = None
    migration_port: int | None = None
    nbd_port: int | None = None
    reconnect_ms: int = 1000
    active_disk: str | None = None  # default: <state_dir>/active.qcow2 (tmpfs under /run)
    hidden_disk: str | None = None  # default: <state_dir>/hidden.qcow2
    checkpoint_delay_ms: int = 2000
    qemu_binary: str = "qemu-system-x86_64"
    state_root: str = STATE_ROOT
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Resolve ports once so to_dict()/from_dict() round-trip to the same VM.
        for key, default in DEFAULT_PORTS.items():
            if getattr(self, key) is None:
                base = self.port_base
                value = base + PORT_OFFSETS[key] if isinstance(base, int) else default
                setattr(self, key, value)

    # -- derived names and paths ---------------------------------------------

    @property
    def state_dir(self) -> str:
        return os.path.join(self.state_root, self.name)

    @property
    def qmp_path(self) -> str:
        return os.path.join(self.state_dir, "qmp.sock")

    @property
    def pid_path(self) -> str:
        return os.path.join(self.state_dir, "qemu.pid")

    @property
    def serial_path(self) -> str:
        return os.path.join(self.state_dir, "serial.log")

    @property
    def log_path(self) -> str:
        return os.path.join(self.state_dir, "qemu.log")

    @property
    def spec_path(self) -> str:
        return os.path.join(self.state_dir, "spec.json")

    @property
    def active_path(self) -> str:
        return self.active_disk or os.path.join(self.state_dir, "active.qcow2")

    @property
    def hidden_path(self) -> str:
        return self.hidden_disk or os.path.join(self.state_dir, "hidden.qcow2")

    @property
    def tap_name(self) -> str:
        """Tap device name: explicit, or colo-<name> cut to IFNAMSIZ with a hash."""
        if self.tap:
            return self.tap
        if len(self.name) <= 10:
            return f"colo-{self.name}"
        digest = hashlib.sha1(self.name.encode()).hexdigest()[:4]
        return f"colo-{self.name[:5]}{digest}"

    @property
    def unit_name(self) -> str:
        """systemd unit: colo-ft-<name>; a non-default state_root gets a suffix so
        two instances of one VM on a host (tests: both roles on one host) differ."""
        if self.state_root == STATE_ROOT:
            return f"colo-ft-{self.name}"
        return f"colo-ft-{self.name}-{hashlib.sha1(self.state_root.encode()).hexdigest()[:6]}"

    @property
    def effective_accel(self) -> str:
        return "kvm" if self.accel == "kvm" else "tcg"

    @property
    def vnet_hdr(self) -> bool:
        # virtio-net frames carry a vnet header the filters must know about.
        return self.nic_model.startswith("virtio")

    # -- (de)serialisation ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VMSpec:
        if not isinstance(data, dict):
            raise InvalidSpec(f"a VM description must be a mapping, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidSpec(f"unknown VM field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        missing = [k for k in ("name", "disk", "mac") if data.get(k) in (None, "")]
        if missing:
            raise InvalidSpec(f"VM description lacks required field(s): {', '.join(missing)}")
        kwargs: dict[str, Any] = {}
        int_fields = {"memory_mib", "vcpus", "port_base", "reconnect_ms", "checkpoint_delay_ms", *DEFAULT_PORTS}
        for key, value in data.items():
            if key in int_fields and value is not None and not isinstance(value, bool):
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise InvalidSpec(f"VM field {key} must be an integer, got {value!r}") from None
            if key == "extra_args":
                if value is None:
                    value = []
                if isinstance(value, str) or not isinstance(value, (list, tuple)):
                    raise InvalidSpec("extra_args must be a list of strings (one argv element each)")
                value = [str(v) for v in value]
            kwargs[key] = value
        return cls(**kwargs)

    # -- validation ------------------------------------------------------------

    def problems(self, role: str | None = None) -> list[str]:
        """Every problem found, as sentences (empty list: valid)."""
        p: list[str] = []
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            p.append(f"name {self.name!r} must start with a letter and hold only letters, digits, '_', '.', '-' "
                     "(at most 48 characters): it names QEMU ids, files and a systemd unit")
        if not isinstance(self.memory_mib, int) or isinstance(self.memory_mib, bool) or self.memory_mib <= 0:
            p.append(f"memory_mib must be a positive integer (MiB), got {self.memory_mib!r}")
        if not isinstance(self.vcpus, int) or isinstance(self.vcpus, bool) or not 1 <= self.vcpus <= 255:
            p.append(f"vcpus must be an integer from 1 to 255, got {self.vcpus!r}")
        p += _abs_path("disk", self.disk, required=True)
        if self.disk_format not in ("qcow2", "raw"):
            p.append(f"disk_format must be qcow2 or raw, got {self.disk_format!r}")
        for key in ("disk_device", "nic_model", "machine"):
            value = getattr(self, key)
            if not isinstance(value, str) or not _MODEL_RE.match(value):
                p.append(f"{key} {value!r} is not a QEMU device/machine name")
        if self.cpu is not None and (not isinstance(self.cpu, str) or not re.match(r"^[A-Za-z0-9_.,=+-]+$", self.cpu)):
            p.append(f"cpu {self.cpu!r} is not a QEMU CPU model")
        if not isinstance(self.mac, str) or not _MAC_RE.match(self.mac):
            p.append(f"mac {self.mac!r} must look like 52:54:00:12:34:56")
        elif int(self.mac[:2], 16) & 1:
            p.append(f"mac {self.mac} is a multicast address (lowest bit of the first byte set)")
        if self.boot == "kernel":
            p += _abs_path("kernel", self.kernel, required=True, why="boot: kernel needs a kernel image")
            p += _abs_path("initrd", self.initrd)
        elif self.boot == "disk":
            if self.kernel or self.initrd:
                p.append("kernel/initrd are set but boot is 'disk' (use boot: kernel)")
        else:
            p.append(f"boot must be 'kernel' or 'disk', got {self.boot!r}")
        if not isinstance(self.append, str) or "\n" in self.append:
            p.append("append must be a single-line string")
        if self.accel not in ("auto", "kvm", "tcg"):
            p.append(f"accel must be auto, kvm or tcg, got {self.accel!r}")
        for key in ("bridge", "tap"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not _IFNAME_RE.match(value)):
                p.append(f"{key} {value!r} is not a valid interface name (1-15 of letters, digits, '_', '.', '-')")
        for key in ("forward_addr", "checkpoint_addr"):
            value = getattr(self, key)
            if value is not None and not _valid_host(value):
                p.append(f"{key} {value!r} is not an IP address or host name")
        if role == "primary" and not self.forward_addr:
            p.append("forward_addr (the primary's forward-link address) is required for role primary")
        if role == "secondary" and not self.forward_addr:
            p.append("forward_addr (the primary's forward-link address, where the secondary connects) "
                     "is required for role secondary")
        if self.port_base is not None and (not isinstance(self.port_base, int) or not 1 <= self.port_base <= 65532):
            p.append(f"port_base must be an integer from 1 to 65532, got {self.port_base!r}")
        ports = {k: getattr(self, k) for k in DEFAULT_PORTS}
        for key, value in ports.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                p.append(f"{key} must be a port number from 1 to 65535, got {value!r}")
        seen: dict[Any, str] = {}
        for key, value in ports.items():
            if value in seen:
                p.append(f"{key} and {seen[value]} are both {value}: the four COLO ports must differ")
            else:
                seen[value] = key
        if not isinstance(self.reconnect_ms, int) or self.reconnect_ms <= 0:
            p.append(f"reconnect_ms must be a positive integer, got {self.reconnect_ms!r}")
        if not isinstance(self.checkpoint_delay_ms, int) or self.checkpoint_delay_ms <= 0:
            p.append(f"checkpoint_delay_ms must be a positive integer, got {self.checkpoint_delay_ms!r}")
        p += _abs_path("active_disk", self.active_disk)
        p += _abs_path("hidden_disk", self.hidden_disk)
        if self.active_disk and self.active_disk == self.hidden_disk:
            p.append("active_disk and hidden_disk must be different files")
        p += _abs_path("state_root", self.state_root, required=True)
        if isinstance(self.state_root, str) and isinstance(self.name, str) and \
                len(os.path.join(self.state_root, self.name, "compare_out.sock")) > 107:
            p.append("state_root + name are too long for a unix socket path (108 bytes)")
        if not isinstance(self.qemu_binary, str) or not self.qemu_binary:
            p.append("qemu_binary must be a program name or path")
        if not isinstance(self.extra_args, list) or not all(isinstance(a, str) for a in self.extra_args):
            p.append("extra_args must be a list of strings (one argv element each)")
        if role is not None and role not in ROLES:
            p.append(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        return p

    def validate(self, role: str | None = None) -> VMSpec:
        """Raise InvalidSpec listing every problem; returns self for chaining."""
        problems = self.problems(role)
        if problems:
            who = self.name if isinstance(self.name, str) else "?"
            raise InvalidSpec(f"invalid VM description {who!r}: " + "; ".join(problems))
        return self


def _abs_path(key: str, value: Any, required: bool = False, why: str = "") -> list[str]:
    if value is None or value == "":
        return [f"{key} is required" + (f" ({why})" if why else "")] if required else []
    if not isinstance(value, str) or not os.path.isabs(value):
        return [f"{key} {value!r} must be an absolute path"]
    if "\n" in value or "\0" in value:
        return [f"{key} contains a newline or NUL byte"]
    return []


def _valid_host(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOST_RE.match(value))


# -- proxy building blocks (command line and QMP from one definition) ----------

@dataclass(frozen=True)
class ChardevDef:
    """A socket chardev: TCP (host/port) or unix (path), server or client."""

    id: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    server: bool = False
    reconnect_ms: int | None = None

    def cli(self) -> str:
        parts = [f"socket,id={self.id}"]
        if self.path is not None:
            parts.append(f"path={opt(self.path)}")
        else:
            parts.append(f"host={self.host},port={self.port}")
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


def primary_chardevs(spec: VMSpec) -> list[ChardevDef]:
    """Chardevs of a primary: mirror0/compare1 on the forward link, two loopback pairs.

    The loopback pairs (compare0/compare0-0, compare_out/compare_out0) are unix
    sockets in the VM's state directory instead of 127.0.0.1 ports: nothing to
    allocate per VM and nothing reachable over the network.
    """
    sd = spec.state_dir
    return [
        ChardevDef("mirror0", host=spec.forward_addr, port=spec.mirror_port, server=True),
        ChardevDef("compare1", host=spec.forward_addr, port=spec.compare_port, server=True),
        ChardevDef("compare0", path=os.path.join(sd, "compare0.sock"), server=True),
        ChardevDef("compare0-0", path=os.path.join(sd, "compare0.sock")),
        ChardevDef("compare_out", path=os.path.join(sd, "compare_out.sock"), server=True),
        ChardevDef("compare_out0", path=os.path.join(sd, "compare_out.sock")),
    ]


def primary_objects(spec: VMSpec) -> list[ObjectDef]:
    """Filters, iothread and colo-compare of a primary, in creation order."""
    vh: tuple[tuple[str, Any], ...] = (("vnet_hdr_support", True),) if spec.vnet_hdr else ()
    return [
        ObjectDef("filter-mirror", "m0", (("netdev", NETDEV_ID), ("queue", "tx"), ("outdev", "mirror0")) + vh),
        ObjectDef("filter-redirector", "redire0", (("netdev", NETDEV_ID), ("queue", "rx"), ("indev", "compare_out")) + vh),
        ObjectDef("filter-redirector", "redire1", (("netdev", NETDEV_ID), ("queue", "rx"), ("outdev", "compare0")) + vh),
        ObjectDef("iothread", IOTHREAD_ID),
        ObjectDef("colo-compare", COMPARE_ID, (("primary_in", "compare0-0"), ("secondary_in", "compare1"),
                                               ("outdev", "compare_out0"), ("iothread", IOTHREAD_ID)) + vh),
    ]


def secondary_chardevs(spec: VMSpec) -> list[ChardevDef]:
    return [
        ChardevDef("red0", host=spec.forward_addr, port=spec.mirror_port, reconnect_ms=spec.reconnect_ms),
        ChardevDef("red1", host=spec.forward_addr, port=spec.compare_port, reconnect_ms=spec.reconnect_ms),
    ]


def secondary_objects(spec: VMSpec) -> list[ObjectDef]:
    vh: tuple[tuple[str, Any], ...] = (("vnet_hdr_support", True),) if spec.vnet_hdr else ()
    return [
        ObjectDef("filter-redirector", "f1", (("netdev", NETDEV_ID), ("queue", "tx"), ("indev", "red0")) + vh),
        ObjectDef("filter-redirector", "f2", (("netdev", NETDEV_ID), ("queue", "rx"), ("outdev", "red1")) + vh),
        ObjectDef("filter-rewriter", "rew0", (("netdev", NETDEV_ID), ("queue", "all")) + vh),
    ]


def replication_blockdev(spec: VMSpec, secondary_checkpoint_addr: str | None = None) -> dict[str, Any]:
    """QMP blockdev-add arguments for the primary's replication child (NBD to the secondary)."""
    host = secondary_checkpoint_addr or spec.checkpoint_addr
    if not host:
        raise InvalidSpec("checkpoint_addr (the secondary's checkpoint-link address) is required")
    return {"driver": "replication", "mode": "primary", "node-name": REPLICATION_NODE,
            "file": {"driver": "nbd", "server": {"type": "inet", "host": host, "port": str(spec.nbd_port)},
                     "export": PARENT_ID}}


# -- command lines ------------------------------------------------------------------

def qemu_argv(spec: VMSpec, role: str, paused: bool = False, daemonize: bool = False,
              proxy: bool = True) -> list[str]:
    """The full QEMU argv for a role ("plain", "primary", "secondary").

    paused adds -S (boot under COLO; unreliable under TCG, see colo-facts).
    daemonize adds -daemonize (used where systemd is not PID 1).
    proxy=False starts a primary without the filters and colo-compare (the
    chardevs, iothread and quorum stay): measured on QEMU 11.1.3, colo-compare
    holds the guest's output until a checkpoint, so a primary started with
    them cannot answer any client before a secondary is attached. Hot-add
    primary_objects() when protecting.
    """
    spec.validate(role)
    sd = spec.state_dir
    argv = [
        spec.qemu_binary,
        "-name", f"{opt(spec.name)},debug-threads=on",
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-msg", "timestamp=on",
        "-machine", spec.machine,
        "-accel", spec.effective_accel,
    ]
    if spec.cpu:
        argv += ["-cpu", spec.cpu]
    argv += [
        "-m", str(spec.memory_mib),
        "-smp", str(spec.vcpus),
        "-qmp", f"unix:{opt(spec.qmp_path)},server=on,wait=off",
        "-serial", f"file:{opt(spec.serial_path)}",
        "-pidfile", spec.pid_path,
    ]
    if spec.boot == "kernel":
        argv += ["-kernel", spec.kernel]  # type: ignore[list-item]  # validated
        if spec.initrd:
            argv += ["-initrd", spec.initrd]
        if spec.append:
            argv += ["-append", spec.append]

    # Network: a tap made and bridged beforehand (see tap_plumbing), no scripts.
    netdev = f"tap,id={NETDEV_ID},ifname={spec.tap_name},vhost=off,script=no,downscript=no"
    if spec.vnet_hdr:
        netdev += ",vnet_hdr=on"
    # romfile= : no PXE option ROM needed (kernel or disk boot), no ipxe package needed.
    argv += ["-netdev", netdev,
             "-device", f"{spec.nic_model},id={NIC_ID},netdev={NETDEV_ID},mac={spec.mac.lower()},romfile="]

    img = opt(spec.disk)
    if role == "plain":
        argv += ["-drive", f"if=none,id={DISK_ID},driver={spec.disk_format},file.filename={img}"]
    elif role == "primary":
        for c in primary_chardevs(spec):
            argv += ["-chardev", c.cli()]
        for o in primary_objects(spec):
            if proxy or o.qom_type == "iothread":
                argv += ["-object", o.cli()]
        argv += ["-drive", f"if=none,id={DISK_ID},driver=quorum,read-pattern=fifo,vote-threshold=1,"
                           f"children.0.file.filename={img},children.0.driver={spec.disk_format}"]
    elif role == "secondary":
        for c in secondary_chardevs(spec):
            argv += ["-chardev", c.cli()]
        for o in secondary_objects(spec):
            argv += ["-object", o.cli()]
        argv += [
            "-drive", f"if=none,id={PARENT_ID},driver={spec.disk_format},file.filename={img}",
            "-drive", f"if=none,id={CHILD_ID},driver=replication,mode=secondary,top-id={DISK_ID},"
                      f"file.driver=qcow2,file.file.filename={opt(spec.active_path)},"
                      f"file.backing.driver=qcow2,file.backing.file.filename={opt(spec.hidden_path)},"
                      f"file.backing.backing={PARENT_ID}",
            "-drive", f"if=none,id={DISK_ID},driver=quorum,read-pattern=fifo,vote-threshold=1,children.0={CHILD_ID}",
        ]
    disk_dev = f"{spec.disk_device},id={DISK_DEVICE_ID},drive={DISK_ID}"
    if spec.boot == "disk":
        disk_dev += ",bootindex=1"
    argv += ["-device", disk_dev]
    if role == "secondary":
        argv += ["-incoming", "defer"]
    if paused:
        argv.append("-S")
    if daemonize:
        # -daemonize points stderr at /dev/null unless a log file is set (-D):
        # keep QEMU's runtime errors (chardev, COLO) in qemu.log.
        argv += ["-daemonize", "-D", spec.log_path]
    argv += spec.extra_args
    return argv


def listen_ports(spec: VMSpec, role: str) -> list[tuple[str, str, int]]:
    """(purpose, address, port) of the TCP ports QEMU listens on in this role."""
    if role == "primary":
        return [("mirror", spec.forward_addr, spec.mirror_port), ("compare", spec.forward_addr, spec.compare_port)]
    if role == "secondary":
        return [("migration", spec.checkpoint_addr, spec.migration_port), ("NBD", spec.checkpoint_addr, spec.nbd_port)]
    return []


@dataclass(frozen=True)
class TapPlan:
    """What must exist before QEMU opens the tap: a persistent tap, up, on the bridge."""

    tap: str
    bridge: str | None
    commands: tuple[tuple[str, ...], ...]


def tap_plumbing(spec: VMSpec) -> TapPlan:
    """Commands that create the VM's tap and put it on its bridge.

    The launcher creates the tap itself (ip tuntap add) instead of relying on a
    script=: Debian's /etc/qemu-ifup joins the bridge of the default route,
    and COLO hosts have no default route on the client bridge.
    """
    tap = spec.tap_name
    cmds: list[tuple[str, ...]] = [("ip", "tuntap", "add", "dev", tap, "mode", "tap")]
    if spec.vnet_hdr:
        cmds[0] = (*cmds[0], "vnet_hdr")
    if spec.bridge:
        cmds.append(("ip", "link", "set", "dev", tap, "master", spec.bridge))
    cmds.append(("ip", "link", "set", "dev", tap, "up"))
    return TapPlan(tap, spec.bridge, tuple(cmds))
