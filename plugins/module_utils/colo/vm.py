"""One protected VM: its description (VMSpec), the ids and defaults the COLO code shares.

The command line of each role is built in argv.py, the proxy chardevs and
objects in devices.py, and the host side (tap, overlays, ports) in host.py.
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

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,47}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# A system user name as useradd(8) takes it (Debian's NAME_REGEX for system users, at most 32).
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# Settings that change on a running VM without a restart (the launcher records the new value).
LIVE_SETTINGS: tuple[str, ...] = ("checkpoint_delay_ms",)

# Integer COLO settings: (lowest, highest, unit). None for the colo-compare ones keeps QEMU's default
# (compare_timeout 3000 ms, expired_scan_cycle 3000 ms, max_queue_size 1024 packets).
SETTING_RANGES: dict[str, tuple[int, int, str]] = {
    "checkpoint_delay_ms": (1, 3600000, " (ms)"),
    "reconnect_ms": (1, 60000, " (ms)"),
    "compare_timeout": (1, 600000, " (ms)"),
    "expired_scan_cycle": (1, 600000, " (ms)"),
    "max_queue_size": (1, 1048576, " (packets)"),
}


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
    # colo-compare (primary) tuning; None: QEMU's default.
    compare_timeout: int | None = None
    expired_scan_cycle: int | None = None
    max_queue_size: int | None = None
    # x509 files of this host (QEMU's layout: ca-cert.pem, server-cert.pem/-key.pem, client-cert.pem/-key.pem):
    # every COLO channel (migration, NBD, proxy chardevs) is TLS with both sides' certificates checked.
    # None: cleartext (measurements only; docs/security.md).
    tls_dir: str | None = None
    qemu_binary: str = "qemu-system-x86_64"
    qemu_user: str | None = None    # QEMU drops root to this user once started (-run-with); None: root
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
    def qemu_dir(self) -> str:
        """The one directory QEMU may write to after it dropped root (qemu_user): the unix sockets
        it creates at run time (the compare chardevs a failover hot-adds). Everything the launcher
        writes stays in state_dir, which the QEMU user can only traverse (docs/qemu-colo.md,
        "Confined QEMU")."""
        return os.path.join(self.state_dir, "qemu")

    @property
    def qmp_path(self) -> str:
        return os.path.join(self.state_dir, "qmp.sock")

    @property
    def agent_qmp_path(self) -> str:
        """The second QMP monitor, the colo.ft agent's (QEMU serves one client per monitor)."""
        return os.path.join(self.state_dir, "agent.sock")

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
        int_fields = {"memory_mib", "vcpus", "port_base", *SETTING_RANGES, *DEFAULT_PORTS}
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
        p += name_problems(self.name)
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
        p += _setting_problems(self)
        p += _abs_path("active_disk", self.active_disk)
        p += _abs_path("hidden_disk", self.hidden_disk)
        if self.active_disk and self.active_disk == self.hidden_disk:
            p.append("active_disk and hidden_disk must be different files")
        p += _abs_path("state_root", self.state_root, required=True)
        p += _abs_path("tls_dir", self.tls_dir)
        if isinstance(self.state_root, str) and isinstance(self.name, str) and \
                len(os.path.join(self.state_root, self.name, "qemu", "compare_out.sock")) > 107:
            p.append("state_root + name are too long for a unix socket path (108 bytes)")
        if not isinstance(self.qemu_binary, str) or not self.qemu_binary:
            p.append("qemu_binary must be a program name or path")
        if self.qemu_user is not None and (not isinstance(self.qemu_user, str) or not _USER_RE.match(self.qemu_user)
                                           or self.qemu_user == "root"):
            p.append(f"qemu_user {self.qemu_user!r} must be the name of a system user other than root "
                     "(lowercase letters, digits, '_', '-'); leave it unset to run QEMU as root")
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


# Option name (colo.ft.vm, a colo_vms entry) -> VMSpec field, where the names differ.
OPTION_TO_FIELD = {
    "forward_address": "forward_addr",
    "checkpoint_address": "checkpoint_addr",
}


def spec_from_options(name: str, options: dict[str, Any], state_root: str = STATE_ROOT) -> VMSpec:
    """The VMSpec of a VM described by colo.ft.vm's option names (not validated); options left out or None take
    VMSpec's defaults, which are the module's."""
    data: dict[str, Any] = {OPTION_TO_FIELD.get(k, k): v for k, v in options.items() if k != "name" and v is not None}
    return VMSpec.from_dict({"name": name, "state_root": state_root or STATE_ROOT, "disk": None, "mac": None, **data})


