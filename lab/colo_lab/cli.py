"""colo-lab: a two-host COLO lab on one machine.  Run `colo-lab --help`."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time

from . import chroot, hosts, image, net
from .config import (CLIENT_NS, FREEZER, GUEST_ADDR, HOSTS, INSTANCE, LINKS_BY_NAME, MACHINES, MACHINES_BY_NAME, REPO, STATE,
                     STRANGER_NS, SWITCH_NS)
from .inventory import INVENTORY, write_inventory
from .util import LabError, log


# Commands that only run something inside the lab (in the client namespace, or on a host over ssh) and
# may run for long: they change nothing of the lab and take no lock, so that a fault (crash, cut, ...)
# strikes while they run, as it would on real hosts. Every other command holds the lab's lock: the
# commands that change the lab run one at a time, and status reads a lab that none is changing.
UNLOCKED = frozenset({"client", "stranger", "ssh"})
LOCK = STATE.parent / f".{STATE.name}.lock"


@contextlib.contextmanager
def lab_lock(command: str):
    """Hold the lab's lock for COMMAND, unless it is one of UNLOCKED."""
    if command in UNLOCKED:
        yield
        return
    STATE.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _host(name: str):
    try:
        return MACHINES_BY_NAME[name]
    except KeyError:
        raise LabError(f"unknown host {name!r}; the lab's hosts are {', '.join(MACHINES_BY_NAME)}") from None


def _ports(link: str) -> list[str]:
    """Switch-side ends for LINK: eth1/eth2 (the link between the hosts) or HOST:IFACE."""
    if ":" in link:
        name, iface = link.split(":", 1)
        host = _host(name)
        if iface not in LINKS_BY_NAME or iface == "mgmt0":
            raise LabError(f"unknown interface {iface!r}; use eth0, eth1 or eth2")
        if iface not in host.links:
            raise LabError(f"{name} has no {iface}; its links are {', '.join(host.links[1:])}")
        return [host.peer(iface)]
    if link in ("eth1", "eth2"):
        return [host.peer(link) for host in HOSTS]
    raise LabError(f"unknown link {link!r}; use eth1, eth2 (the direct links) or HOST:eth0 (a host's client link)")


def cmd_build(_args) -> None:
    image.ensure_image()
    image.ensure_guest()


def cmd_up(_args) -> None:
    started = time.monotonic()
    image_dir, guest_dir = image.ensure_image(), image.ensure_guest()
    hosts.ensure_ssh_key()
    net.ensure_switches()
    # All boot at once; then wait for each.
    started_procs = [(host, hosts.start(host, image_dir, guest_dir)) for host in MACHINES]
    for host, proc in started_procs:
        hosts.wait_booted(host, proc)
    path = write_inventory(guest_dir)
    log(f"lab up in {time.monotonic() - started:.1f}s; inventory: {path}")


def cmd_down(_args) -> None:
    chroot.remove_leftovers()
    for host in MACHINES:
        hosts.kill_all(host)
        (STATE / "hosts" / host.name / "nspawn.pid").unlink(missing_ok=True)
        hosts.unmount_root(host)
    net.teardown()
    if FREEZER.exists():
        FREEZER.rmdir()
    shutil.rmtree(STATE, ignore_errors=True)
    log("lab down: hosts, mounts, namespaces and state removed (the image cache stays)")


def cmd_chroot(args) -> int:
    return chroot.chroot(args.dir, args.command, image.ensure_image(), image.ensure_guest())


def cmd_status(_args) -> None:
    print(f"switches: {'up' if net.netns_exists(SWITCH_NS) else 'down'}")
    for host in MACHINES:
        print(f"{host.name}: {hosts.status(host)}")
    for host in MACHINES:
        for iface in host.links[1:]:
            port = host.peer(iface)
            if net.link_exists(port, SWITCH_NS):
                isolated = " (isolated)" if net.port_is_isolated(port) else ""
                print(f"link {host.name}:{iface}: {'up' if net.port_is_up(port) else 'cut'}{isolated}")
    print(f"inventory: {INVENTORY if INVENTORY.exists() else 'none'}")


def cmd_crash(args) -> None:
    hosts.crash(_host(args.host), loud=args.loud)


def cmd_freeze(args) -> None:
    hosts.freeze(_host(args.host))


def cmd_thaw(args) -> None:
    hosts.thaw(_host(args.host))


def cmd_restart(args) -> None:
    host = _host(args.host)
    hosts.shutdown(host)
    hosts.boot(host, image.ensure_image(), image.ensure_guest())


def cmd_cut(args) -> None:
    for port in _ports(args.link):
        net.set_port(port, up=False)


def cmd_heal(args) -> None:
    if args.link == "split":
        _split(False)
        return
    for port in _ports(args.link):
        net.set_port(port, up=True)


def cmd_split(_args) -> None:
    _split(True)


