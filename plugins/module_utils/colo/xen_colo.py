"""The Xen COLO backend: the ordered commands each side of a pair runs (the seed's "Run COLO").

Under Xen, COLO is driven by the toolstack, not by QMP: the primary's domain is created paused from an xl
config whose disk carries the COLO block-replication keys and whose vif names the forward NIC, then
``xl remus -c -u`` starts COLO towards the secondary (over ssh, as Remus does). The network proxy is
colo-proxy's kernel modules (xen_proxy.py plans their modprobe). The secondary needs the active and hidden
overlays of each disk on a ramfs, sized from the base image.

plan_secondary(), plan_primary(), plan_failover() and plan_stop() are pure: they take a HostState snapshot and return
the commands still needed, in order ([] when all is in place). read_state() takes the snapshot on the host
and run() executes a plan; the module colo.ft.xen_colo is a thin layer over them.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

from ansible_collections.colo.ft.plugins.module_utils.colo import proc
from ansible_collections.colo.ft.plugins.module_utils.colo import xen_proxy
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.host import image_info

# xl names the domain on the receiving side of a migration (and of Remus/COLO) "<name>--incoming"
# until the stream ends; a secondary that takes over is renamed back.
INCOMING_SUFFIX = "--incoming"
RAMFS = "ramfs"


class XenColoError(ColoError):
    """A Xen COLO step cannot be planned or failed."""


@dataclass(frozen=True)
class XenVM:
    """One guest as the Xen backend sees it (same disk path and overlay paths on both hosts)."""

    name: str
    disk: str
    config: str = ""  # the xl config on the primary
    active_disk: str = ""
    hidden_disk: str = ""


def overlay_paths(name: str, ramfs_dir: str) -> tuple[str, str]:
    """Default active and hidden disk of a VM (templates/xl-colo.cfg.j2 writes the same)."""
    return (os.path.join(ramfs_dir, f"{name}-active_disk.img"), os.path.join(ramfs_dir, f"{name}-hidden_disk.img"))


def vm_from_entry(entry: dict, ramfs_dir: str, config_dir: str = "") -> XenVM:
    """A colo_vms entry (name, disk, optional xen_active_disk / xen_hidden_disk) as a XenVM."""
    try:
        name, disk = str(entry["name"]), str(entry["disk"])
    except KeyError as exc:
        raise XenColoError(f"a VM entry lacks {exc.args[0]!r}: {entry!r}") from None
    active, hidden = overlay_paths(name, ramfs_dir)
    return XenVM(name=name, disk=disk, config=os.path.join(config_dir, f"{name}.cfg") if config_dir else "",
                 active_disk=str(entry.get("xen_active_disk") or active),
                 hidden_disk=str(entry.get("xen_hidden_disk") or hidden))


@dataclass(frozen=True)
class HostState:
    """What the host has, as far as the plans care."""

    kernel: xen_proxy.KernelState
    mounts: tuple[tuple[str, str], ...] = ()  # (mount point, fs type)
    existing: frozenset[str] = frozenset()  # files that exist (overlays, configs)
    virtual_sizes: dict[str, int] = field(default_factory=dict)  # image -> bytes (qemu-img info)
    domains: dict[str, str] = field(default_factory=dict)  # xl list: name -> state flags ("r-----", "--p---")
    remus: dict[str, tuple[int, ...]] = field(default_factory=dict)  # domain -> pids of its `xl remus`
    systemd: bool = False


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    why: str

    def __str__(self) -> str:
        return shlex.join(self.argv)


def _modprobes(role: str, st: HostState, forward_nic: str | None) -> list[Command]:
    try:
        steps = xen_proxy.plan(role, st.kernel, forward_nic)
    except ColoError as exc:
        raise XenColoError(str(exc)) from None
    return [Command(s.argv, s.why) for s in steps]


def _mounted(st: HostState, path: str, fstype: str) -> bool:
    path = os.path.normpath(path)
    return any(os.path.normpath(mp) == path and fs == fstype for mp, fs in st.mounts)


def check_vms(vms: list[XenVM], role: str) -> None:
    problems = []
    names = [v.name for v in vms]
    if len(set(names)) != len(names):
        problems.append("VM names must be unique")
    for v in vms:
        paths = [v.disk, v.active_disk, v.hidden_disk] + ([v.config] if role == "primary" else [])
        for p in paths:
            if not p or not os.path.isabs(p):
                problems.append(f"{v.name}: {p!r} must be an absolute path")
            elif any(c in p for c in ",'\"= \n"):
                # The xl disk spec is a comma-separated key=value list in quotes.
                problems.append(f"{v.name}: path {p!r} cannot go into an xl disk spec (no , ' \" = or blanks)")
        if v.active_disk and v.active_disk == v.hidden_disk:
            problems.append(f"{v.name}: active and hidden disk must differ")
    if problems:
        raise XenColoError("; ".join(problems))


def plan_secondary(vms: list[XenVM], st: HostState, ramfs_dir: str, ramfs_size_mib: int = 2048,
                   qemu_img: str = "qemu-img") -> list[Command]:
    """The seed's secondary script: ramfs, empty qcow2 overlays of the base image's size, xt_SECCOLO."""
    check_vms(vms, "secondary")
    cmds: list[Command] = []
    fresh = not _mounted(st, ramfs_dir, RAMFS)
    if fresh:
        # ramfs ignores size= (it grows until memory runs out); the seed passes it, so do we.
        cmds.append(Command(("mount", "-t", RAMFS, "-o", f"size={ramfs_size_mib}m,mode=0700", "none", ramfs_dir),
                            f"mount a ramfs on {ramfs_dir} for the active and hidden disks"))
    for v in vms:
        size = st.virtual_sizes.get(v.disk)
        if not size:
            raise XenColoError(f"{v.name}: cannot read the virtual size of {v.disk} (qemu-img info); "
                               "is the disk in place on this host?")
        for kind, img in (("active", v.active_disk), ("hidden", v.hidden_disk)):
            in_ramfs = os.path.dirname(os.path.normpath(img)) == os.path.normpath(ramfs_dir)
            if img in st.existing and not (fresh and in_ramfs):
                continue
            cmds.append(Command((qemu_img, "create", "-q", "-f", "qcow2", img, str(size)),
                                f"{v.name}: {kind} disk, {size} bytes like {v.disk}"))
    cmds += _modprobes("secondary", st, None)
    return cmds


def remus_argv(vm: XenVM, secondary: str, xl: str = "xl") -> tuple[str, ...]:
    # -c: COLO; -u: no memory checkpoint compression (COLO requires it off).
    return (xl, "remus", "-c", "-u", vm.name, secondary)


def detached(argv: tuple[str, ...], unit: str, log: str, systemd: bool) -> tuple[str, ...]:
    """argv run in the background: a transient systemd unit, else a new session writing to log."""
    if systemd:
        return ("systemd-run", f"--unit={unit}", "--collect", "--quiet", "--") + argv
    return ("setsid", "-f", "/bin/sh", "-c", f'exec "$0" "$@" >>{shlex.quote(log)} 2>&1') + argv


def remus_unit(vm: XenVM) -> str:
    return f"colo-ft-xen-{vm.name}"


def plan_primary(vms: list[XenVM], st: HostState, forward_nic: str, secondary: str, xl: str = "xl",
                 log_dir: str = "/var/lib/colo-ft") -> list[Command]:
    """The seed's primary steps: proxy modules, `xl create -p <cfg>`, `xl remus -c -u <dom> <secondary>`."""
    check_vms(vms, "primary")
    if not secondary:
        raise XenColoError("the primary needs the secondary's checkpoint address for xl remus")
    cmds = _modprobes("primary", st, forward_nic)
    for v in vms:
        if v.config not in st.existing:
            raise XenColoError(f"{v.name}: xl config {v.config} does not exist")
        if v.name in st.remus:
            continue  # COLO already runs for it
        if v.name not in st.domains:
            cmds.append(Command((xl, "create", "-p", v.config), f"{v.name}: create the domain paused"))
        log = os.path.join(log_dir, f"xen-remus-{v.name}.log")
        cmds.append(Command(detached(remus_argv(v, secondary, xl), remus_unit(v), log, st.systemd),
                            f"{v.name}: start COLO towards {secondary} (xl remus, in the background)"))
    return cmds


