"""The lab's cached artifacts: the host image with its local apt repository, and the test guest.

Each is built once into CACHE under a name keyed by a hash of its recipe, so a changed recipe
builds anew and an unchanged one is reused. Builds go to a temporary folder that is renamed
into place only when complete, so an interrupted build never looks finished. The cache is shared
by every lab instance: one build at a time (a lock file in CACHE), the others wait and reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from .config import APT_MOUNT, CACHE, REPO
from .util import LabError, log, run

SUITE = "trixie"

# Baked into the host image: what a minimal Debian 13 server has, plus python3 for Ansible.
HOST_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt",
    "iproute2", "iputils-ping", "procps", "kmod", "netbase", "less",
)
# Served to the hosts by the local apt repository, not installed: the roles install them.
REPO_SUITE = "trixie-backports"  # QEMU >= 11 (trixie's 10.0 is broken for COLO)
REPO_PACKAGES = ("qemu-system-x86", "qemu-utils", "qemu-block-extra", "rsync", "iptables", "nftables", "openssl",
                 "python3-pytest", "ansible-core",
                 # Membership and quorum (role colo_cluster); the agent loads the client libraries with ctypes.
                 "corosync", "corosync-qdevice", "corosync-qnetd", "libcpg4", "libquorum5", "libvotequorum8", "libcmap4")
# Installed from that repository into the throw-away roots of `colo-lab chroot` (chroot.py), where
# the runtime tests (tests/lab/runtime) run QEMU, pytest and, for the one-host playbook of every
# module, Debian's ansible-core.
ROOT_PACKAGES = ("qemu-system-x86", "qemu-utils", "qemu-block-extra", "python3-pytest", "ansible-core", "openssl")

RECIPE_VERSION = 2  # bump when the build steps below change meaning


@functools.lru_cache(maxsize=None)
def debian_mirror() -> str:
    """COLO_LAB_MIRROR, or else the Debian mirror this machine's apt sources use for its own release (the lab's
    hosts, Debian SUITE, come from the same mirror). Read by the runtime's own reader (plugins/module_utils)."""
    if os.environ.get("COLO_LAB_MIRROR"):
        return os.environ["COLO_LAB_MIRROR"].rstrip("/")
    path = REPO / "plugins/module_utils/colo/apt_sources.py"
    spec = importlib.util.spec_from_file_location("colo_ft_apt_sources", path)
    apt_sources = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(apt_sources)
    release = _os_release().get("VERSION_CODENAME", "")
    found = apt_sources.mirror(apt_sources.read(), release)
    if not found:
        raise LabError(f"no apt source of this machine serves its release {release or '(unknown)'}: "
                       "set COLO_LAB_MIRROR to a Debian mirror (e.g. http://deb.debian.org/debian)")
    return found


def _os_release() -> dict[str, str]:
    with open("/etc/os-release", encoding="utf-8") as f:
        return {k: v.strip('"') for k, v in (line.rstrip("\n").split("=", 1) for line in f if "=" in line)}


def _recipe() -> dict:
    return {"version": RECIPE_VERSION, "mirror": debian_mirror(), "suite": SUITE, "host": HOST_PACKAGES,
            "repo_suite": REPO_SUITE, "repo": REPO_PACKAGES}


def _key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def image_dir() -> Path:
    return CACHE / f"image-{_key(json.dumps(_recipe(), sort_keys=True).encode())}"


@contextlib.contextmanager
def _build_lock():
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_image() -> Path:
    """Return the cached image folder (rootfs/ and apt/), building it on first use."""
    final = image_dir()
    if (final / "recipe.json").exists():
        return final
    with _build_lock():
        return final if (final / "recipe.json").exists() else _build_image(final)


def _build_image(final: Path) -> Path:
    started = time.monotonic()
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rootfs = tmp / "rootfs"
    rootfs.parent.mkdir(parents=True)
    log(f"building the host image (Debian {SUITE}) in {final}; this takes a few minutes once")
    run(["debootstrap", "--variant=minbase", f"--include={','.join(HOST_PACKAGES)}", SUITE, str(rootfs), debian_mirror()])
    _fill_repo(rootfs, tmp / "apt")
    _seal(rootfs)
    (tmp / "recipe.json").write_text(json.dumps({**_recipe(), "build_seconds": round(time.monotonic() - started)}, indent=1))
    tmp.rename(final)
    log(f"host image ready after {time.monotonic() - started:.0f}s")
    return final


def _chroot(rootfs: Path, *argv: str) -> None:
    run(["chroot", str(rootfs), "env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8", *argv])


def _fill_repo(rootfs: Path, repo: Path) -> None:
    """Download REPO_PACKAGES and every dependency the image lacks into a flat apt repository."""
    sources = rootfs / "etc/apt/sources.list"
    sources.write_text(f"deb {debian_mirror()} {SUITE} main\ndeb {debian_mirror()} {REPO_SUITE} main\n")
    _chroot(rootfs, "apt-get", "update", "-q")
    _chroot(rootfs, "apt-get", "install", "-q", "-y", "--download-only", "--no-install-recommends",
            "-t", REPO_SUITE, *REPO_PACKAGES)
    repo.mkdir()
    archives = rootfs / "var/cache/apt/archives"
    for deb in archives.glob("*.deb"):
        shutil.move(str(deb), repo / deb.name)
    if not any(repo.glob("qemu-system-x86_*.deb")):
        raise LabError("the apt download did not bring qemu-system-x86; see the apt output above")
    index = run(["dpkg-scanpackages", "--multiversion", "."], capture=True, cwd=repo).stdout
    (repo / "Packages").write_text(index)


# nspawn leaves the machine's sysfs in the container, so /sys/class/net lists the machine's
# devices (Ansible's facts would too). A sysfs mounted inside the host's own network namespace
# shows its devices; bind its net folders over the stale ones.
SYSFS_UNIT = """[Unit]
Description=colo-lab: this host's network devices in /sys
DefaultDependencies=no
Before=sysinit.target network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -ec 'mkdir -p /run/colo-lab-sysfs; mount -t sysfs sysfs /run/colo-lab-sysfs; \\
  mount --bind /run/colo-lab-sysfs/class/net /sys/class/net; \\
  mount --bind /run/colo-lab-sysfs/devices/virtual/net /sys/devices/virtual/net'
"""


def _seal(rootfs: Path) -> None:
    """Leave an image that knows only the local repository and has no per-host identity."""
    (rootfs / "etc/apt/sources.list").write_text(f"deb [trusted=yes] file:{APT_MOUNT} ./\n")
    for stale in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for path in (rootfs / stale).glob("*"):
            if path.is_file():
                path.unlink()
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/machine-id").write_text("")
    unit = rootfs / "etc/systemd/system/colo-lab-sysfs.service"
    unit.write_text(SYSFS_UNIT)
    wants = rootfs / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")
    (rootfs / "etc/hostname").write_text("localhost\n")


def guest_dir() -> Path:
    """The test guest, built by lab/guest/build and cached by a hash of that folder's files."""
    digest = hashlib.sha256()
    source = REPO / "lab/guest"
    for path in sorted(source.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return CACHE / f"guest-{digest.hexdigest()[:12]}"


def ensure_guest() -> Path:
    final = guest_dir()
    if (final / "guest.json").exists():
        return final
    with _build_lock():
        return final if (final / "guest.json").exists() else _build_guest(final)


def _build_guest(final: Path) -> Path:
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"building the test guest in {final}")
    run([str(REPO / "lab/guest/build"), "--cache", str(CACHE / "downloads"), str(tmp)])
    tmp.rename(final)
    return final
