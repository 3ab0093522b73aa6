"""The protected pair in the lab: who is primary, crash, repair, re-protect, and a runtime failover
called directly on the survivor (no Ansible in between)."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time

from colo_lab import hosts
from colo_lab.config import HOSTS_BY_NAME, REPO
from colo_lab.testing import ansible, lab_cmd, recap, run_module, vm_info, wait_http

VM = "guest0"
REMOTE = "/var/lib/colo-bench"  # on the lab hosts' disks: survives a crash and a restart
FAILOVER_LOG = f"/var/lib/colo-ft/failovers/{VM}.jsonl"


def timed_playbook(name: str, *extra: str) -> tuple[float, dict]:
    """Run playbooks/NAME; (wall seconds, PLAY RECAP counters per host)."""
    t0 = time.monotonic()
    result = ansible("ansible-playbook", f"playbooks/{name}", *extra)
    return time.monotonic() - t0, recap(result.stdout)


def qemus() -> dict[str, dict]:
    """{host: {"mode", "pid", "checkpoint_delay_ms"}} of the guest's running QEMU on the hosts that answer."""
    return {h: {k: vms[VM][k] for k in ("mode", "pid", "checkpoint_delay_ms")}
            for h, vms in vm_info().items() if vms and VM in vms and vms[VM]["running"]}


def modes() -> dict[str, str]:
    """{host: COLO mode of the guest} for the hosts that answer."""
    return {h: q["mode"] for h, q in qemus().items()}


def failover_log(host: str) -> list[dict]:
    """The guest's failover log on a host (docs/agent.md), oldest first; a torn line (power cut) is skipped."""
    done = hosts.ssh(HOSTS_BY_NAME[host], f"cat {FAILOVER_LOG} 2>/dev/null || true", capture=True)
    found = []
    for line in done.stdout.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def layout() -> tuple[str, str]:
    """(primary host, secondary host) of a protected pair; AssertionError otherwise."""
    now = modes()
    primary = [h for h, m in now.items() if m == "primary"]
    secondary = [h for h, m in now.items() if m == "secondary"]
    assert len(primary) == 1 and len(secondary) == 1, f"the pair is not protected: {now}"
    return primary[0], secondary[0]


def ensure_protected() -> tuple[str, str]:
    """Protect the guest if it is not (lab up, site.yml or reprotect.yml); (primary, secondary)."""
    lab_cmd("up")
    try:
        return layout()
    except AssertionError:
        pass
    now = modes()
    if any(m == "none" for m in now.values()):
        repair_and_reprotect(next(h for h in HOSTS_BY_NAME if now.get(h) != "none"))
    else:
        timed_playbook("site.yml")
    wait_http()
    return layout()


def restart_protected(*extra: str) -> tuple[tuple[str, str], float]:
    """stop.yml, then site.yml with extra arguments (e.g. "-e", "colo_tls=false"): a fresh pair with
    those settings; ((primary, secondary), seconds both playbooks took)."""
    stop_s = timed_playbook("stop.yml")[0]
    site_s = timed_playbook("site.yml", *extra)[0]
    wait_http()
    return layout(), stop_s + site_s


def set_maintenance(on: bool) -> None:
    """Pause (on) or resume the colo.ft agents (playbooks/maintenance.yml), if it is not so already."""
    states = [json.loads(hosts.ssh(HOSTS_BY_NAME[h], "cat /run/colo-ft/agent/state.json", capture=True).stdout)
              for h in HOSTS_BY_NAME]
    if any(s["maintenance"] != on for s in states):
        timed_playbook("maintenance.yml", "-e", f"colo_maintenance={'on' if on else 'off'}")