def with_overrides(spec: VMSpec, **overrides: Any) -> VMSpec:
    """A copy of spec with the given fields replaced (None values are ignored), checked again."""
    data = spec.to_dict()
    data.update({k: v for k, v in overrides.items() if v is not None})
    new = VMSpec.from_dict(data)
    problems = [p for p in new.problems() if p not in spec.problems()]
    if problems:
        raise InvalidSpec("; ".join(problems))
    return new


def clashes(specs: list[VMSpec], host_resources: bool = True) -> list[str]:
    """What two VMs of one pair cannot share, as sentences (empty list: none).

    Every VM runs on both hosts, so any two of them clash on: the name (QEMU ids, files, the unit), the
    MAC (both would answer for it on the client network) and the disk (two guests writing one image).
    With host_resources (QEMU COLO) also on the tap and on any of the four COLO ports: a primary listens
    on its mirror and compare ports, a secondary on its migration and NBD ports, and after a failover
    either host may hold both roles, so the ports of two VMs must be disjoint.
    """
    p: list[str] = []
    names = [s.name for s in specs if isinstance(s.name, str)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        p.append(f"VM name {name} is used {names.count(name)} times: give each VM its own name")

    def same(what: str, key: Any, fix: str) -> None:
        seen: dict[Any, str] = {}
        for spec in specs:
            value = key(spec)
            if value in (None, ""):
                continue
            if value in seen and seen[value] != spec.name:
                p.append(f"VMs {seen[value]} and {spec.name} have the same {what} {value}: {fix}")
            seen.setdefault(value, spec.name)

    same("MAC", lambda s: s.mac.lower() if isinstance(s.mac, str) else None, "give each VM its own MAC")
    same("disk", lambda s: os.path.normpath(s.disk) if isinstance(s.disk, str) and s.disk else None,
         "give each VM its own disk image")
    if not host_resources:
        return p
    same("tap", lambda s: s.tap_name if isinstance(s.name, str) else None, "set tap, or pick another name")
    used: dict[int, tuple[str, str]] = {}
    shared: dict[tuple[str, str], list[str]] = {}
    for spec in specs:
        for key in DEFAULT_PORTS:
            port = getattr(spec, key)
            if not isinstance(port, int) or isinstance(port, bool):
                continue
            other, other_key = used.setdefault(port, (spec.name, key))
            if other != spec.name:
                shared.setdefault((other, spec.name), []).append(f"{port} ({other_key} of {other}, {key} of {spec.name})")
    for (first, second), ports in shared.items():
        p.append(f"VMs {first} and {second} both use port{'s' if len(ports) > 1 else ''} {', '.join(ports)}: give each VM its own port_base, at "
                 "least 4 apart (a VM uses port_base to port_base+3), or other explicit ports")
    return p


def name_problems(name: Any) -> list[str]:
    """What is wrong with a VM name (empty list: fine); NAME_RE keeps '/', '..' and spaces out of paths,
    units and command lines."""
    if isinstance(name, str) and NAME_RE.match(name):
        return []
    return [f"name {name!r} must start with a letter and hold only letters, digits, '_', '.', '-' "
            "(at most 48 characters): it names QEMU ids, files and a systemd unit"]


def check_locator(name: Any, state_root: Any) -> None:
    """InvalidSpec unless name and state_root can locate a state directory (<state_root>/<name>):
    checked before a VM known only by name is looked up, stopped or cleaned up."""
    problems = name_problems(name) + _abs_path("state_root", state_root, required=True)
    if problems:
        raise InvalidSpec("; ".join(problems))


def _abs_path(key: str, value: Any, required: bool = False, why: str = "") -> list[str]:
    if value is None or value == "":
        return [f"{key} is required" + (f" ({why})" if why else "")] if required else []
    if not isinstance(value, str) or not os.path.isabs(value):
        return [f"{key} {value!r} must be an absolute path"]
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
        return [f"{key} {value!r} contains a control character (newline, tab, NUL, ...)"]
    if os.path.normpath(value) != value.rstrip("/") and value != "/":
        return [f"{key} {value!r} must be a normalised path (no '.', '..' or '//' parts)"]
    return []


def _setting_problems(spec: VMSpec) -> list[str]:
    """The COLO settings out of range (the colo-compare ones may be None: QEMU's default)."""
    p = []
    for key, (low, high, unit) in SETTING_RANGES.items():
        value = getattr(spec, key)
        if value is None and key not in ("checkpoint_delay_ms", "reconnect_ms"):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            p.append(f"{key} must be an integer from {low} to {high}{unit}, got {value!r}")
    return p


def _valid_host(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOST_RE.match(value))
