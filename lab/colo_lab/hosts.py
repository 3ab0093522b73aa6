"""The lab's hosts: systemd-nspawn containers booted on an overlay of the cached image.

Each host's processes are put in a freezer cgroup of their own, which gives the fault actions
an exact set of processes: freeze/thaw hang and resume all of them, crash takes the host's links
dark and then kills all of them at once (a power cut: peers hear nothing; the overlay's upper
layer survives as a disk would).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from .config import APT_MOUNT, FREEZER, GUEST_MOUNT, INSTANCE, STATE, Host
from .net import drop_host_net, ensure_host_net, unplug_host
from .util import LabError, log, run, wait_until

SSH_KEY = STATE / "ssh/id_ed25519"
# A crashed host's connections hear no FIN or RST (see crash): ssh gives up on one after 3 keepalives
# 2 s apart go unanswered, instead of waiting for TCP to give up (about 15 minutes).
KEEPALIVE_OPTS = ["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"]
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3", *KEEPALIVE_OPTS]


def _dir(host: Host) -> Path:
    return STATE / "hosts" / host.name


def _root(host: Host) -> Path:
    return _dir(host) / "root"


def _cgroup(host: Host) -> Path:
    return FREEZER / host.name


def ensure_ssh_key() -> Path:
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "colo-lab", "-f", str(SSH_KEY)])
    return SSH_KEY


def is_mounted(path: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(path) for line in mounts)


def mount_root(host: Host, image: Path) -> None:
    root = _root(host)
    if is_mounted(root):
        return
    for sub in ("upper", "work", "root"):
        (_dir(host) / sub).mkdir(parents=True, exist_ok=True)
    lower, upper, work = image / "rootfs", _dir(host) / "upper", _dir(host) / "work"
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", str(root)])
    _personalise(host, root)


def _personalise(host: Host, root: Path) -> None:
    """Give a host its identity once: name, machine id, ssh host keys, the lab's login key."""
    if (root / "etc/machine-id").read_text().strip():
        return
    (root / "etc/hostname").write_text(f"{host.name}\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {host.name}\n")
    run(["ssh-keygen", "-q", "-A", "-f", str(root)])
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(Path(f"{ensure_ssh_key()}.pub").read_text())
    authorized.chmod(0o600)
    (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")


def unmount_root(host: Host) -> None:
    if is_mounted(_root(host)):
        run(["umount", str(_root(host))])


def _pidfile(host: Host) -> Path:
    return _dir(host) / "nspawn.pid"


def nspawn_pid(host: Host) -> int | None:
    """The PID of the host's systemd-nspawn, only if it is really ours (not a reused PID)."""
    try:
        pid = int(_pidfile(host).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # Right after the start the process is still the sh that joins the cgroup, with nspawn's argv.
    if any(os.path.basename(arg) == b"systemd-nspawn" for arg in cmdline) and str(_root(host)).encode() in cmdline:
        return pid
    return None


def procs_of(cgroup: Path) -> list[int]:
    """PIDs in a cgroup ([] when it is gone)."""
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def cgroup_pids(host: Host) -> list[int]:
    return procs_of(_cgroup(host))


def kill_cgroup(cgroup: Path, thaw: bool = False) -> list[int]:
    """SIGKILL every process of a freezer cgroup until none is left, then remove it; the PIDs killed.

    thaw: the cgroup was frozen first (so that all die at one instant): a frozen process only dies once
    thawed, so thaw after each round.
    """
    killed: list[int] = []
    for _attempt in range(50):
        pids = procs_of(cgroup)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        if thaw:
            _set_freezer(cgroup, "THAWED")
        time.sleep(0.1)
    if procs_of(cgroup):
        raise LabError(f"{cgroup}: processes survived SIGKILL: {procs_of(cgroup)}")
    if cgroup.exists():
        cgroup.rmdir()
    return sorted(set(killed))


def boot(host: Host, image: Path, guest: Path) -> None:
    """Boot the host if it is not running, and wait until it accepts ssh."""
    wait_booted(host, start(host, image, guest))


def start(host: Host, image: Path, guest: Path) -> subprocess.Popen | None:
    """Start the host's systemd-nspawn if it is not running (the new process; None when it ran already)."""
    proc = None
    if nspawn_pid(host) is None:
        if cgroup_pids(host):  # leftovers of a run that lost its nspawn: power them off
            kill_all(host)
        ensure_host_net(host)
        mount_root(host, image)
        _cgroup(host).mkdir(parents=True, exist_ok=True)
        argv = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
                "-D", str(_root(host)), "-M", f"{host.name}-lab{INSTANCE}", f"--hostname={host.name}", f"--network-namespace-path=/run/netns/{host.netns}",
                "--bind=/dev/kvm", "--bind=/dev/net/tun", "--capability=all", "--private-users=no",
                "--console=passive", f"--bind-ro={image / 'apt'}:{APT_MOUNT}", f"--bind-ro={guest}:{GUEST_MOUNT}"]
        log_file = open(_dir(host) / "nspawn.log", "ab")
        # Join the freezer cgroup first, so that every process of the host is in it.
        proc = subprocess.Popen(["sh", "-c", f'echo $$ > {_cgroup(host)}/cgroup.procs && exec "$@"', "sh", *argv],
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True,
                                env={**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"})
        _pidfile(host).write_text(str(proc.pid))
        log(f"{host.name}: booting (nspawn PID {proc.pid})")
    return proc


def wait_booted(host: Host, proc: subprocess.Popen | None) -> None:
    """Wait until the host accepts ssh and its systemd has finished booting (proc: from start)."""
    # While nspawn replaces the sh that started it, its cmdline reads empty for a moment: ask the
    # Popen object, where there is one, whether it has really ended.
    def died() -> bool:
        return proc.poll() is not None if proc else nspawn_pid(host) is None

    wait_until(lambda: ssh(host, "true", check=False, timeout=5).returncode == 0 or died(), 90, f"ssh on {host.name}")
    if died():
        raise LabError(f"{host.name} stopped while booting; see {_dir(host) / 'nspawn.log'}")
    state = ssh(host, "timeout 60 systemctl is-system-running --wait", check=False, timeout=70).stdout.strip()
    if state != "running":
        failed = ssh(host, "systemctl --failed --no-legend --plain", check=False).stdout.strip()
        log(f"{host.name}: systemd says {state!r}; failed units: {failed or 'none'}")


def ssh(host: Host, command: str, *, check: bool = True, timeout: float = 120, capture: bool = True,
        ) -> subprocess.CompletedProcess:
    argv = ["ssh", *SSH_OPTS, "-i", str(SSH_KEY), f"root@{host.address('mgmt0')}", command]
    try:
        result = subprocess.run(argv, text=True, capture_output=capture, timeout=timeout, stdin=subprocess.DEVNULL,
                                check=False)
    except subprocess.TimeoutExpired:
        if check:
            raise LabError(f"{host.name}: {command!r} timed out after {timeout}s")
        return subprocess.CompletedProcess(argv, 255, "", "timeout")
    if check and result.returncode != 0:
        raise LabError(f"{host.name}: {command!r} failed ({result.returncode}): {(result.stderr or '').strip()}")
    return result


def _set_freezer(cgroup: Path, state: str) -> None:
    path = cgroup / "freezer.state"
    path.write_text(state)
    wait_until(lambda: path.read_text().strip() == state, 10, f"{cgroup} to become {state}")


def _freezer_state(host: Host, state: str) -> None:
    if not (_cgroup(host) / "freezer.state").exists():
        raise LabError(f"{host.name} is not running")
    _set_freezer(_cgroup(host), state)


def freeze(host: Host) -> None:
    if nspawn_pid(host) is None:
        raise LabError(f"{host.name} is not running")
    _freezer_state(host, "FROZEN")


def thaw(host: Host) -> None:
    _freezer_state(host, "THAWED")


def is_frozen(host: Host) -> bool:
    try:
        return (_cgroup(host) / "freezer.state").read_text().strip() == "FROZEN"
    except OSError:
        return False


def kill_all(host: Host) -> None:
    """Every process of the host dies at the same instant: freeze, SIGKILL all, thaw."""
    if not _cgroup(host).exists():
        return
    _freezer_state(host, "FROZEN")
    kill_cgroup(_cgroup(host), thaw=True)


def crash(host: Host, loud: bool = False) -> None:
    """A power cut, silent as a real one: the host's links go dark, then all its processes die at once;
    runtime network state is lost; the disk stays.

    The links go first so that the sockets the dying processes close send nothing: peers get no FIN or RST,
    their connections to the host just stop answering. loud: kill with the links still up, so the dying
    kernel resets its connections and every peer's wait ends at once (not what a power cut does).
    """
    if nspawn_pid(host) is None and not cgroup_pids(host):
        raise LabError(f"{host.name} is not running")
    if not loud:
        unplug_host(host)
    kill_all(host)
    _pidfile(host).unlink(missing_ok=True)
    drop_host_net(host)
    log(f"{host.name}: crashed ({'' if loud else 'links dark, then '}all processes killed; network state lost)")


def shutdown(host: Host) -> None:
    """An orderly poweroff; nspawn forwards SIGTERM as a shutdown request to the host's systemd."""
    pid = nspawn_pid(host)
    if pid is not None:
        if is_frozen(host):
            thaw(host)
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: nspawn_pid(host) is None, 30, f"{host.name} to power off")
        except LabError:
            log(f"{host.name}: did not power off in 30s; cutting the power")
    kill_all(host)
    _pidfile(host).unlink(missing_ok=True)
    drop_host_net(host)


def status(host: Host) -> str:
    if nspawn_pid(host) is None:
        return "crashed" if cgroup_pids(host) else "stopped"
    return "frozen" if is_frozen(host) else "running"