def plan_failover(lost: str, vms: list[XenVM], st: HostState, xl: str = "xl") -> list[Command]:
    """Take over on the survivor with the Xen tools.

    lost=primary (run on the secondary): the received domain "<name>--incoming" is renamed to <name> and
    unpaused if it is paused. lost=secondary (run on the primary): the `xl remus` of the domain is stopped
    (the primary then runs unprotected) and the domain unpaused if it is paused. lost=auto: per VM, a
    host holding the received domain (or neither domain) lost its primary, one running <name> its secondary
    (a secondary that took over already runs <name> too: nothing is left to do on either path).
    """
    if lost not in ("auto", "primary", "secondary"):
        raise XenColoError(f"lost must be auto, primary or secondary, not {lost!r}")
    cmds: list[Command] = []
    for v in vms:
        name = v.name
        incoming = name + INCOMING_SUFFIX
        side = lost
        if side == "auto":
            side = "secondary" if name in st.domains and incoming not in st.domains else "primary"
        if side == "primary":
            if name not in st.domains:
                if incoming not in st.domains:
                    raise XenColoError(f"{name}: no domain {name} or {incoming} on this host; nothing to take over")
                cmds.append(Command((xl, "rename", incoming, name), f"{name}: the secondary becomes the guest"))
                flags = st.domains[incoming]
            else:
                flags = st.domains[name]
        else:
            if name not in st.domains:
                raise XenColoError(f"{name}: no domain {name} on this host; nothing to keep running")
            for pid in st.remus.get(name, ()):
                cmds.append(Command(("kill", "-TERM", str(pid)), f"{name}: stop xl remus (pid {pid})"))
            flags = st.domains[name]
        if "p" in flags:
            cmds.append(Command((xl, "unpause", name), f"{name}: run the guest"))
    return cmds


