"""The host side of a VM: its tap on the bridge, the secondary's overlays, free ports.

Everything here runs before QEMU starts (launcher.Launcher.start) or moves a
tap between bridges (failover). Network state is read with `ip -j`
(link_info) rather than /sys/class/net: a bind-mounted /sys may show another
network namespace.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import proc
from ansible_collections.colo.ft.plugins.module_utils.colo.argv import listen_ports
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec


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


def plumb_tap(spec: VMSpec) -> None:
    """Create the VM's tap (kept if it exists) and put it up on its bridge; LaunchError if the
    bridge is missing or the name is taken by another kind of interface."""
    plan = tap_plumbing(spec)
    if plan.bridge:
        br = link_info(plan.bridge)
        if br is None or br.get("linkinfo", {}).get("info_kind") != "bridge":
            raise LaunchError(f"bridge {plan.bridge} does not exist (needed for the tap of VM {spec.name})")
    tap = link_info(plan.tap)
    if tap is not None and tap.get("linkinfo", {}).get("info_kind") != "tun":
        raise LaunchError(f"interface {plan.tap} exists and is not a tap; set tap: to another name")
    for cmd in plan.commands:
        if tap is not None and cmd[:2] == ("ip", "tuntap"):
            continue
        _run(list(cmd), f"set up tap {plan.tap}")


def remove_tap(name: str) -> None:
    """Delete a tap if it exists (errors ignored: the VM is gone either way)."""
    if link_info(name) is not None:
        proc.run(["ip", "tuntap", "del", "dev", name, "mode", "tap"])


def image_info(path: str, qemu_img: str = "qemu-img") -> dict[str, Any]:
    # --force-share: the image may be open (and locked) by a running QEMU.
    try:
        res = proc.run([qemu_img, "info", "--force-share", "--output=json", path])
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ColoError(f"qemu-img info {path} failed: {exc}") from None
    if res.returncode != 0:
        raise ColoError(f"qemu-img info {path} failed: {res.stderr.strip()}")
    return json.loads(res.stdout)


def scratch_mib(virtual_sizes: list[int], slack_mib: int) -> int:
    """The secondary's scratch tmpfs (active and hidden overlays of every VM): twice the disks' virtual sizes,
    plus slack (MiB)."""
    return -(-2 * sum(virtual_sizes) // 1048576) + slack_mib


def image_problems(spec: VMSpec, role: str, exists=os.path.exists, isdir=os.path.isdir,
                   access=os.access) -> list[str]:
    """Files a start needs that are missing (checked before anything is started)."""
    p: list[str] = []
    if not exists(spec.disk):
        p.append(f"disk image {spec.disk} does not exist")
    for key in ("kernel", "initrd"):
        path = getattr(spec, key)
        if spec.boot == "kernel" and path and not exists(path):
            p.append(f"{key} {path} does not exist")
    if role == "secondary":
        for path in sorted({os.path.dirname(spec.active_path), os.path.dirname(spec.hidden_path)}):
            # The launcher creates missing directories: the nearest existing one must be writable.
            probe = path
            while probe and not exists(probe):
                parent = os.path.dirname(probe)
                if parent == probe:
                    break
                probe = parent
            if not isdir(probe) or not access(probe, os.W_OK):
                p.append(f"overlay directory {path} cannot be created or written ({probe} is not a writable directory)")
    return p


def create_overlays(spec: VMSpec, qemu_img: str | None = None) -> None:
    """Fresh, empty active/hidden overlays of the base image's virtual size (secondary)."""
    qemu_img = qemu_img or _sibling(spec.qemu_binary, "qemu-img")
    try:
        size = int(image_info(spec.disk, qemu_img)["virtual-size"])
    except ColoError as exc:
        raise LaunchError(f"cannot read the disk image size: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LaunchError(f"cannot read the virtual size of {spec.disk}: {exc}") from None
    for path in (spec.hidden_path, spec.active_path):
        if os.path.exists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        _run([qemu_img, "create", "-q", "-f", "qcow2", path, str(size)], f"create overlay {path}")


def check_ports_free(spec: VMSpec, role: str) -> None:
    """Refuse before starting anything when a port the role will listen on is taken.

    QEMU binds the secondary's migration port only at migrate-incoming, much later: without this
    check a clash would surface in the middle of protection.
    """
    busy = []
    for what, address, port in listen_ports(spec, role):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as QEMU does
            try:
                probe.bind((address, port))
            except OSError as error:
                busy.append(f"{what} port {port} on {address} ({error.strerror})")
    if busy:
        raise LaunchError(f"cannot start VM {spec.name} as {role}: {', '.join(busy)}; the port is in use by another "
                          "program or VM: pick other ports (port_base) or stop it")


# -- links and bridges -------------------------------------------------------------


def _ip(args: list[str]) -> subprocess.CompletedProcess:
    try:
        return proc.run(["ip", *args], timeout=10.0)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ColoError(f"ip {' '.join(args)} failed: {exc}") from None


def ip_json(*args: str) -> list[dict[str, Any]]:
    """`ip -j ARGS`, parsed; ColoError when ip fails."""
    res = _ip(["-j", *args])
    if res.returncode != 0:
        raise ColoError(f"ip -j {' '.join(args)} failed: {res.stderr.strip()}")
    try:
        return json.loads(res.stdout or "[]")
    except ValueError as exc:
        raise ColoError(f"ip -j {' '.join(args)}: unreadable answer ({exc})") from None


def link_info(name: str, missing_ok: bool = True) -> dict[str, Any] | None:
    """`ip -j -d link show dev NAME` of one interface; None if there is none (ColoError instead
    when not missing_ok)."""
    try:
        links = ip_json("-d", "link", "show", "dev", name)
    except ColoError as exc:
        if missing_ok:
            return None
        raise ColoError(f"network interface {name} not found: {exc}") from None
    return links[0] if links else None


def bridge_of(iface: str) -> str | None:
    """The bridge an interface is enslaved to, or None."""
    info = link_info(iface, missing_ok=False)
    return info.get("master") if info else None


def move_tap(tap: str, to_bridge: str) -> list[str]:
    """Put the guest's tap on to_bridge: the client bridge when a secondary takes over (failover.plan_primary_lost
    checked where it was), the isolated one when the agent fences a guest (nothing it still sends reaches clients)."""
    now = bridge_of(tap)
    if now == to_bridge:
        return []
    res = _ip(["link", "set", tap, "master", to_bridge])
    if res.returncode != 0:
        raise ColoError(f"ip link set {tap} master {to_bridge} failed: {res.stderr.strip()}")
    return [f"ip link set {tap} master {to_bridge} (was {now or 'no bridge'})"]


def _sibling(binary: str, tool: str) -> str:
    # qemu-img next to an explicitly given QEMU binary; else from PATH.
    if os.sep in binary:
        cand = os.path.join(os.path.dirname(binary), tool)
        if os.path.exists(cand):
            return cand
    return tool


def _run(cmd: list[str], what: str) -> str:
    try:
        out = proc.run(cmd)
    except FileNotFoundError:
        raise LaunchError(f"cannot {what}: {cmd[0]} not found") from None
    if out.returncode != 0:
        raise LaunchError(f"cannot {what}: `{' '.join(cmd)}` failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout
