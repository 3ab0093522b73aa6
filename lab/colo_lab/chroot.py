"""Throw-away runtime roots: a lab host's system with QEMU installed, without booting a host.

`colo-lab chroot DIR [CMD...]` mounts at DIR an overlay of the cached host image, with the local
apt repository and the test guest where a lab host sees them (/srv/colo-lab/apt and
/srv/colo-lab/guest, read-only) and /proc, /sys, /dev mounted; installs ROOT_PACKAGES into it from
that repository with apt, as the roles do on a host; then runs CMD on this machine (default: a shell
inside DIR) and removes the root when CMD ends. tests/run's runtime stage runs
`tests/lab/runtime/run-in-netns --chroot DIR` this way: those tests need QEMU >= 11, which a Debian
12 machine does not have.

All of the root's mounts are made in a mount namespace of the command's own, and its files live on
a tmpfs there: the machine never sees them, and they go with the namespace however the command
ends (even killed). CMD's processes are put in a freezer cgroup of their own; any still there when
CMD ends (say a QEMU that a killed test left running) are killed. `colo-lab down` kills those of a
chroot command that was itself killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

from .config import APT_MOUNT, FREEZER, GUEST_MOUNT, STATE
from .hosts import is_mounted, kill_cgroup
from .image import ROOT_PACKAGES
from .util import LabError, log, run

CLONE_NEWNS = 0x00020000


def _own_mount_namespace() -> None:
    """Move this process into a new mount namespace whose mounts never propagate to the machine's."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise LabError(f"unshare(CLONE_NEWNS) failed: {os.strerror(ctypes.get_errno())}")
    run(["mount", "--make-rprivate", "/"])


def _in_root(root: Path, *argv: str) -> None:
    """Run a command inside ROOT; its output is shown only when it fails."""
    done = run(["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *argv], check=False, capture=True)
    if done.returncode != 0:
        raise LabError(f"in the root: {' '.join(argv)} failed with exit code {done.returncode}:\n"
                       + (done.stdout + done.stderr).strip()[-3000:])


def _make_root(root: Path, layers: Path, image: Path, guest: Path) -> None:
    run(["mount", "-t", "tmpfs", "-o", "mode=0755", "colo-lab-chroot", str(layers)])
    for sub in ("upper", "work"):
        (layers / sub).mkdir()
    run(["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={image / 'rootfs'},upperdir={layers / 'upper'},workdir={layers / 'work'}", str(root)])
    run(["mount", "-t", "proc", "proc", str(root / "proc")])
    run(["mount", "-t", "sysfs", "sysfs", str(root / "sys")])
    run(["mount", "--rbind", "/dev", str(root / "dev")])
    # A /dev/shm of its own: the runtime tests keep VM state there (COLO_RT_STATE).
    run(["mount", "-t", "tmpfs", "-o", "mode=1777", "shm", str(root / "dev/shm")])
    for source, mount in ((image / "apt", APT_MOUNT), (guest, GUEST_MOUNT)):
        target = root / mount.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        run(["mount", "--bind", "-o", "ro", str(source), str(target)])
    policy = root / "usr/sbin/policy-rc.d"  # packages start no services in a chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    _in_root(root, "apt-get", "update", "-q")
    _in_root(root, "apt-get", "install", "-q", "-y", "--no-install-recommends", *ROOT_PACKAGES)


def remove_leftovers() -> None:
    """What chroot commands that were killed themselves left: their cgroups' processes."""
    for cgroup in sorted(FREEZER.glob("chroot-*")):
        killed = kill_cgroup(cgroup)
        log(f"{cgroup.name}: left over by a killed chroot command; killed {killed or 'no processes'}")


def _run(root: Path, cgroup: Path, command: list[str]) -> int:
    cgroup.mkdir(parents=True)
    # Join the cgroup first, so that every process CMD starts is in it.
    proc = subprocess.Popen(["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *command])
    # Ctrl-C reaches CMD from the terminal: let CMD end (and clean up) by itself; pass SIGTERM on.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    try:
        status = proc.wait()
        return 128 - status if status < 0 else status  # killed by a signal: as a shell says it
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        killed = kill_cgroup(cgroup)
        if killed:
            log(f"killed processes that outlived the command: {killed}")


def _unmount(path: Path) -> None:
    if not is_mounted(path):
        return
    if run(["umount", "-R", str(path)], check=False, capture=True).returncode != 0:
        run(["umount", "-R", "-l", str(path)])


def chroot(directory: str, command: list[str], image: Path, guest: Path) -> int:
    """Make a runtime root at DIRECTORY, run COMMAND, remove the root; returns COMMAND's exit status."""
    root = Path(directory).absolute()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LabError(f"{root} exists and is not an empty folder")
    created = not root.exists()
    started = time.monotonic()
    layers = STATE / f"chroot-{os.getpid()}"
    cgroup = FREEZER / f"chroot-{os.getpid()}"
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()  # as /proc/self/mounts will name it
    layers.mkdir(parents=True, exist_ok=True)
    try:
        _own_mount_namespace()
        _make_root(root, layers, image, guest)
        version = run(["chroot", str(root), "/usr/bin/qemu-system-x86_64", "--version"], capture=True).stdout.splitlines()[0]
        log(f"root ready at {root} in {time.monotonic() - started:.1f}s ({version})")
        return _run(root, cgroup, command or ["chroot", str(root), "/bin/bash", "-l"])
    finally:
        # Only unmount and rmdir, never delete recursively: /dev is bound into the root.
        _unmount(root)
        _unmount(layers)
        layers.rmdir()
        if created:
            root.rmdir()
        try:
            FREEZER.rmdir()  # if this command made it and no lab host is using it
        except OSError:
            pass
        log(f"root at {root} removed after {time.monotonic() - started:.1f}s")
