"""Failover of a COLO pair, and re-protection of the survivor.

primary_lost() runs on the secondary when the primary host died; it takes
over the guest. secondary_lost() runs on the primary when the secondary
died; the primary stops waiting for it. Both refuse on the wrong side, and a
second call finds nothing left to do and returns [].
"""
from __future__ import annotations

import json
import subprocess
from typing import Any

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint, proc, proxy, replication
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec

# announce-self: 5 gratuitous ARP/RARP rounds, 50 ms then +100 ms each, as QEMU's
# migration announce defaults; lets the client switch learn the new port.
ANNOUNCE = {"initial": 50, "max": 550, "rounds": 5, "step": 100}


class WrongSide(ColoError):
    """The failover was asked of the VM on the other side of the pair."""


def _ip(args: list[str]) -> subprocess.CompletedProcess:
    try:
        return proc.run(["ip", *args], timeout=10.0)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ColoError(f"ip {' '.join(args)} failed: {exc}") from None


def bridge_of(iface: str) -> str | None:
    """The bridge an interface is enslaved to, or None."""
    # `ip -j` rather than /sys/class/net: a bind-mounted /sys may show another netns.
    res = _ip(["-j", "link", "show", "dev", iface])
    if res.returncode != 0:
        raise ColoError(f"network interface {iface} not found: {res.stderr.strip()}")
    links = json.loads(res.stdout or "[]")
    return links[0].get("master") if links else None


def move_tap(tap: str, to_bridge: str, from_bridge: str | None = None) -> list[str]:
    """Put the guest's tap on the client bridge (it sat on the isolated one)."""
    now = bridge_of(tap)
    if now == to_bridge:
        return []
    if from_bridge is not None and now not in (from_bridge, None):
        raise ColoError(f"tap {tap} is on bridge {now}, expected {from_bridge} or {to_bridge}")
    res = _ip(["link", "set", tap, "master", to_bridge])
    if res.returncode != 0:
        raise ColoError(f"ip link set {tap} master {to_bridge} failed: {res.stderr.strip()}")
    return [f"ip link set {tap} master {to_bridge} (was {now or 'no bridge'})"]


def primary_lost(
    secondary: QMPClient,
    tap: str | None = None,
    client_bridge: str | None = None,
    isolated_bridge: str | None = None,
    announce: bool = True,
) -> list[str]:
    """On the secondary: take over the guest after the primary died.

    nbd-server-stop, x-colo-lost-heartbeat, move the tap from the isolated
    bridge to the client bridge, drop the redirectors f2/f1 and their
    chardevs red1/red0, announce the guest's MAC.
    """
    st = checkpoint.colo_status(secondary)
    if st["mode"] == "primary":
        raise WrongSide("primary_lost() runs on the secondary, but this VM is the COLO primary (use secondary_lost)")
    if st["mode"] == "none" and st["last-mode"] != "secondary":
        raise WrongSide(
            "primary_lost(): this VM is not in COLO and its last COLO mode was "
            f"{st['last-mode']}, not secondary; nothing to take over"
        )
    if tap is not None and client_bridge is None:
        raise ColoError("primary_lost(): tap given without the client bridge to move it to")
    done: list[str] = []
    if st["mode"] == "secondary":
        # Stop serving NBD first: no write from a half-dead primary may land now.
        done += replication.stop_nbd(secondary)
        secondary.execute("x-colo-lost-heartbeat")
        done.append("x-colo-lost-heartbeat")
        checkpoint.wait_mode_none(secondary)
    else:
        done += replication.stop_nbd(secondary)  # leftover of an interrupted earlier call
    # The tap moves before f2 goes: until then the guest's frames still go to the
    # dead primary, so its first own frames (ARP among them) reach the client
    # network, never the isolated bridge, where a host kernel may answer an ARP
    # request with its own MAC and leave the guest sending to it.
    if tap is not None and client_bridge is not None:
        done += move_tap(tap, client_bridge, isolated_bridge)
    done += proxy.remove_secondary(secondary)
    checkpoint.wait_running(secondary)
    if announce and done:
        secondary.execute("announce-self", ANNOUNCE)
        done.append("announce-self")
    return done


def secondary_lost(primary: QMPClient) -> list[str]:
    """On the primary: stop replicating to a dead secondary, keep serving alone."""
    st = checkpoint.colo_status(primary)
    if st["mode"] == "secondary":
        raise WrongSide("secondary_lost() runs on the primary, but this VM is the COLO secondary (use primary_lost)")
    if st["mode"] == "none" and st["last-mode"] != "primary" and replication.replication_child(primary) is None:
        raise WrongSide(
            "secondary_lost(): this VM is not in COLO, its last COLO mode was "
            f"{st['last-mode']} (not primary) and it has no replication child; nothing to release"
        )
    done = checkpoint.release_primary(primary)
    checkpoint.wait_running(primary)
    return done


def reprotect(
    survivor: QMPClient,
    new_secondary: QMPClient | None,
    spec: VMSpec,
    compare: proxy.CompareOptions | None = None,
    **protect_args: Any,
) -> checkpoint.ProtectResult:
    """The survivor of a failover (running alone) becomes primary of a new secondary.

    spec describes the new direction: forward_addr is the survivor's
    forward-link address, checkpoint_addr the new secondary's checkpoint-link
    address (the ports come from spec too). new_secondary: its QMP client, or
    None if it runs on another host and was readied there
    (checkpoint.prepare_secondary). Proxy objects are hot-added
    (before rew0 on a former secondary), the disk is resynced by drive-mirror,
    the replication child re-added, then COLO starts; the guest keeps running
    apart from the short final pause.
    """
    st = checkpoint.colo_status(survivor)
    if st["mode"] == "secondary":
        raise WrongSide("reprotect(): this VM is still a COLO secondary; run primary_lost() first")
    if not spec.checkpoint_addr or not spec.forward_addr:
        raise ColoError("reprotect(): spec needs forward_addr (this host) and checkpoint_addr (the new secondary)")
    protect_args.setdefault("checkpoint_delay_ms", spec.checkpoint_delay_ms)
    return checkpoint.protect(
        survivor,
        new_secondary,
        spec.checkpoint_addr,
        nbd_port=spec.nbd_port,
        migration_port=spec.migration_port,
        proxy_spec=spec,
        compare=compare,
        **protect_args,
    )