def plan_stop(vms: list[XenVM], st: HostState, xl: str = "xl") -> list[Command]:
    """Stop the guests on this host (fencing a host given up by failover): each domain's `xl remus`
    is stopped, then the domain and a received "<name>--incoming" are destroyed."""
    cmds: list[Command] = []
    for v in vms:
        for pid in st.remus.get(v.name, ()):
            cmds.append(Command(("kill", "-TERM", str(pid)), f"{v.name}: stop xl remus (pid {pid})"))
        for name in (v.name, v.name + INCOMING_SUFFIX):
            if name in st.domains:
                cmds.append(Command((xl, "destroy", name), f"{v.name}: no guest may run here any more"))
    return cmds


# -- reading the host (impure) -------------------------------------------------------------------


def parse_xl_list(text: str) -> dict[str, str]:
    """`xl list` -> {name: state flags}."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 6 and f[0] != "Name" and f[1].isdigit():
            out[f[0]] = f[4]
    return out


def remus_processes(cmdlines: dict[int, list[str]]) -> dict[str, tuple[int, ...]]:
    """{domain: pids} of the `xl remus ... <domain> <host>` processes among cmdlines."""
    out: dict[str, list[int]] = {}
    for pid, argv in sorted(cmdlines.items()):
        if len(argv) >= 4 and os.path.basename(argv[0]) == "xl" and argv[1] == "remus":
            out.setdefault(argv[-2], []).append(pid)
    return {k: tuple(v) for k, v in out.items()}


def read_cmdlines(root: str = "/proc") -> dict[int, list[str]]:
    out = {}
    for entry in os.listdir(root):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(root, entry, "cmdline"), "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw:
            out[int(entry)] = [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")]
    return out


def read_mounts(path: str = "/proc/self/mounts") -> tuple[tuple[str, str], ...]:
    try:
        with open(path, encoding="utf-8") as f:
            return tuple((line.split()[1], line.split()[2]) for line in f if len(line.split()) >= 3)
    except OSError:
        return ()


def virtual_size(image: str, qemu_img: str = "qemu-img") -> int | None:
    try:
        return int(image_info(image, qemu_img)["virtual-size"])
    except (ColoError, ValueError, KeyError, TypeError):
        return None


def xl_domains(xl: str = "xl") -> dict[str, str]:
    try:
        res = proc.run([xl, "list"])
    except OSError as exc:
        raise XenColoError(f"cannot run {xl} list ({exc}): is the Xen toolstack installed and xencommons running?") from None
    if res.returncode != 0:
        raise XenColoError(f"{xl} list failed: {res.stderr.strip() or res.returncode} (is this dom0 of a Xen host?)")
    return parse_xl_list(res.stdout)


def read_state(vms: list[XenVM], role: str, qemu_img: str = "qemu-img", xl: str = "xl") -> HostState:
    """The snapshot a plan needs; role secondary reads images, the others xl's domains."""
    paths = [p for v in vms for p in (v.active_disk, v.hidden_disk, v.config) if p]
    existing = frozenset(p for p in paths if os.path.exists(p))
    sizes: dict[str, int] = {}
    domains: dict[str, str] = {}
    if role == "secondary":
        for v in vms:
            size = virtual_size(v.disk, qemu_img)
            if size:
                sizes[v.disk] = size
    else:
        domains = xl_domains(xl)
    return HostState(kernel=xen_proxy.read_kernel(), mounts=read_mounts(), existing=existing, virtual_sizes=sizes,
                     domains=domains, remus=remus_processes(read_cmdlines()),
                     systemd=os.path.isdir("/run/systemd/system"))


def run(cmds: list[Command], timeout: float = 120.0) -> None:
    for c in cmds:
        try:
            res = proc.run(list(c.argv), timeout=timeout)
        except OSError as exc:
            raise XenColoError(f"{c} could not run ({c.why}): {exc}") from None
        if res.returncode != 0:
            raise XenColoError(f"{c} failed ({c.why}): {(res.stderr or res.stdout).strip() or res.returncode}")
