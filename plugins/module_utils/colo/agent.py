"""The colo.ft agent: one per COLO host, a systemd service (colo-ft-agent.service, role colo_cluster).

    python3 -m ansible_collections.colo.ft.plugins.module_utils.colo.agent /etc/colo-ft/agent.json

It follows quorum and membership from corosync by notification (corosync.py), watches every local
VM through the VM's second QMP monitor (agent.sock; the modules keep qmp.sock): query-status and
query-colo-status every watch_interval_s, a QEMU that does not answer for hang_timeout_s is killed,
and a QEMU that ends without a SHUTDOWN event (killed, crashed) is reported to the peer's agent
through CPG at once. After every change it asks agent_rules.decide() what to do, and does it with
the runtime's own plans: failover.plan (lost=auto) for a failover, QMP stop for a self-fence; each
is written to the VM's failover log (failover_log.py). With auto_reprotect it also re-protects the pair once the lost
host is back (agent_reprotect.py: that host readies a new secondary, the survivor protects towards it). It publishes its view in run_dir:
state.json (for status.yml) and the file `primary`, present while a local VM serves the guest (the
quorum device's heuristic prefers that host when the pair is split).
"""
from __future__ import annotations

import json
import os
import queue
import select
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import (
    agent_reprotect,
    agent_rules,
    failover,
    failover_log,
    host,
    process,
    state,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.corosync import CorosyncError, Cpg, Quorum
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, QMPConnectionError, QMPTimeout
from ansible_collections.colo.ft.plugins.module_utils.colo.launcher import Launcher
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.records import read_record
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import STATE_ROOT, VMSpec

BY = "colo-ft-agent"
# A report that the peer's QEMU died counts for this long: a later, unrelated protection must not act on it.
PEER_DIED_FRESH_S = 10.0
# A decision whose steps failed is tried again after this long (not in a tight loop).
RETRY_S = 5.0
RUN_DIR = "/run/colo-ft/agent"
# A command waits at most this long for the VM's thread to pick it up.
_TICK_S = 0.05


@dataclass
class Config:
    """/etc/colo-ft/agent.json, written by the colo_cluster role."""

    vms: list[str]
    state_root: str = STATE_ROOT
    client_bridge: str = "br0"
    isolated_bridge: str = "br1"
    group: str = "colo-ft"                 # the CPG group the agents of a pair join
    watch_interval_s: float = 0.5
    hang_timeout_s: float = 5.0
    checkpoint_stall_s: float = 10.0       # agent_rules: a COLO primary this long past its checkpoint delay releases
    run_dir: str = RUN_DIR
    maintenance_file: str = "/var/lib/colo-ft/agent/maintenance"
    auto_reprotect: bool = False
    reprotect: Any = None                  # agent_reprotect.Settings (a mapping in the file)

    @classmethod
    def load(cls, path: str) -> Config:
        with open(path) as f:
            data = json.load(f)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ColoError(f"{path}: unknown keys {sorted(unknown)}")
        try:
            cfg = cls(**data)
            cfg.watch_interval_s, cfg.hang_timeout_s = float(cfg.watch_interval_s), float(cfg.hang_timeout_s)
            cfg.checkpoint_stall_s = float(cfg.checkpoint_stall_s)
        except (TypeError, ValueError) as exc:
            raise ColoError(f"{path}: {exc}") from None
        if not isinstance(cfg.vms, list) or not 0.05 <= cfg.watch_interval_s < cfg.hang_timeout_s:
            raise ColoError(f"{path}: vms must be a list, and 0.05 <= watch_interval_s < hang_timeout_s")
        if cfg.checkpoint_stall_s < 0:
            raise ColoError(f"{path}: checkpoint_stall_s must be 0 (off) or more")
        if cfg.auto_reprotect:
            cfg.reprotect = agent_reprotect.Settings.from_dict(cfg.reprotect or {}, f"{path}: reprotect")
        return cfg


def log(message: str) -> None:
    sys.stdout.write(message + "\n")  # journald keeps the time
    sys.stdout.flush()


@dataclass
class Report:
    """What a VM's thread tells the main thread."""

    vm: str
    kind: str                  # view, died, done
    detail: dict[str, Any] = field(default_factory=dict)


class VMWatch(threading.Thread):
    """Owns one VM's agent monitor: watches it and runs the commands the main thread sends."""

    def __init__(self, name: str, cfg: Config, report):
        super().__init__(name=f"watch-{name}", daemon=True)
        self.cfg = cfg
        self.view = agent_rules.VMView(name)
        self.commands: queue.Queue = queue.Queue()
        self.pid: int | None = None          # the QEMU the view is about
        self.first_look_done = False         # the view says something (the agent tells the peer only then)
        self.readied_pid: int | None = None  # the secondary this agent started for the peer (ready_secondary)
        self._report = report
        self._launcher = Launcher()

    def run(self) -> None:
        while True:
            try:
                self._look()
            except Exception as exc:  # pylint: disable=broad-except  # a dead thread would watch nothing
                log(f"{self.view.name}: watch failed ({exc!r}); watching again")
                self._forget()
                time.sleep(self.cfg.watch_interval_s)
            self.first_look_done = True

    def _look(self) -> None:
        # The record and the pid only: Launcher.find would also query qmp.sock, the modules' monitor.
        record = read_record(os.path.join(self.cfg.state_root, self.view.name)) or {}
        try:
            spec = VMSpec.from_dict(record["spec"])
        except (KeyError, TypeError, ColoError):
            spec = None
        pid = self._launcher.find_pid(spec) if spec is not None else None
        if pid is None and self._run_ready_commands(spec):
            return  # a host back without its QEMU (power cut) readied a secondary: watched from the next look
        if pid is None or not os.path.exists(spec.agent_qmp_path):
            if pid is not None and self.pid != pid:
                log(f"{self.view.name}: QEMU (pid {pid}) has no agent monitor (started by an older colo.ft?): "
                    "not watched, never failed over or fenced by this agent")
            self.pid = pid
            self._forget()
            time.sleep(self.cfg.watch_interval_s)
            return
        if pid != self.pid:
            self.pid = pid
            self._forget()  # what was known of another QEMU does not hold for this one
        self._set(started_as=record.get("role") or "", started_at=process.started_at(pid))
        self._watch(spec, pid)

    def _run_ready_commands(self, leftover) -> bool:
        """With no QEMU to watch, a command to ready a secondary runs here (_forget answers the others)."""
        try:
            action, why = self.commands.queue[0]
        except IndexError:
            return False
        if action != agent_rules.READY:
            return False
        self.commands.get_nowait()
        self._done(action, why, lambda: self._ready_secondary(leftover))
        return True

    def _ready_secondary(self, leftover) -> list[str]:
        done = agent_reprotect.ready_secondary(self.cfg.reprotect, self.view.name, leftover, self._launcher)
        self.readied_pid = self._launcher.find_pid(agent_reprotect.secondary_spec(self.cfg.reprotect, self.view.name))
        return done

    def _done(self, action: str, why: str, run) -> None:
        t0 = time.monotonic()
        try:
            done = run()
        except (ColoError, OSError) as exc:
            done = [f"failed: {exc}"]
        self._report(Report(self.view.name, "done", {"action": action, "why": why, "steps": done,
                                                     "seconds": round(time.monotonic() - t0, 3)}))

    def _forget(self) -> None:
        """No QEMU (or another one): a fresh view, and the commands meant for the old one answered as skipped
        (but readying a secondary, which is for a host without one: _run_ready_commands runs it)."""
        keep = []
        while True:
            try:
                action, why = self.commands.get_nowait()
            except queue.Empty:
                break
            if action == agent_rules.READY:
                keep.append((action, why))
                continue
            skipped = {"action": action, "why": why, "seconds": 0.0, "steps": ["skipped: the QEMU it was for is gone"]}
            self._report(Report(self.view.name, "done", skipped))
        for command in keep:
            self.commands.put(command)
        fresh = agent_rules.VMView(self.view.name, looked=True)
        if asdict(fresh) != asdict(self.view):
            self.view = fresh
            self._report(Report(self.view.name, "view", asdict(fresh)))

    def _watch(self, spec, pid: int) -> None:
        client = QMPClient(spec.agent_qmp_path, timeout=self.cfg.hang_timeout_s, oob=True)
        try:
            client.connect()
        except ColoError as exc:  # e.g. another client holds agent.sock: not a hang of QEMU
            log(f"{spec.name}: cannot use the agent monitor ({exc}); trying again")
            client.close()
            time.sleep(self.cfg.watch_interval_s)
            return
        # RESUME: a COLO primary's vCPUs start again at the end of every checkpoint.
        listener = client.listen(("SHUTDOWN", "COLO_EXIT", "RESUME"))
        try:
            while True:
                self._poll(client, spec, pid)
                self.first_look_done = True
                end = time.monotonic() + self.cfg.watch_interval_s
                while time.monotonic() < end:
                    self._run_commands(client, spec, pid)
                    for event in listener.take(_TICK_S):
                        if event["event"] == "RESUME":
                            if self.view.mode == "primary":  # read by decide(): not worth a report each time
                                self.view.checkpoint_at = time.monotonic()
                            continue
                        log(f"{spec.name}: QEMU event {event['event']} {event.get('data', {})}")
                        self._hold_if_colo_failed(client, event)
                    if not client.connected:
                        raise QMPConnectionError("QEMU closed the agent monitor")
        except QMPTimeout as exc:
            if self._maintenance():
                log(f"{spec.name}: QEMU (pid {pid}) does not answer ({exc}); maintenance: left alone")
            else:
                log(f"{spec.name}: QEMU (pid {pid}) hangs ({exc}); killing it")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._died(spec, pid, "it hung")
        except QMPConnectionError:
            # A SHUTDOWN event (quit on request, guest poweroff) may have come inside the last command's answer;
            # a given-up QEMU this agent replaced by a new secondary did not die either.
            replaced = self.readied_pid not in (None, pid)
            if not replaced and not any(event["event"] == "SHUTDOWN" for event in listener.events):
                self._died(spec, pid, "it ended without a shutdown")
        finally:
            listener.close()
            client.close()
        self._forget()
        time.sleep(self.cfg.watch_interval_s)

    def _maintenance(self) -> bool:
        return os.path.exists(self.cfg.maintenance_file)

    def _hold_if_colo_failed(self, client: QMPClient, event: dict) -> None:
        """A COLO primary that left COLO on an error by itself runs alone now (QEMU's own failover) - also when
        this host hung and the other side took the guest over meanwhile. Stop its vCPUs at once; decide() then
        fences or resumes it. Not when the exit follows a decision of ours (a release yanks the streams)."""
        data = event.get("data", {})
        if event["event"] != "COLO_EXIT" or data.get("mode") != "primary" or data.get("reason") != "error":
            return
        if self.view.fenced or self._maintenance():
            return  # given up already; or a person is at work (failover.yml yanks the streams too)
        if self.view.decided_at is not None and self.view.decided_at >= QMPClient.event_time(event) - 5:
            return
        client.execute("stop")
        log(f"{self.view.name}: COLO failed on this primary by itself: guest held (stopped) until quorum decides")
        self._set(held_since=time.monotonic())

    def _poll(self, client: QMPClient, spec, pid: int) -> None:
        colo = client.execute("query-colo-status")
        run = client.execute("query-status")
        decided = failover_log.decision(spec, pid)
        fenced = failover_log.given_up(spec, pid) is not None
        if fenced and run["running"]:  # a COLO checkpoint ends with the vCPUs started again: a fence must stay
            client.execute("stop")
            log(f"{spec.name}: fenced guest ran again; stopped")
            run["running"] = False
        ready = pid == self.readied_pid and colo["mode"] == "none" and run["status"] == "inmigrate"
        checkpoint_at, delay_s, now = None, 0.0, time.monotonic()
        if colo["mode"] == "primary":
            # The last checkpoint's end; now when COLO just began, or when this look follows a gap (this host hung:
            # the peer may have taken over meanwhile, and decide() must hear from it before a stall counts).
            gap = self.view.polled_at is None or now - self.view.polled_at > self.cfg.hang_timeout_s
            kept = self.view.mode == "primary" and self.view.checkpoint_at is not None and not gap
            checkpoint_at = self.view.checkpoint_at if kept else now
            delay_s = client.execute("query-migrate-parameters").get("x-checkpoint-delay", 0) / 1000
        self._set(alive=True, mode=colo["mode"], last_mode=colo["last-mode"], running=bool(run["running"]),
                  fenced=fenced, decided_at=decided and decided.get("at"), looked=True, ready=ready,
                  checkpoint_at=checkpoint_at, checkpoint_delay_s=delay_s)
        self.view.polled_at = now  # read by decide(): not worth a report each time

    def _died(self, spec, pid: int, why: str) -> None:
        for _wait in range(20):  # a QEMU that closed its monitor is about to be gone
            if not process.pid_alive(pid):
                break
            time.sleep(0.05)
        self._set(alive=False)
        self._report(Report(spec.name, "died", {"why": why, "pid": pid}))

    def _run_commands(self, client: QMPClient, spec, pid: int) -> None:
        while True:
            try:
                action, why = self.commands.get_nowait()
            except queue.Empty:
                return
            self._done(action, why, lambda: self._do(client, spec, pid, action, why))
            self._poll(client, spec, pid)

    def _do(self, client: QMPClient, spec, pid: int, action: str, why: str) -> list[str]:
        if action == agent_rules.READY:  # this QEMU is given up: a new secondary replaces it
            if failover_log.given_up(spec, pid) is None:
                return ["skipped: a live QEMU runs the guest here"]
            return self._ready_secondary(spec)
        if action == agent_rules.PROTECT:
            done = agent_reprotect.protect(self.cfg.reprotect, client, spec)
            if done:
                failover_log.append(spec, "reprotected", why, BY, pid)
            return done
        if action == agent_rules.FENCE:
            # Off the client bridge first: what the guest or its colo-compare still sends (held replies flushed when
            # this QEMU is stopped or quits) must not reach the clients the other side serves now.
            try:
                done = host.move_tap(spec.tap_name, self.cfg.isolated_bridge)
            except ColoError as exc:
                done = [f"tap left where it was: {exc}"]
            client.execute("stop")
            failover_log.append(spec, "fenced", why, BY, pid)
            self._set(held_since=None)
            return done + ["stop"]
        resumed = []
        if self.view.held_since is not None:  # decide() says this side keeps the guest: let it run again
            resumed = [f"{step} (held since COLO failed)" for step in failover.resume_held(client)] or [
                "held inside a checkpoint: runs again when the failover ends COLO"]
            self._set(held_since=None)
        try:
            lost, plan = failover.plan(state.read(client), "auto", spec.tap_name, self.cfg.client_bridge,
                                       self.cfg.isolated_bridge, given_up=failover_log.given_up(spec, pid))
        except failover.WrongSide:
            return resumed  # nothing of COLO to fail over (e.g. a secondary not protected yet)
        done = plan.apply(client)
        if plan.changed or resumed:
            failover_log.append(spec, failover_log.ACTION_OF_LOST[lost], why, BY, pid)
        return resumed + done

    def _set(self, **values: Any) -> None:
        before = asdict(self.view)
        for key, value in values.items():
            setattr(self.view, key, value)
        if asdict(self.view) != before:
            self._report(Report(self.view.name, "view", asdict(self.view)))


class Agent:
    """The main thread: corosync's notifications, the VMs' reports, the decisions."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.cluster = agent_rules.ClusterView(auto_reprotect=cfg.auto_reprotect,
                                               checkpoint_stall_s=cfg.checkpoint_stall_s, look_fresh_s=cfg.hang_timeout_s)
        self.reports: queue.Queue = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        self.watches = {name: VMWatch(name, cfg, self._post) for name in cfg.vms}
        self.pending: dict[str, str] = {}     # vm -> action sent to its thread, not done yet
        # Decisions taken while their cause lasts: each is sent once (again only if it failed).
        self.decided: set[tuple[str, str, str]] = set()
        self.last: dict[str, dict] = {}       # vm -> the last action done
        self.quorum: Quorum | None = None
        self.cpg: Cpg | None = None
        self.cpg_members: list[int] = []
        self.peer_died: dict[str, float] = {}  # vm -> when the peer's agent said its QEMU died
        self._state_sent: dict | None = None   # what this agent last told the peer it serves
        self.asked = False                     # a query for the peer's state is out for a held guest
        self.retry_at: dict[tuple[str, str, str], float] = {}  # a failed decision is sent again from then
        os.makedirs(cfg.run_dir, exist_ok=True)

    def _post(self, report: Report) -> None:
        self.reports.put(report)
        os.write(self._wake_w, b"x")

    # -- corosync --------------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            self.quorum = Quorum(self._on_quorum)
            self.cpg = Cpg(self.cfg.group, self._on_members, self._on_message)
            self.cluster.me = self.cpg.nodeid
            self._state_sent = None  # the peer hears this side's state again
            log(f"joined corosync as node {self.cluster.me}, CPG group {self.cfg.group}")
        except CorosyncError as exc:
            self._lost_corosync(exc)

    def _lost_corosync(self, exc: Exception) -> None:
        for handle in (self.quorum, self.cpg):
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # pylint: disable=broad-except
                    pass
        self.quorum = self.cpg = None
        if self.cluster.quorate:
            log(f"corosync is gone ({exc}): this host cannot know quorum any more")
            self.cluster.quorate = False  # what a lost quorum means: fence before the peer takes over
        self.cluster.nodes = ()

    def _on_quorum(self, quorate: bool, nodes: list[int]) -> None:
        self.cluster.changed_at = time.monotonic()
        self.cluster.quorate = quorate
        self.cluster.nodes = tuple(nodes)
        self.cluster.peer_seen = self.cluster.peer_seen or self.cluster.peer_present
        if not self.cluster.peer_present:  # what it said is stale: it is gone
            self.cluster.peer_serving, self.cluster.peer_alone, self.cluster.peer_ready = {}, set(), set()
        log(f"quorum: {'quorate' if quorate else 'NOT quorate'}, nodes {list(nodes)}")

    def _on_members(self, members: list, left: list, joined: list) -> None:
        self.cpg_members = [nodeid for nodeid, _pid, _reason in members]
        log(f"agents: {self.cpg_members} (left {left}, joined {joined})")
        if any(nodeid != self.cluster.me for nodeid, _pid, _reason in joined):
            self._state_sent = None  # a peer agent (back) in the group: tell it what this side serves

    def _on_message(self, nodeid: int, data: bytes) -> None:
        if nodeid == self.cluster.me:
            return
        try:
            msg = json.loads(data)
        except ValueError:
            log(f"ignored a message from node {nodeid} that is not JSON")
            return
        if msg.get("type") == "query":
            self._state_sent = None  # a held guest on the peer's side waits for what this side serves
        elif msg.get("type") == "state":
            self.cluster.peer_node = nodeid
            self.cluster.peer_state_at = time.monotonic()
            vms = {vm: st for vm, st in msg.get("vms", {}).items() if vm in self.watches}
            self.cluster.peer_serving = {vm: st.get("decided_at") for vm, st in vms.items() if st.get("serving")}
            self.cluster.peer_alone = {vm for vm, st in vms.items() if st.get("alone")}
            self.cluster.peer_ready = {vm for vm, st in vms.items() if st.get("ready")}
            log(f"node {nodeid} serves {self.cluster.peer_serving or 'nothing'}")
        elif msg.get("type") == "qemu_died" and msg.get("vm") in self.watches:
            log(f"node {nodeid}: its QEMU of {msg['vm']} died ({msg.get('why')})")
            self.peer_died[msg["vm"]] = time.monotonic()

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        for watch in self.watches.values():
            watch.start()
        next_connect = 0.0
        while True:
            if self.cpg is None and time.monotonic() >= next_connect:
                self._connect()
                next_connect = time.monotonic() + 1.0
            fds = [self._wake_r] + ([self.quorum.fd, self.cpg.fd] if self.cpg and self.quorum else [])
            readable, _w, _x = select.select(fds, [], [], 1.0)
            try:
                if self.quorum is not None and self.quorum.fd in readable:
                    self.quorum.dispatch()
                if self.cpg is not None and self.cpg.fd in readable:
                    self.cpg.dispatch()
            except CorosyncError as exc:
                self._lost_corosync(exc)
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
            self._handle_reports()
            self.cluster.maintenance = os.path.exists(self.cfg.maintenance_file)
            self._decide()
            self._tell_state()
            self._publish()

    def _handle_reports(self) -> None:
        while True:
            try:
                report = self.reports.get_nowait()
            except queue.Empty:
                return
            if report.kind == "died":
                log(f"{report.vm}: local QEMU died ({report.detail['why']}); telling the peer")
                self._send({"type": "qemu_died", "vm": report.vm, "why": report.detail["why"]})
            elif report.kind == "view" and report.detail.get("held_since") is not None and not self.asked:
                self.asked = self._send({"type": "query"})  # does the peer serve the guest held here?
            elif report.kind == "done":
                self.pending.pop(report.vm, None)
                self.last[report.vm] = report.detail
                key = (report.vm, report.detail["action"], report.detail["why"])
                if any(step.startswith(("failed:", "skipped:")) for step in report.detail["steps"]):
                    self.decided.discard(key)
                    self.retry_at[key] = time.monotonic() + RETRY_S
                if report.detail["action"] == agent_rules.FENCE or not any(
                        view.held_since is not None for view in (w.view for w in self.watches.values())):
                    self.asked = False
                if report.detail["action"] == agent_rules.FAILOVER:
                    self.peer_died.pop(report.vm, None)
                log(f"{report.vm}: {report.detail['action']} ({report.detail['why']}) took "
                    f"{report.detail['seconds']} s: {report.detail['steps']}")

    def _decide(self) -> None:
        views = [watch.view for watch in self.watches.values()]
        self.cluster.now = time.monotonic()
        fresh = self.cluster.now - PEER_DIED_FRESH_S
        self.cluster.peer_qemu_died = {vm for vm, when in self.peer_died.items() if when >= fresh}
        now = set(agent_rules.decide(self.cluster, views))
        self.decided &= now  # a cause that ended may come again later
        for vm, action, why in sorted(now - self.decided):
            if vm in self.pending or self.retry_at.get((vm, action, why), 0.0) > self.cluster.now:
                continue
            self.decided.add((vm, action, why))
            self.pending[vm] = action
            log(f"{vm}: {action} ({why})")
            self.watches[vm].commands.put((action, why))

    def _send(self, msg: dict) -> bool:
        """Send to the peer's agent. A failure (corosync busy during a membership change) is not a lost corosync:
        only the notifications say that; what was not sent is sent again from the loop."""
        if self.cpg is None:
            return False
        try:
            self.cpg.send(json.dumps(msg).encode())
            return True
        except CorosyncError as exc:
            log(f"could not tell the peer {msg.get('type')} ({exc}); trying again")
            return False

    def _tell_state(self) -> None:
        """Tell the peer's agent which VMs serve here and since which decision, whenever that changes and whenever
        it joins: a host that hung and came back learns at once that its guest was taken over (decide())."""
        if self.cpg is None or not all(watch.first_look_done for watch in self.watches.values()):
            return  # before its first look a VM would be reported as serving nothing
        now = {view.name: {"serving": view.serving, "decided_at": view.decided_at, "alone": view.alone,
                           "ready": view.ready}
               for view in (watch.view for watch in self.watches.values())}
        if now == self._state_sent:
            return
        if self._send({"type": "state", "vms": now}):
            self._state_sent = now

    def _publish(self) -> None:
        views = [watch.view for watch in self.watches.values()]
        serving = os.path.join(self.cfg.run_dir, "primary")
        if any(view.serving for view in views):
            if not os.path.exists(serving):
                open(serving, "w").close()
        elif os.path.exists(serving):
            os.unlink(serving)
        snapshot = {"pid": os.getpid(), "updated": round(time.time(), 1), "node": self.cluster.me,
                    "quorate": self.cluster.quorate, "nodes": list(self.cluster.nodes), "agents": self.cpg_members, "maintenance": self.cluster.maintenance,
                    "auto_reprotect": self.cfg.auto_reprotect,
                    "vms": {view.name: {**asdict(view), "pending": self.pending.get(view.name),
                                        "last_action": self.last.get(view.name)} for view in views}}
        path = os.path.join(self.cfg.run_dir, "state.json")
        with open(f"{path}.tmp", "w") as f:
            json.dump(snapshot, f, indent=1, sort_keys=True)
        os.replace(f"{path}.tmp", path)


def published(run_dir: str = RUN_DIR) -> dict[str, Any] | None:
    """What the agent of this host last wrote to state.json; None where no agent runs (or ran)."""
    try:
        with open(os.path.join(run_dir, "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(f"usage: {argv[0]} CONFIG.json\n")
        return 2
    Agent(Config.load(argv[1])).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
