"""Who answers for the guest's address: ARP seen at the client switch, per host port.

Both COLO guests have the same MAC and address, so the client cannot tell them apart; the switch
can. ArpWatch asks "who has GUEST_ADDR" from the client namespace every `interval` seconds and
listens on each host's port of the client switch (in the switch namespace) for the guest's ARP
replies. During COLO only the primary's leave its host (the secondary's go to the primary's
colo-compare); after a failover only the survivor's. Each request says it comes from another
unused address of the client subnet (ROUNDS of them in turn, the client's own MAC), and a reply
names the address it answers: replies to the same request from two hosts' ports mean two guests
answered one address, split brain - while a clean handover answers one request from the old host
and a later one from the new.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
import time

from .config import CLIENT_NS, GUEST_ADDR, HOSTS, SWITCH_NS
from .testing import in_netns

ETH_P_ARP = 0x0806
ETH_P_ALL = 0x0003  # a bridge port's frames reach protocol-specific packet sockets only after the bridge took them
PACKET_OUTGOING = 4
ROUNDS = 100              # request sender addresses: .150 to .249 of the client subnet
FIRST_ROUND_OCTET = 150


def _request(src_mac: bytes, src_ip: str, target_ip: str) -> bytes:
    eth = b"\xff" * 6 + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(src_ip),
                      b"\x00" * 6, socket.inet_aton(target_ip))
    return eth + arp


class ArpWatch:
    """Context manager: replies[host] = times (monotonic) of the guest's ARP replies leaving that host; rounds[host]
    the request (sender address) each answered."""

    def __init__(self, interval: float = 0.05, client_if: str = "eth0"):
        self.interval = interval
        self.replies: dict[str, list[float]] = {host.name: [] for host in HOSTS}
        self.rounds: dict[str, list[bytes]] = {host.name: [] for host in HOSTS}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        with in_netns(CLIENT_NS):
            self._tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            self._tx.bind((client_if, 0))
        mac, client_ip = _interface(CLIENT_NS, client_if)
        subnet = client_ip.rsplit(".", 1)[0]
        self._frames = [_request(mac, f"{subnet}.{FIRST_ROUND_OCTET + k}", GUEST_ADDR) for k in range(ROUNDS)]
        self._rx = {}
        with in_netns(SWITCH_NS):
            for host in HOSTS:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                try:
                    sock.bind((host.peer("eth0"), ETH_P_ALL))
                except OSError:  # a host that is off has no port: its guest cannot answer
                    sock.close()
                    continue
                sock.settimeout(0.2)
                self._rx[host.name] = sock

    def __enter__(self) -> ArpWatch:
        self._threads = [threading.Thread(target=self._ask, daemon=True)]
        self._threads += [threading.Thread(target=self._listen, args=(name, sock), daemon=True)
                          for name, sock in self._rx.items()]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in (self._tx, *self._rx.values()):
            sock.close()

    def _ask(self) -> None:
        k = 0
        while not self._stop.is_set():
            try:
                self._tx.send(self._frames[k % ROUNDS])
            except OSError:
                pass
            k += 1
            self._stop.wait(self.interval)

    def _listen(self, host: str, sock: socket.socket) -> None:
        guest = socket.inet_aton(GUEST_ADDR)
        while not self._stop.is_set():
            try:
                frame, addr = sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:  # the port went away with its host (a power cut)
                return
            if addr[2] == PACKET_OUTGOING or len(frame) < 42 or frame[12:14] != b"\x08\x06":
                continue  # frames the switch sends to the host, runts, not ARP
            opcode, sender_ip = struct.unpack("!H", frame[20:22])[0], frame[28:32]
            if opcode == 2 and sender_ip == guest:
                self.replies[host].append(time.monotonic())
                self.rounds[host].append(frame[38:42])  # the address the request came from

    def both_answered(self) -> list[tuple[float, float]]:
        """(time, time) of replies from two hosts to the same request: split brain."""
        (a_times, a_rounds), (b_times, b_rounds) = [(self.replies[h], self.rounds[h]) for h in self.replies][:2]
        return same_request(list(zip(a_times, a_rounds)), list(zip(b_times, b_rounds)), ROUNDS * self.interval / 2)

    def answering(self, since: float) -> set[str]:
        """The hosts whose guest answered since `since` (monotonic)."""
        return {host for host, times in self.replies.items() if any(t >= since for t in times)}


def same_request(a: list[tuple[float, bytes]], b: list[tuple[float, bytes]], window: float) -> list[tuple[float, float]]:
    """Pairs of replies (time, request's sender address) from two hosts that answer the same request: the same
    sender address less than `window` apart (requests of one sender address come twice that apart)."""
    return [(ta, tb) for ta, ra in a for tb, rb in b if ra == rb and abs(ta - tb) < window]


def _interface(netns: str, ifname: str) -> tuple[bytes, str]:
    """MAC and IPv4 address of ifname in netns (ip(8): /sys shows the machine's own devices)."""
    out = subprocess.run(["ip", "-n", netns, "-j", "addr", "show", "dev", ifname], check=True,
                         capture_output=True, text=True).stdout
    info = json.loads(out)[0]
    ipv4 = next(a["local"] for a in info["addr_info"] if a["family"] == "inet")
    return bytes.fromhex(info["address"].replace(":", "")), ipv4