def wait_agent_failover(survivor: str, crashed: float, timeout: float = 60) -> float:
    """Wait until the survivor's agent logged its failover (took_over or released) after the crash; the seconds
    the agent's step took on the QEMU side."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(hosts.ssh(HOSTS_BY_NAME[survivor], "cat /run/colo-ft/agent/state.json",
                                     capture=True).stdout)
        last = state["vms"][VM].get("last_action") or {}
        if state["vms"][VM]["mode"] == "none" and last.get("action") == "failover":
            return float(last["seconds"])
        time.sleep(0.5)
    raise AssertionError(f"the agent on {survivor} did not fail over within {timeout:g} s")


def set_checkpoint_delay(primary: str, delay_ms: int) -> None:
    args = {"name": VM, "state": "protected", "checkpoint_delay_ms": delay_ms}
    rc, results = run_module(primary, "colo.ft.checkpoint", args)
    assert rc == 0, results


def sample(primary: str, seconds: float, causes: bool = False) -> dict:
    """colo.ft.info on the primary, watching checkpoints for `seconds` (and counting them by cause)."""
    args = {"name": VM, "sample_seconds": seconds, "probe_features": False, "checkpoint_causes": causes}
    rc, results = run_module(primary, "colo.ft.info", args)
    assert rc == 0, results
    return results[primary]["vms"][VM]


def crash(host: str) -> float:
    """Power-cut a lab host (every process killed at one instant); the time.monotonic() before it."""
    t = time.monotonic()
    hosts.crash(HOSTS_BY_NAME[host])
    return t


def agents_active() -> bool:
    """The colo.ft agents run and are not paused (they re-protect by themselves), as the hosts that answer say (a
    crashed one cannot; the maintenance switch is set on both hosts and survives a reboot)."""
    states = [hosts.ssh(HOSTS_BY_NAME[h], "cat /run/colo-ft/agent/state.json", capture=True, check=False, timeout=15)
              for h in HOSTS_BY_NAME]
    answered = [json.loads(s.stdout) for s in states if s.returncode == 0 and s.stdout.strip()]
    return bool(answered) and all(not s["maintenance"] for s in answered)


def repair_and_reprotect(dead: str, timeout: float = 300) -> float:
    """Restart the crashed host; with the agents active wait until they re-protected the guest by themselves
    (the returning host secondary), else run reprotect.yml. The seconds from the restart to a protected pair."""
    active = agents_active()
    t0 = time.monotonic()
    lab_cmd("restart", dead)
    if not active:
        seconds, counts = timed_playbook("reprotect.yml")
        assert all(c["failed"] == 0 for c in counts.values()), counts
        return seconds
    deadline = t0 + timeout
    while True:
        try:
            if layout()[1] == dead:
                return time.monotonic() - t0
        except AssertionError:
            pass
        assert time.monotonic() < deadline, f"the agents did not re-protect the guest on {dead} within {timeout:g} s"
        time.sleep(2)


def _ssh_argv(host: str, command: str) -> list[str]:
    h = HOSTS_BY_NAME[host]
    return ["ssh", *hosts.SSH_OPTS, "-i", str(hosts.SSH_KEY), f"root@{h.address('mgmt0')}", command]


def push_runtime(host: str) -> None:
    """Copy the COLO runtime (plugins/module_utils/colo) and the failover runner to the host."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        runtime = REPO / "plugins/module_utils/colo"
        for path in sorted(runtime.glob("*.py")):
            tar.add(path, f"ansible_collections/colo/ft/plugins/module_utils/colo/{path.name}")
        tar.add(REPO / "bench/colo_bench/direct_failover.py", "direct_failover.py")
    subprocess.run(_ssh_argv(host, f"rm -rf {REMOTE} && mkdir -p {REMOTE} && tar -x -C {REMOTE}"),
                   input=buf.getvalue(), check=True, timeout=60, capture_output=True)


class DirectFailover:
    """The runtime's failover on the survivor, armed before the crash: an ssh session runs
    direct_failover.py, which has read the VM's record and waits for "go" on its stdin."""

    def __init__(self, survivor: str):
        push_runtime(survivor)
        self.proc = subprocess.Popen(_ssh_argv(survivor, f"python3 {REMOTE}/direct_failover.py {VM} br0 br1"),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise AssertionError(f"direct failover runner did not start: {line} {self.proc.stderr.read()}")

    def go(self) -> dict:
        """Fail over now; the runner's result (actions, QMP-side duration)."""
        out, err = self.proc.communicate("go\n", timeout=60)
        if self.proc.returncode != 0:
            raise AssertionError(f"direct failover failed ({self.proc.returncode}): {err.strip()}")
        return json.loads(out.strip().splitlines()[-1])
