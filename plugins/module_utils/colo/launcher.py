"""Start, find and stop the QEMU process of a VM for one role.

State of a VM lives in <state_root>/<name>/ (default /run/colo-ft/<name>, mode
0700): qmp.sock, qemu.pid, serial.log, qemu.log (QEMU's stderr) and spec.json
(the spec, role and argv it was started with).

Where systemd is PID 1, QEMU runs as a transient unit colo-ft-<name>
(systemd-run), so it outlives the Ansible module and is visible to systemctl;
elsewhere (chroots, containers without systemd) QEMU daemonizes itself
(-daemonize: the parent exits only after initialisation, with its status).
"""
from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import proc
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import (
    ColoError,
    InvalidSpec,
    LaunchError,
    QMPConnectionError,
    QMPTimeout,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import (
    ROLES,
    STATE_ROOT,
    VMSpec,
    listen_ports,
    opt,
    qemu_argv,
    tap_plumbing,
)

# Files of a state directory removed when the VM is found dead or stopped.
_RUNTIME_FILES = ("qmp.sock", "qemu.pid", "compare0.sock", "compare_out.sock")


@dataclass
class VMStatus:
    name: str
    running: bool                 # a QEMU process for this VM exists
    pid: int | None = None
    qmp: bool = False             # its QMP socket answered
    qemu_status: str | None = None  # query-status: running, paused, inmigrate, colo, ...
    role: str | None = None       # role recorded at start (spec.json)
    manager: str | None = None    # "systemd" or "daemon"
    state_dir: str = ""
    started_at: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StartResult:
    changed: bool
    name: str
    role: str
    pid: int | None
    manager: str
    qmp_path: str
    message: str
    elapsed_s: float = 0.0
    argv: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StopResult:
    changed: bool
    name: str
    method: str                   # "quit", "sigterm", "sigkill" or "none" (was not running)
    elapsed_s: float = 0.0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def systemd_is_pid1() -> bool:
    # sd_booted(): this directory exists only when systemd is the init system.
    return os.path.isdir("/run/systemd/system")


def read_cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def same_argv(actual: list[str] | None, expected: list[str]) -> bool:
    """argv equality; systemd-run execs the binary by its absolute path, so argv[0] may differ."""
    if not actual or len(actual) != len(expected):
        return False
    return actual[1:] == expected[1:] and os.path.basename(actual[0]) == os.path.basename(expected[0])


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (an exited child not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def find_qemu_pids(spec: VMSpec) -> list[int]:
    """QEMU processes whose -qmp option names this VM's socket (pidfile lost or stale)."""
    want = f"unix:{opt(spec.qmp_path)},"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = read_cmdline(int(entry))
        if not argv or "-qmp" not in argv:
            continue
        i = argv.index("-qmp")
        if i + 1 < len(argv) and argv[i + 1].startswith(want) and pid_alive(int(entry)):
            pids.append(int(entry))
    return pids


def _read_pidfile(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_record(spec_or_dir: VMSpec | str) -> dict[str, Any] | None:
    """The spec.json written at start (keys: spec, role, argv, manager, started_at)."""
    state_dir = spec_or_dir.state_dir if isinstance(spec_or_dir, VMSpec) else spec_or_dir
    try:
        with open(os.path.join(state_dir, "spec.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Launcher:
    """Start/stop/status of VMs; one instance can serve many VMs.

    use_systemd: None = auto-detect (systemd is PID 1); False forces the
    daemon mode, True forces systemd-run.
    """

    def __init__(self, use_systemd: bool | None = None, start_timeout: float = 30.0,
                 qmp_timeout: float = 3.0, qemu_img: str | None = None):
        self.use_systemd = systemd_is_pid1() if use_systemd is None else use_systemd
        self.start_timeout = start_timeout
        self.qmp_timeout = qmp_timeout
        self.qemu_img = qemu_img

    @property
    def manager(self) -> str:
        return "systemd" if self.use_systemd else "daemon"

    # -- status --------------------------------------------------------------

    def status(self, spec: VMSpec) -> VMStatus:
        record = read_record(spec) or {}
        st = VMStatus(name=spec.name, running=False, state_dir=spec.state_dir, role=record.get("role"),
                      manager=record.get("manager"), started_at=record.get("started_at"))
        st.pid = self._find_pid(spec)
        st.running = st.pid is not None
        if os.path.exists(spec.qmp_path):
            try:
                with QMPClient(spec.qmp_path, timeout=self.qmp_timeout) as qmp:
                    name = qmp.execute("query-name").get("name")
                    st.qemu_status = qmp.execute("query-status").get("status")
                    st.qmp = True
                    if name != spec.name:
                        st.message = f"the QEMU on {spec.qmp_path} is VM {name!r}, not {spec.name!r}"
            except QMPTimeout as exc:
                st.message = str(exc)
            except ColoError:
                pass
        if st.qmp and not st.running:
            st.running = True  # answers but pid unknown (e.g. another PID namespace)
        if not st.message:
            st.message = ("running" if st.qmp else "process exists but QMP does not answer") if st.running \
                else "not running"
        return st

    def find(self, name: str, state_root: str = STATE_ROOT) -> tuple[VMSpec, VMStatus]:
        """Spec and status of a VM known only by name (from its spec.json)."""
        record = read_record(os.path.join(state_root, name))
        if not record:
            raise LaunchError(f"no VM {name!r} was started here (no {os.path.join(state_root, name, 'spec.json')})")
        spec = VMSpec.from_dict(record["spec"])
        return spec, self.status(spec)

    def _find_pid(self, spec: VMSpec) -> int | None:
        pid = _read_pidfile(spec.pid_path)
        if pid and pid_alive(pid) and self._is_our_qemu(pid, spec):
            return pid
        pids = find_qemu_pids(spec)
        return pids[0] if pids else None

    @staticmethod
    def _is_our_qemu(pid: int, spec: VMSpec) -> bool:
        # Guards against a stale pidfile whose PID was reused by another process.
        argv = read_cmdline(pid) or []
        return f"unix:{opt(spec.qmp_path)},server=on,wait=off" in argv

    # -- start ---------------------------------------------------------------

    def start(self, spec: VMSpec, role: str, paused: bool = False, proxy: bool = True) -> StartResult:
        """Start QEMU for spec in role; idempotent.

        Same VM already running (QMP name matches and the process argv or the
        recorded spec+role match) -> changed=False. Another VM or another
        configuration on this state directory -> LaunchError. Stale socket or
        pidfile without a process -> cleaned up, then started.
        paused: -S (boot under COLO). proxy=False: a primary without the
        filters/colo-compare, which hold all guest output until COLO runs
        (see vm.qemu_argv); protection then hot-adds them.
        """
        t0 = time.monotonic()
        if role not in ROLES:
            raise InvalidSpec(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        spec.validate(role)
        argv = qemu_argv(spec, role, paused=paused, daemonize=not self.use_systemd, proxy=proxy)
        running, pid = self.plan_start(spec, role, argv)
        if running:
            return StartResult(False, spec.name, role, pid, self.manager, spec.qmp_path,
                               f"VM {spec.name} is already running as {role}", time.monotonic() - t0, argv)
        self._cleanup(spec)  # stale socket, pidfile or unit of a VM that is gone

        _check_ports_free(spec, role)
        self._prepare_state_dir(spec)
        if role == "secondary":
            self._create_overlays(spec)
        self._plumb_tap(spec)
        _write_json(spec.spec_path, {
            "spec": spec.to_dict(), "role": role, "paused": paused, "proxy": proxy, "argv": argv, "manager": self.manager,
            "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
        if self.use_systemd:
            self._run_systemd(spec, role, argv)
        else:
            self._run_daemon(spec, argv)
        pid = self._wait_ready(spec)
        return StartResult(True, spec.name, role, pid, self.manager, spec.qmp_path,
                           f"started VM {spec.name} as {role}", time.monotonic() - t0, argv)

    def plan_start(self, spec: VMSpec, role: str, argv: list[str]) -> tuple[bool, int | None]:
        """(True, pid) if this VM already runs as asked, (False, None) if nothing runs on its state
        directory; LaunchError if something else is there. Changes nothing (check mode uses it)."""
        pid = self._find_pid(spec)
        name = self._answered_name(spec, pid)
        record = read_record(spec) if name is not None else None
        already = existing_verdict(spec, role, name, pid, record, read_cmdline(pid) if pid else None, argv)
        return already, pid if already else None

    def _answered_name(self, spec: VMSpec, pid: int | None) -> str | None:
        """Name the QEMU on the VM's QMP socket reports, or None if nothing answers."""
        if not os.path.exists(spec.qmp_path):
            return None
        try:
            with QMPClient(spec.qmp_path, timeout=self.qmp_timeout) as qmp:
                return qmp.execute("query-name").get("name")
        except QMPTimeout:
            if pid is not None or find_qemu_pids(spec):
                raise LaunchError(
                    f"VM {spec.name}: QEMU (pid {pid}) runs but {spec.qmp_path} does not answer "
                    "(another QMP client is connected, or QEMU hangs); not starting a second one") from None
            return None
        except QMPConnectionError:
            return None

    def _prepare_state_dir(self, spec: VMSpec) -> None:
        os.makedirs(spec.state_root, mode=0o700, exist_ok=True)
        os.makedirs(spec.state_dir, mode=0o700, exist_ok=True)
        os.chmod(spec.state_dir, 0o700)  # makedirs' mode is masked by umask, and an old dir may differ

    def _create_overlays(self, spec: VMSpec) -> None:
        """Fresh, empty active/hidden overlays of the base image's virtual size."""
        qemu_img = self.qemu_img or _sibling(spec.qemu_binary, "qemu-img")
        info = _run([qemu_img, "info", "--output=json", "--force-share", spec.disk], "read the disk image size")
        try:
            size = int(json.loads(info)["virtual-size"])
        except (ValueError, KeyError) as exc:
            raise LaunchError(f"cannot read the virtual size of {spec.disk}: {exc}") from None
        for path in (spec.hidden_path, spec.active_path):
            if os.path.exists(path):
                os.unlink(path)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            _run([qemu_img, "create", "-q", "-f", "qcow2", path, str(size)], f"create overlay {path}")

    def _plumb_tap(self, spec: VMSpec) -> None:
        # `ip -j` rather than /sys/class/net: a bind-mounted /sys may show another netns.
        plan = tap_plumbing(spec)
        if plan.bridge:
            br = _link_info(plan.bridge)
            if br is None or br.get("linkinfo", {}).get("info_kind") != "bridge":
                raise LaunchError(f"bridge {plan.bridge} does not exist (needed for the tap of VM {spec.name})")
        tap = _link_info(plan.tap)
        if tap is not None and tap.get("linkinfo", {}).get("info_kind") != "tun":
            raise LaunchError(f"interface {plan.tap} exists and is not a tap; set tap: to another name")
        for cmd in plan.commands:
            if tap is not None and cmd[:2] == ("ip", "tuntap"):
                continue
            _run(list(cmd), f"set up tap {plan.tap}")

    def _run_systemd(self, spec: VMSpec, role: str, argv: list[str]) -> None:
        unit = spec.unit_name
        _release_unit_name(f"{unit}.service")
        cmd = [
            "systemd-run", f"--unit={unit}", "--service-type=exec", "--collect", "--quiet",
            f"--description=colo.ft VM {spec.name} ({role})",
            f"--property=StandardOutput=append:{spec.log_path}",
            f"--property=StandardError=append:{spec.log_path}",
            "--property=TimeoutStopSec=30",
            "--", *argv,
        ]
        out = proc.run(cmd, timeout=self.start_timeout)
        if out.returncode != 0:
            raise LaunchError(f"systemd-run failed for VM {spec.name}: {out.stderr.strip() or out.stdout.strip()}")

    def _run_daemon(self, spec: VMSpec, argv: list[str]) -> None:
        with open(spec.log_path, "ab") as log:
            try:
                # -daemonize: returns once QEMU initialised (exit status tells failure).
                out = proc.run(argv, timeout=self.start_timeout, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               cwd="/", start_new_session=True)
            except FileNotFoundError:
                raise LaunchError(f"QEMU binary {spec.qemu_binary} not found") from None
            except subprocess.TimeoutExpired:
                raise LaunchError(f"QEMU for VM {spec.name} did not finish starting within "
                                  f"{self.start_timeout:g}s; see {spec.log_path}") from None
        if out.returncode != 0:
            raise LaunchError(f"QEMU for VM {spec.name} failed to start (exit {out.returncode}): "
                              f"{_tail(spec.log_path, 8)}")

    def _wait_ready(self, spec: VMSpec) -> int | None:
        """Wait until QMP answers with the right name; return the QEMU pid."""
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            pid = self._find_pid(spec)
            if os.path.exists(spec.qmp_path):
                try:
                    with QMPClient(spec.qmp_path, timeout=min(self.qmp_timeout, max(0.1, deadline - time.monotonic()))) as qmp:
                        name = qmp.execute("query-name").get("name")
                    if name != spec.name:
                        raise LaunchError(f"QEMU on {spec.qmp_path} reports name {name!r}, expected {spec.name!r}")
                    return pid if pid is not None else self._find_pid(spec)
                except (QMPConnectionError, QMPTimeout) as exc:
                    last = str(exc)
            if pid is None and not self._may_still_start(spec):
                last = "QEMU exited"
                break
            time.sleep(0.05)
        raise LaunchError(f"VM {spec.name} did not come up ({last}); QEMU said: {_tail(spec.log_path, 8)}")

    def _may_still_start(self, spec: VMSpec) -> bool:
        if not self.use_systemd:
            return False  # -daemonize returned: initialisation is over
        out = proc.run(["systemctl", "is-active", "--quiet", f"{spec.unit_name}.service"])
        return out.returncode == 0

    # -- stop ----------------------------------------------------------------

    def stop(self, spec: VMSpec, timeout: float = 15.0, remove_tap: bool = False) -> StopResult:
        """quit via QMP; SIGTERM after timeout; SIGKILL 5 s later. Idempotent."""
        t0 = time.monotonic()
        pid = self._find_pid(spec)
        quit_sent = False
        if os.path.exists(spec.qmp_path):
            try:
                with QMPClient(spec.qmp_path, timeout=self.qmp_timeout) as qmp:
                    name = qmp.execute("query-name").get("name")
                    if name != spec.name:
                        raise LaunchError(f"the QEMU on {spec.qmp_path} is VM {name!r}, not {spec.name!r}; not stopping it")
                    try:
                        qmp.execute("quit")
                    except QMPConnectionError:
                        pass  # QEMU may close the socket before answering
                    quit_sent = True
            except (QMPConnectionError, QMPTimeout):
                pass
        if pid is None and not quit_sent:
            self._cleanup(spec, remove_tap)
            return StopResult(False, spec.name, "none", time.monotonic() - t0, f"VM {spec.name} is not running")
        method = "quit" if quit_sent else "sigterm"
        if pid is not None:
            if not quit_sent or not _wait_gone(pid, timeout):
                method = "sigterm"
                _kill(pid, signal.SIGTERM)
                if not _wait_gone(pid, 5.0):
                    method = "sigkill"
                    _kill(pid, signal.SIGKILL)
                    if not _wait_gone(pid, 5.0):
                        raise LaunchError(f"VM {spec.name}: QEMU pid {pid} survives SIGKILL")
        else:
            _wait_socket_dead(spec.qmp_path, timeout)
        self._cleanup(spec, remove_tap)
        return StopResult(True, spec.name, method, time.monotonic() - t0, f"VM {spec.name} stopped ({method})")

    def _cleanup(self, spec: VMSpec, remove_tap: bool = False) -> None:
        for fname in _RUNTIME_FILES:
            try:
                os.unlink(os.path.join(spec.state_dir, fname))
            except FileNotFoundError:
                pass
        record = read_record(spec) or {}
        if record.get("role") == "secondary":
            for path in (spec.active_path, spec.hidden_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        if remove_tap and _link_info(spec.tap_name) is not None:
            proc.run(["ip", "tuntap", "del", "dev", spec.tap_name, "mode", "tap"])


def _release_unit_name(unit: str) -> None:
    """Free the name of a transient unit whose QEMU has ended, so systemd-run can use it again.

    A failed run keeps the name until reset-failed. An inactive one should be collected
    (--collect), but systemd 257 was seen to keep its fragment in /run/systemd/transient for good
    after QEMU quit, and systemd-run then refuses the name ("already loaded or has a fragment file").
    """
    state = proc.run(["systemctl", "show", "-p", "ActiveState", "--value", unit]).stdout.strip()
    if state not in ("inactive", "failed"):
        return
    proc.run(["systemctl", "reset-failed", unit])
    fragment = os.path.join("/run/systemd/transient", unit)
    if os.path.exists(fragment):
        os.unlink(fragment)
        proc.run(["systemctl", "daemon-reload"])


def _check_ports_free(spec: VMSpec, role: str) -> None:
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


def existing_verdict(spec: VMSpec, role: str, answered_name: str | None, pid: int | None,
                     record: dict[str, Any] | None, argv_now: list[str] | None, argv: list[str]) -> bool:
    """What is on spec's state directory, from what was found there: True if this VM already runs
    as asked (QMP name matches and the process argv or the recorded spec and role match), False
    if nothing runs; LaunchError for another VM, another configuration or a mute QEMU."""
    if answered_name is not None:
        if answered_name != spec.name:
            raise LaunchError(f"a different VM ({answered_name!r}) answers on {spec.qmp_path}; "
                              f"refusing to start {spec.name!r} there")
        record = record or {}
        same_record = record.get("role") == role and record.get("spec") == spec.to_dict()
        if same_record or same_argv(argv_now, argv):
            return True
        raise LaunchError(f"VM {spec.name} is already running with another configuration "
                          f"({_differences(record, spec, role)}); stop it first")
    if pid is not None:
        raise LaunchError(f"VM {spec.name}: QEMU pid {pid} exists but its QMP socket {spec.qmp_path} "
                          "does not answer; not starting a second one (stop it first)")
    return False


def _differences(record: dict[str, Any], spec: VMSpec, role: str) -> str:
    if not record:
        return "its command line differs and no matching spec.json was recorded"
    diffs = []
    if record.get("role") != role:
        diffs.append(f"role {record.get('role')} (asked {role})")
    old = record.get("spec") or {}
    for key, value in spec.to_dict().items():
        if key in old and old[key] != value:
            diffs.append(f"{key} {old[key]!r} (asked {value!r})")
    return "; ".join(diffs) or "its command line differs and no matching spec.json was recorded"


def _link_info(name: str) -> dict[str, Any] | None:
    out = proc.run(["ip", "-j", "-d", "link", "show", "dev", name])
    if out.returncode != 0:
        return None
    try:
        links = json.loads(out.stdout)
    except ValueError:
        return None
    return links[0] if links else None


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


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def _wait_socket_dead(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with QMPClient(path, timeout=0.5):
                pass
        except (QMPConnectionError, QMPTimeout):
            return
        time.sleep(0.05)


# Module-level shortcuts with auto-detected process manager.
def start(spec: VMSpec, role: str, paused: bool = False, proxy: bool = True) -> StartResult:
    return Launcher().start(spec, role, paused, proxy)


def stop(spec: VMSpec, timeout: float = 15.0) -> StopResult:
    return Launcher().stop(spec, timeout)


def status(spec: VMSpec) -> VMStatus:
    return Launcher().status(spec)
