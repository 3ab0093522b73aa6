"""Start, find and stop the QEMU process of a VM for one role.

State of a VM lives in <state_root>/<name>/ (default /run/colo-ft/<name>, mode
0700): qmp.sock, qemu.pid, serial.log, qemu.log (QEMU's stderr) and spec.json
(the spec, role and argv it was started with).

Where systemd is PID 1, QEMU runs as a transient unit colo-ft-<name>
(systemd-run), so it outlives the Ansible module and is visible to systemctl;
elsewhere (chroots, containers without systemd) QEMU daemonizes itself
(-daemonize: the parent exits only after initialisation, with its status).

The host side of a start (tap, overlays, free ports) is in host.py, the process
helpers (pids, units) in process.py, the record and its verdicts in records.py.
"""
from __future__ import annotations

import datetime
import os
import signal
import subprocess
import time
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import confine, host, proc, process
from ansible_collections.colo.ft.plugins.module_utils.colo.argv import opt, qemu_argv
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import (
    ColoError,
    InvalidSpec,
    LaunchError,
    QMPConnectionError,
    QMPTimeout,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.records import (
    StartResult,
    StopResult,
    VMStatus,
    existing_verdict,
    live_setting_changes,
    read_record,
    write_json,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import ROLES, STATE_ROOT, VMSpec, check_locator

# Files of a state directory removed when the VM is found dead or stopped.
_RUNTIME_FILES = ("qmp.sock", "qemu.pid", "qemu/compare0.sock", "qemu/compare_out.sock")


class Launcher:
    """Start/stop/status of VMs; one instance can serve many VMs.

    use_systemd: None = auto-detect (systemd is PID 1); False forces the
    daemon mode, True forces systemd-run.
    """

    def __init__(self, use_systemd: bool | None = None, start_timeout: float = 30.0,
                 qmp_timeout: float = 3.0, qemu_img: str | None = None):
        self.use_systemd = process.systemd_is_pid1() if use_systemd is None else use_systemd
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
        st.pid = self.find_pid(spec)
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

    def find(self, name: str, state_root: str = STATE_ROOT) -> tuple[VMSpec, dict[str, Any], VMStatus]:
        """THE lookup of a VM known only by name: its spec, its record (spec.json) and its status.

        LaunchError when no VM of that name was started under state_root; InvalidSpec when the
        recorded spec is not a valid description any more; InvalidSpec when name or state_root cannot
        name a state directory (e.g. '../x').
        """
        check_locator(name, state_root)
        record = read_record(os.path.join(state_root, name))
        if not record or "spec" not in record:
            raise LaunchError(
                f"no VM {name!r} was started on this host (no {os.path.join(state_root, name, 'spec.json')}); "
                "start it with colo.ft.vm first (or set state_root)")
        spec = VMSpec.from_dict(record["spec"])
        if spec.name != name:
            raise InvalidSpec(f"{os.path.join(state_root, name, 'spec.json')} describes VM {spec.name!r}, not {name!r}")
        return spec, record, self.status(spec)

    def find_pid(self, spec: VMSpec) -> int | None:
        pid = process.read_pidfile(spec.pid_path)
        if pid and process.pid_alive(pid) and self._is_our_qemu(pid, spec):
            return pid
        pids = process.find_qemu_pids(spec)
        return pids[0] if pids else None

    @staticmethod
    def _is_our_qemu(pid: int, spec: VMSpec) -> bool:
        # Guards against a stale pidfile whose PID was reused by another process.
        argv = process.read_cmdline(pid) or []
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
        (see argv.qemu_argv); protection then hot-adds them.
        """
        t0 = time.monotonic()
        if role not in ROLES:
            raise InvalidSpec(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        spec.validate(role)
        argv = qemu_argv(spec, role, paused=paused, daemonize=not self.use_systemd, proxy=proxy)
        running, pid = self.plan_start(spec, role, argv)
        if running:
            return self._record_live_settings(spec, role, pid, argv, t0)
        self._cleanup(spec)  # stale socket, pidfile or unit of a VM that is gone

        host.check_ports_free(spec, role)
        owner = confine.check_user(spec, role)
        self._prepare_state_dir(spec)
        if role == "secondary":
            host.create_overlays(spec, self.qemu_img)
        confine.hand_over(spec, role, owner)
        host.plumb_tap(spec)
        write_json(spec.spec_path, {
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

    def _record_live_settings(self, spec: VMSpec, role: str, pid: int | None, argv: list[str],
                              t0: float) -> StartResult:
        """The VM runs as asked: record live settings that changed (LIVE_SETTINGS) in its spec.json."""
        record = read_record(spec) or {}
        changes = live_setting_changes(record, spec)
        updated = [f"{key} {record['spec'].get(key)} -> {value}" for key, value in changes.items()]
        message = f"VM {spec.name} is already running as {role}"
        if changes:
            # Only the live settings: fields outside the command line keep what the VM was started with.
            write_json(spec.spec_path, {**record, "spec": {**record["spec"], **changes}})
            message += "; recorded " + ", ".join(updated)
        return StartResult(bool(changes), spec.name, role, pid, self.manager, spec.qmp_path, message,
                           time.monotonic() - t0, argv, updated)

    def plan_start(self, spec: VMSpec, role: str, argv: list[str]) -> tuple[bool, int | None]:
        """(True, pid) if this VM already runs as asked, (False, None) if nothing runs on its state
        directory; LaunchError if something else is there. Changes nothing (check mode uses it)."""
        pid = self.find_pid(spec)
        name = self._answered_name(spec, pid)
        record = read_record(spec) if name is not None else None
        already = existing_verdict(spec, role, name, pid, record, process.read_cmdline(pid) if pid else None, argv)
        return already, pid if already else None

    def _answered_name(self, spec: VMSpec, pid: int | None) -> str | None:
        """Name the QEMU on the VM's QMP socket reports, or None if nothing answers."""
        if not os.path.exists(spec.qmp_path):
            return None
        try:
            with QMPClient(spec.qmp_path, timeout=self.qmp_timeout) as qmp:
                return qmp.execute("query-name").get("name")
        except QMPTimeout:
            if pid is not None or process.find_qemu_pids(spec):
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

    def _run_systemd(self, spec: VMSpec, role: str, argv: list[str]) -> None:
        unit = spec.unit_name
        process.release_unit_name(f"{unit}.service")
        cmd = [
            "systemd-run", f"--unit={unit}", "--service-type=exec", "--collect", "--quiet",
            f"--description=colo.ft VM {spec.name} ({role})",
            f"--property=StandardOutput=append:{spec.log_path}",
            f"--property=StandardError=append:{spec.log_path}",
            "--property=TimeoutStopSec=30",
            *(f"--property={p}" for p in confine.unit_properties(spec, role)),
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
                              f"{process.tail(spec.log_path, 8)}")

    def _wait_ready(self, spec: VMSpec) -> int | None:
        """Wait until QMP answers with the right name; return the QEMU pid."""
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            pid = self.find_pid(spec)
            if os.path.exists(spec.qmp_path):
                try:
                    with QMPClient(spec.qmp_path, timeout=min(self.qmp_timeout, max(0.1, deadline - time.monotonic()))) as qmp:
                        name = qmp.execute("query-name").get("name")
                    if name != spec.name:
                        raise LaunchError(f"QEMU on {spec.qmp_path} reports name {name!r}, expected {spec.name!r}")
                    return pid if pid is not None else self.find_pid(spec)
                except (QMPConnectionError, QMPTimeout) as exc:
                    last = str(exc)
            if pid is None and not self._may_still_start(spec):
                last = "QEMU exited"
                break
            time.sleep(0.05)
        raise LaunchError(f"VM {spec.name} did not come up ({last}); QEMU said: {process.tail(spec.log_path, 8)}")

    def _may_still_start(self, spec: VMSpec) -> bool:
        if not self.use_systemd:
            return False  # -daemonize returned: initialisation is over
        out = proc.run(["systemctl", "is-active", "--quiet", f"{spec.unit_name}.service"])
        return out.returncode == 0

    # -- stop ----------------------------------------------------------------

    def stop(self, spec: VMSpec, timeout: float = 15.0, remove_tap: bool = False) -> StopResult:
        """quit via QMP; SIGTERM after timeout; SIGKILL 5 s later. Idempotent."""
        t0 = time.monotonic()
        pid = self.find_pid(spec)
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
            if not quit_sent or not process.wait_gone(pid, timeout):
                method = "sigterm"
                process.kill(pid, signal.SIGTERM)
                if not process.wait_gone(pid, 5.0):
                    method = "sigkill"
                    process.kill(pid, signal.SIGKILL)
                    if not process.wait_gone(pid, 5.0):
                        raise LaunchError(f"VM {spec.name}: QEMU pid {pid} survives SIGKILL")
        else:
            process.wait_socket_dead(spec.qmp_path, timeout)
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
        if remove_tap:
            host.remove_tap(spec.tap_name)


# Module-level shortcuts with auto-detected process manager.
def start(spec: VMSpec, role: str, paused: bool = False, proxy: bool = True) -> StartResult:
    return Launcher().start(spec, role, paused, proxy)


def stop(spec: VMSpec, timeout: float = 15.0) -> StopResult:
    return Launcher().stop(spec, timeout)


def status(spec: VMSpec) -> VMStatus:
    return Launcher().status(spec)
