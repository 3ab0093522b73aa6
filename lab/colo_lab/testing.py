"""Helpers for tests and benchmarks that drive the lab: lab commands, Ansible runs, and a client
of the test guest that lives in the lab's client namespace.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from .config import CLIENT_NS, GUEST_ADDR, REPO
from .inventory import INVENTORY
from .ledger import LedgerClient

LAB = REPO / "lab/colo-lab"


def lab_cmd(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([str(LAB), *args], text=True, capture_output=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"colo-lab {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def on_host(host: str, command: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return lab_cmd("ssh", host, command, check=check, timeout=timeout)


def quorum(host: str) -> dict[str, str]:
    """`corosync-quorumtool -s` on host as {field: value} ("Quorate": "Yes", "Total votes": "3", ...); {} without
    a running corosync."""
    out = on_host(host, "corosync-quorumtool -s", check=False, timeout=30).stdout
    return {key.strip(): value.strip() for key, sep, value in (line.partition(":") for line in out.splitlines())
            if sep and value.strip()}


def in_client(*argv: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return lab_cmd("client", *argv, check=check, timeout=timeout)


def _ansible_call(argv: tuple[str, ...], env: dict | None) -> tuple[list[str], dict]:
    tool, *rest = argv
    return ([str(REPO / ".venv/bin" / tool), "-i", str(INVENTORY), *rest],
            {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0", **(env or {})})


def _checked(argv: tuple[str, ...], result: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result


def ansible(*argv: str, check: bool = True, timeout: float = 1800, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run an Ansible command-line tool from the project's venv against the lab."""
    cmd, full_env = _ansible_call(argv, env)
    result = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, cwd=REPO, env=full_env, check=False)
    return _checked(argv, result, check)


def ansible_peak_rss(*argv: str, check: bool = True, env: dict | None = None) -> tuple[subprocess.CompletedProcess, int]:
    """ansible(), and the controller's peak resident memory in KiB: the largest of the tool's process and every
    process it waited for (its forks, their ssh), as wait4's rusage reports it. Output goes to files (a pipe
    would need a reader while we wait)."""
    cmd, full_env = _ansible_call(argv, env)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, text=True, stdout=out, stderr=err, cwd=REPO, env=full_env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
    return _checked(argv, result, check), usage.ru_maxrss


@contextlib.contextmanager
def in_netns(name: str):
    """Run the body in the lab's network namespace NAME: sockets made here stay there, even after the block."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as there:
        os.setns(there.fileno(), os.CLONE_NEWNET)
        try:
            yield
        finally:
            os.setns(home.fileno(), os.CLONE_NEWNET)


def client_netns():
    """Run the body in the client namespace."""
    return in_netns(CLIENT_NS)


def tcp_probe(netns: str, targets: list[tuple[str, int]], timeout: float = 2.0) -> dict[tuple[str, int], str]:
    """Connect from NETNS to every (address, port) at once: {target: "open", "refused", "dropped" (no answer within
    timeout) or the error}. The connections are closed again at once."""
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[str, int]] = {}
    with in_netns(netns):
        for target in targets:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(target)
            pending[sock] = target
            selector.register(sock, selectors.EVENT_WRITE)
    found: dict[tuple[str, int], str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(pending) and time.monotonic() < deadline:
        for key, _events in selector.select(max(0.0, deadline - time.monotonic())):
            error = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            found[pending[key.fileobj]] = {0: "open", errno.ECONNREFUSED: "refused"}.get(error, os.strerror(error))
            selector.unregister(key.fileobj)
    for sock, target in pending.items():
        found.setdefault(target, "dropped")
        sock.close()
    selector.close()
    return found


def http_get(path: str, timeout: float = 10) -> str:
    """GET from the test guest, as a client on the client switch."""
    with client_netns():
        with urllib.request.urlopen(f"http://{GUEST_ADDR}{path}", timeout=timeout) as reply:
            return reply.read().decode()


def wait_http(path: str = "/", timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(path, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def recap(output: str) -> dict:
    """PLAY RECAP counters per host from ansible-playbook's output."""
    counts = {}
    for line in output.splitlines():
        if " : ok=" in line:
            host, rest = line.split(" : ", 1)
            counts[host.strip()] = {k: int(v) for k, v in (kv.split("=") for kv in rest.split())}
    return counts


def run_module(pattern: str, module: str, args: dict | str = "", env: dict | None = None) -> tuple[int, dict]:
    """One module on the hosts of pattern: (exit code of ansible, {host: result}); env as for ansible()."""
    argv = ["ansible", pattern, "-m", module]
    if args:
        argv += ["-a", args if isinstance(args, str) else json.dumps(args)]
    # The tree callback (ansible-core's own) writes each host's result as JSON to a file.
    with tempfile.TemporaryDirectory() as tree:
        done = ansible(*argv, check=False, env={**(env or {}), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                                                "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
                                                "ANSIBLE_CALLBACK_TREE_DIR": tree})
        return done.returncode, {path.name: json.loads(path.read_text()) for path in Path(tree).iterdir()}


def vm_info(sample_seconds: float = 0, env: dict | None = None) -> dict:
    """colo.ft.info on both hosts: {host: {vm name: status}} (an unreachable host maps to None)."""
    _rc, results = run_module("colo_primary:colo_secondary", "colo.ft.info", {"sample_seconds": sample_seconds}, env)
    return {host: r.get("vms") for host, r in results.items()}


class ClientLoad:
    """A client of the guest during a fault: ledger writes on one connection, plus an idle held one.

    Every acknowledged record is remembered with the time of its answer, so a test can check that
    none is lost and see how long the service was gone (the longest gap between two answers).
    """

    def __init__(self, tag: str, interval: float = 0.05):
        self.tag, self.interval = tag, interval
        self.acked: list[tuple[int, str, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        with client_netns():
            self.held = LedgerClient(GUEST_ADDR, timeout=120)
            self._writer_conn = LedgerClient(GUEST_ADDR, timeout=120)
        self.held.ping()
        self._thread = threading.Thread(target=self._write, daemon=True)

    def __enter__(self) -> "ClientLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _write(self) -> None:
        i = 0
        while not self._stop.is_set():
            text = f"{self.tag}-{i:05d}"
            try:
                seq = self._writer_conn.put(text)
            except Exception as error:  # recorded and checked by the test
                self.errors.append(repr(error))
                return
            self.acked.append((seq, text, time.monotonic()))
            i += 1
            time.sleep(self.interval)

    def wait_acks(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.acked)
        while len(self.acked) < start + count:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"no {count} acknowledgements within {timeout}s"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=180)
        self._writer_conn.close()

    def longest_gap(self, after: float) -> float:
        times = [after] + [t for _seq, _text, t in self.acked if t >= after]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def lost(self) -> list[tuple[int, str]]:
        """Acknowledged records that are not on the guest's disk now."""
        with client_netns():
            reader = LedgerClient(GUEST_ADDR, timeout=60)
        with reader:
            on_disk = set(reader.get())
        return [(seq, text) for seq, text, _t in self.acked if (seq, text) not in on_disk]


def record_metric(name: str, value) -> None:
    """Keep a measured figure of a lab run in tests/output/lab-metrics.json (for notes and bench)."""
    path = REPO / "tests/output/lab-metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(name, []).append(value)
    path.write_text(json.dumps(data, indent=1) + "\n")