def _split(split: bool) -> None:
    """Split (or heal) the pair: no path between colo-a and colo-b, while both still reach the client
    namespace, the arbiter and the machine. The direct links are cut and, on the client and management
    switches, the two hosts' ports are isolated (isolated ports cannot talk to each other, but still reach
    every other port)."""
    for port in _ports("eth1") + _ports("eth2"):
        net.set_port(port, up=not split)
    for host in HOSTS:
        for iface in ("mgmt0", "eth0"):
            net.set_isolated(host.peer(iface), split)


def cmd_ssh(args) -> int:
    host = _host(args.host)
    command = " ".join(args.command)
    if not command:
        os.execvp("ssh", ["ssh", *hosts.SSH_OPTS, "-t", "-i", str(hosts.SSH_KEY), f"root@{host.address('mgmt0')}"])
    return hosts.ssh(host, command, check=False, capture=False, timeout=3600).returncode


def cmd_client(args) -> int:
    return _in_netns(CLIENT_NS, args.command)


def cmd_stranger(args) -> int:
    return _in_netns(STRANGER_NS, args.command)


def _in_netns(netns: str, command: list[str]) -> int:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'lab'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(["ip", "netns", "exec", netns, *command], env=env, check=False).returncode


def cmd_site(args) -> int:
    subprocess.run([str(REPO / "scripts/bootstrap")], check=True)
    cmd_up(args)
    playbook = [str(REPO / ".venv/bin/ansible-playbook"), "-i", str(INVENTORY), str(REPO / "playbooks/site.yml"), *args.extra]
    log(" ".join(playbook))
    rc = subprocess.run(playbook, cwd=REPO, check=False).returncode
    if rc == 0:
        play = f"{REPO / '.venv/bin/ansible-playbook'} -i {INVENTORY}"
        lab = f"COLO_LAB_INSTANCE={INSTANCE} lab/colo-lab" if INSTANCE else "lab/colo-lab"
        print(f"""
The test guest ({GUEST_ADDR}: HTTP on 80, ledger on 7000) runs protected by COLO: colo-a primary, colo-b secondary.
  state:        {play} playbooks/status.yml
  a client:     {lab} client python3 -m colo_lab.ledger --host {GUEST_ADDR} put hello
  fail over:    {lab} crash colo-a && {play} playbooks/failover.yml
  re-protect:   {lab} restart colo-a && {play} playbooks/reprotect.yml
  take it down: {lab} down""")
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="colo-lab", description="Two Debian 13 hosts and an arbiter (systemd-nspawn) "
                                     "wired like the COLO seed: client switch on eth0, forward link eth1, checkpoint "
                                     "link eth2; the arbiter on the client switch only.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or reuse) the cached host image, local apt repository and test guest")
    sub.add_parser("up", help="build what is missing, boot colo-a, colo-b and colo-arbiter, write the inventory "
                   "(idempotent)")
    sub.add_parser("down", help="remove everything the lab made except the image cache")
    sub.add_parser("status", help="say what runs")
    p = sub.add_parser("chroot", help="run a command with a throw-away root at DIR: the host image with QEMU and "
                       "pytest installed (default command: a shell in it); DIR is removed when it ends")
    p.add_argument("dir")
    p.add_argument("command", nargs=argparse.REMAINDER)
    for name, text in (("crash", "power cut: HOST's links go dark, then all its processes die at once"),
                       ("freeze", "hang HOST"), ("thaw", "resume a frozen HOST"),
                       ("restart", "power HOST off (if on) and boot it (links back up)")):
        sub.add_parser(name, help=text).add_argument("host")
    sub.choices["crash"].add_argument("--loud", action="store_true",
                                      help="kill with the links up: the dying kernel sends FIN/RST to every peer")
    for name, text in (("cut", "unplug LINK"), ("heal", "plug LINK back (split: end a split)")):
        sub.add_parser(name, help=f"{text}: eth1, eth2 or HOST:eth0|eth1|eth2").add_argument("link")
    sub.add_parser("split", help="no path between colo-a and colo-b (eth1, eth2 cut, their client-switch ports isolated "
                   "from each other); both still reach the client namespace and the arbiter. `heal split` ends it")
    p = sub.add_parser("ssh", help="a shell or a command on HOST")
    p.add_argument("host")
    p.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("client", help="run a command in the client namespace (PYTHONPATH has lab/)").add_argument(
        "command", nargs=argparse.REMAINDER)
    sub.add_parser("stranger", help="run a command in the stranger namespace: neither host, with an address on the "
                   "forward and the checkpoint link (PYTHONPATH has lab/)").add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("site", help="bootstrap, up, then ansible-playbook playbooks/site.yml on the lab").add_argument(
        "extra", nargs=argparse.REMAINDER, help="more ansible-playbook arguments")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("colo-lab: must run as root (namespaces, mounts, containers)", file=sys.stderr)
        return 2
    with lab_lock(args.cmd):
        try:
            return globals()[f"cmd_{args.cmd}"](args) or 0
        except LabError as error:
            print(f"colo-lab: error: {error}", file=sys.stderr)
            return 1
