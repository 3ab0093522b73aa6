"""HTTP clients of the test guest, run from the lab's client namespace.

Every request is a new TCP connection (the guest's busybox httpd closes after each answer), sent as
HTTP/1.0 on a raw socket so that the client adds as little as possible to what is measured.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from colo_lab.config import GUEST_ADDR
from colo_lab.testing import client_netns

from colo_bench import stats


@dataclass
class Sample:
    sent: float              # time.monotonic() when the request was started
    done: float | None       # when the full answer arrived (None: failed)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency(self) -> float | None:
        return None if self.done is None else self.done - self.sent


def _socket() -> socket.socket:
    """A TCP socket in the client namespace (a socket stays in the namespace it was made in)."""
    with client_netns():
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def request(sock: socket.socket, path: str, timeout: float) -> Sample:
    sent = time.monotonic()
    try:
        with sock:
            sock.settimeout(timeout)
            sock.connect((GUEST_ADDR, 80))
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {GUEST_ADDR}\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head = b"".join(chunks)[:32]
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head:
            return Sample(sent, None, f"bad answer {head!r}")
        return Sample(sent, time.monotonic())
    except OSError as e:
        return Sample(sent, None, f"{type(e).__name__}: {e}")


class PacedClient:
    """Requests at a fixed rate, each in its own thread, so a stalled one never delays the next.

    During an outage requests pile up in TCP's SYN retransmission; the ones sent after the service
    came back answer at once, so the first answer to a request sent after an instant is when the
    service was back for a new client.
    """

    def __init__(self, rate: float = 20.0, path: str = "/", timeout: float = 30.0):
        self.rate, self.path, self.timeout = rate, path, timeout
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True)

    def __enter__(self) -> PacedClient:
        self._dispatcher.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _one(self, sock: socket.socket) -> None:
        sample = request(sock, self.path, self.timeout)
        with self._lock:
            self.samples.append(sample)

    def _dispatch(self) -> None:
        start, i = time.monotonic(), 0
        while not self._stop.is_set():
            t = threading.Thread(target=self._one, args=(_socket(),), daemon=True)
            t.start()
            self._threads.append(t)
            i += 1
            self._stop.wait(max(0.0, start + i / self.rate - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._dispatcher.join()
        for t in self._threads:
            t.join(self.timeout + 5)

    def answered_after(self, instant: float) -> list[Sample]:
        with self._lock:
            return sorted((s for s in self.samples if s.ok and s.sent >= instant), key=lambda s: s.done)

    def wait_answers(self, count: int, after: float | None = None, timeout: float = 120.0) -> None:
        """Until `count` requests sent after `after` (default: now) were answered."""
        after = time.monotonic() if after is None else after
        deadline = time.monotonic() + timeout
        while len(self.answered_after(after)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} HTTP answers within {timeout:g}s")
            time.sleep(0.05)


def first_answer_after(samples: list[Sample], instant: float) -> float | None:
    """Seconds from instant to the first answer of a request sent at or after it (None: none answered)."""
    done = [s.done for s in samples if s.ok and s.sent >= instant]
    return min(done) - instant if done else None


def closed_loop(concurrency: int, seconds: float, path: str = "/", timeout: float = 10.0) -> dict:
    """`concurrency` clients, each sending its next request when the last one answered."""
    samples: list[Sample] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker() -> None:
        mine = []
        while time.monotonic() < end:
            mine.append(request(_socket(), path, timeout))
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _i in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    ok = [s.latency * 1000.0 for s in samples if s.ok]
    lat = stats.summary(ok, 2)
    return {"concurrency": concurrency, "seconds": round(elapsed, 2), "requests": len(samples),
            "errors": len(samples) - len(ok), "req_per_s": round(len(ok) / elapsed, 2),
            "latency_p50_ms": lat["median"], "latency_p99_ms": lat["p99"], "latency_max_ms": lat["max"]}
