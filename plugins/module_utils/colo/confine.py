"""QEMU confined: the seccomp sandbox, the drop from root to spec.qemu_user, the systemd unit's hardening.

docs/qemu-colo.md, "Confined QEMU", has the measurements (QEMU 11.1.3, systemd 257) behind each choice:

* qemu_args(): -sandbox on with the groups COLO never uses denied, and -run-with user= when the
  spec names a user. QEMU installs its seccomp filter before it drops root and before -daemonize
  forks, so elevateprivileges is denied only for a QEMU that neither drops root nor daemonizes,
  and spawn only for one that does not daemonize (the SIGSYS kills are in the docs).
* check_user() / hand_over(): the launcher's side of the drop: the user exists and can reach the
  state directory; the state directory can be traversed (not listed, not written) by the user's
  group; qemu_dir, the disk image and the secondary's overlays belong to the user, as QEMU creates
  and reopens them after it dropped root (nbd-server-add reopens the secondary's image read-write).
* unit_properties(): the systemd-run properties of the transient unit (only where systemd is PID 1).
"""
from __future__ import annotations

import os
import pwd

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

# Where a path makes ProtectHome=yes / PrivateTmp=yes hide it from QEMU.
HOME_DIRS = ("/home", "/root", "/run/user")
TMP_DIRS = ("/tmp", "/var/tmp")
# Capabilities QEMU needs while it is root: open a tap it does not own (CAP_NET_ADMIN), open files of
# qemu_user (CAP_DAC_OVERRIDE), drop to qemu_user (CAP_SETUID, CAP_SETGID), a COLO port below 1024.
CAPABILITIES = ("CAP_NET_ADMIN", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE")


def qemu_args(spec: VMSpec, daemonize: bool) -> list[str]:
    """-sandbox (and -run-with user=) for the QEMU command line."""
    # Both run under the filter: the drop calls setgroups/setgid/setuid, -daemonize fork and setsid (in
    # QEMU's elevateprivileges group; "children" kills them as "deny" does).
    elevate = "allow" if spec.qemu_user or daemonize else "deny"
    spawn = "allow" if daemonize else "deny"
    args = ["-sandbox", f"on,obsolete=deny,elevateprivileges={elevate},spawn={spawn},resourcecontrol=deny"]
    if spec.qemu_user:
        args += ["-run-with", f"user={spec.qemu_user}"]
    return args


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


def _files(spec: VMSpec, role: str) -> list[str]:
    """Every file of the VM QEMU opens: the image, the overlays (secondary), kernel and initrd."""
    files = [spec.disk, spec.state_dir]
    if role == "secondary":
        files += [spec.active_path, spec.hidden_path]
    return files + [p for p in (spec.kernel, spec.initrd) if spec.boot == "kernel" and p]


def writable_dirs(spec: VMSpec, role: str) -> list[str]:
    """Directories QEMU writes in: the state directory, the image's, the overlays' (secondary)."""
    dirs = {spec.state_dir, os.path.dirname(spec.disk)}
    if role == "secondary":
        dirs |= {os.path.dirname(spec.active_path), os.path.dirname(spec.hidden_path)}
    # A directory inside another one listed adds nothing.
    return sorted(d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs))


def _quote(path: str) -> str:
    """A path as one word of a systemd space-separated list (C-style quoting)."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_properties(spec: VMSpec, role: str) -> list[str]:
    """systemd-run --property values that confine the VM's transient unit.

    ProtectHome is read-only (not yes) and PrivateTmp off when a file of the VM lives there: QEMU
    would not see it otherwise. MemoryDenyWriteExecute stays off: TCG writes the code it runs.
    """
    files = _files(spec, role)
    props = [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=" + " ".join(_quote(d) for d in writable_dirs(spec, role)),
        "ProtectHome=" + ("read-only" if any(_under(f, HOME_DIRS) for f in files) else "yes"),
    ]
    if not any(_under(f, TMP_DIRS) for f in files):
        props.append("PrivateTmp=yes")
    props += [
        "DevicePolicy=closed",
        "DeviceAllow=/dev/net/tun rw",
        "DeviceAllow=/dev/kvm rw",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=" + " ".join(CAPABILITIES),
    ]
    return props


def check_user(spec: VMSpec, role: str) -> tuple[int, int]:
    """(uid, gid) QEMU ends up with ((0, 0) without qemu_user); LaunchError, before anything changes,
    when the user does not exist or cannot search a directory on the way to a file QEMU reopens."""
    if not spec.qemu_user:
        return 0, 0
    try:
        pw = pwd.getpwnam(spec.qemu_user)
    except KeyError:
        raise LaunchError(f"qemu_user {spec.qemu_user} does not exist on this host (the colo_host role creates it, "
                          "colo_host_qemu_user); cannot start VM " + spec.name) from None
    groups = set(os.getgrouplist(spec.qemu_user, pw.pw_gid))
    paths = [spec.state_root, *_owned(spec, role)]
    blocked = sorted({d for d in (_unsearchable(p, pw.pw_uid, groups, spec.state_root) for p in paths) if d})
    if blocked:
        raise LaunchError(f"VM {spec.name} runs QEMU as {spec.qemu_user}, who cannot search {', '.join(blocked)} "
                          "(no x permission for it): QEMU reopens its files there after it dropped root; "
                          "allow it (chmod o+x) or move state_root/the overlays")
    return pw.pw_uid, pw.pw_gid


def _unsearchable(path: str, uid: int, groups: set[int], ours: str) -> str | None:
    """The first existing directory above path that uid (with groups) cannot search, or None;
    ours and what is below it the launcher sets up itself (hand_over)."""
    chain = []
    probe = os.path.dirname(path)
    while True:
        chain.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for d in reversed(chain):
        if d == ours or d.startswith(ours + "/"):
            return None
        try:
            st = os.stat(d)
        except FileNotFoundError:
            return None  # made by the launcher
        bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid in groups else 0o001
        if not st.st_mode & bit:
            return d
    return None


def hand_over(spec: VMSpec, role: str, owner: tuple[int, int]) -> None:
    """Give QEMU's user (owner, from check_user) what it needs after the drop; root otherwise.

    state_root 0711 and state_dir root:<its group> 0710: the user can reach its files but not list
    them or replace the launcher's (spec.json); qemu_dir, the image and the secondary's overlays are
    its own (as libvirt's dynamic_ownership does; the image keeps that owner after the VM stops).
    """
    uid, gid = owner
    os.makedirs(spec.qemu_dir, mode=0o700, exist_ok=True)
    os.chown(spec.qemu_dir, uid, gid)
    os.chmod(spec.qemu_dir, 0o700)
    if uid == 0:
        return
    os.chmod(spec.state_root, 0o711)
    os.chown(spec.state_dir, 0, gid)
    os.chmod(spec.state_dir, 0o710)
    for path in _owned(spec, role):
        os.chown(path, uid, gid)
        os.chmod(path, 0o600)


def _owned(spec: VMSpec, role: str) -> list[str]:
    """The files QEMU reopens by name after it dropped root: the image, the secondary's overlays."""
    return [spec.disk, *([spec.active_path, spec.hidden_path] if role == "secondary" else [])]
