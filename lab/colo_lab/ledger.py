"""Client for the test guest's ledger service (protocol: docs/lab-contract.md).

    PUT <text>  -> OK <seq>        (the record is on the guest's disk before OK)
    GET         -> REC <seq> <text> ... END <count>
    PING        -> PONG

Library use::

    with LedgerClient("10.213.1.10") as led:
        seq = led.put("hello")
        seqs = led.put_many(f"r{i}" for i in range(100))   # pipelined
        records = led.get()                                   # [(seq, text), ...]

CLI (stdlib only, so it runs in a bare network namespace)::

    PYTHONPATH=lab python3 -m colo_lab.ledger --host 10.213.1.10 put hello world
    PYTHONPATH=lab python3 -m colo_lab.ledger --host 10.213.1.10 get [--json]
    PYTHONPATH=lab python3 -m colo_lab.ledger --host 10.213.1.10 ping
    PYTHONPATH=lab python3 -m colo_lab.ledger --host 10.213.1.10 write --count 1000 --prefix run1 [--rate 50]
    PYTHONPATH=lab python3 -m colo_lab.ledger --host 10.213.1.10 load --acked acked.jsonl --summary summary.json
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

DEFAULT_PORT = 7000
MAX_TEXT = 400


class LedgerError(Exception):
    """Any failure talking to the ledger."""


class LedgerProtocolError(LedgerError):
    """The server answered ERR or something unexpected; the connection stays usable after ERR."""

    seqs: list | None = None  # put_many: the result (seq or error) of every text


class LedgerTimeout(LedgerError):
    """No answer within the timeout; the connection is closed (its state is unknown)."""


class LedgerConnectionError(LedgerError):
    """Could not connect, or the connection broke; the connection is closed."""


def parse_ok(line: str) -> int:
    """Return the seq of an `OK <seq>` reply, raise LedgerProtocolError otherwise."""
    if line.startswith("ERR"):
        raise LedgerProtocolError(f"server refused: {line}")
    word, _sep, seq = line.partition(" ")
    if word != "OK" or not seq.isdigit():
        raise LedgerProtocolError(f"unexpected reply to PUT: {line!r}")
    return int(seq)


class LedgerClient:
    """One TCP connection to a ledger; not thread-safe."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, timeout: float = 10.0):
        self.host, self.port, self.timeout = host, port, timeout
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as e:
            raise LedgerTimeout(f"connect to {host}:{port}: timed out after {timeout}s") from e
        except OSError as e:
            raise LedgerConnectionError(f"connect to {host}:{port}: {e}") from e
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._rfile = self._sock.makefile("rb")
        self.in_flight = 0  # PUTs sent by put_iter and not answered yet

    # -- plumbing -------------------------------------------------------
    def _fail(self, exc: LedgerError) -> LedgerError:
        self.close()
        return exc

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise LedgerConnectionError("connection is closed")
        try:
            self._sock.sendall(data)
        except TimeoutError as e:
            raise self._fail(LedgerTimeout(f"{self.host}:{self.port}: send timed out")) from e
        except OSError as e:
            raise self._fail(LedgerConnectionError(f"{self.host}:{self.port}: send failed: {e}")) from e

    def _readline(self) -> str:
        if self._sock is None:
            raise LedgerConnectionError("connection is closed")
        try:
            raw = self._rfile.readline(MAX_TEXT + 64)
        except TimeoutError as e:
            raise self._fail(LedgerTimeout(
                f"{self.host}:{self.port}: no answer within {self.timeout}s")) from e
        except OSError as e:
            raise self._fail(LedgerConnectionError(f"{self.host}:{self.port}: receive failed: {e}")) from e
        if not raw.endswith(b"\n"):
            raise self._fail(LedgerConnectionError(
                f"{self.host}:{self.port}: connection closed by server" if not raw
                else f"{self.host}:{self.port}: truncated reply {raw[:80]!r}"))
        return raw[:-1].decode("ascii", "replace")

    @staticmethod
    def _put_line(text: str) -> bytes:
        # A newline would smuggle a second command; the server judges the rest.
        if "\n" in text or "\r" in text:
            raise LedgerProtocolError(f"text must not contain a newline: {text[:40]!r}")
        return b"PUT " + text.encode() + b"\n"

    # -- API ------------------------------------------------------------
    def ping(self) -> None:
        self._send(b"PING\n")
        line = self._readline()
        if line != "PONG":
            raise LedgerProtocolError(f"unexpected reply to PING: {line!r}")

    def put(self, text: str) -> int:
        self._send(self._put_line(text))
        return parse_ok(self._readline())

    def put_iter(self, texts: Iterable[str], window: int = 64) -> Iterator[tuple[int, int | LedgerProtocolError]]:
        """Pipeline PUTs on this connection, keeping up to `window` unanswered.

        Yields (index, seq) or (index, LedgerProtocolError) in order. A timeout or
        connection loss raises; the records sent but not yet answered are then in
        an unknown state. Leaving the loop early closes the connection (answers
        still due would otherwise be read as answers to later commands).
        """
        lines = [self._put_line(t) for t in texts]  # refuse bad input before sending any
        sent = answered = 0
        try:
            while answered < len(lines):
                if sent < len(lines) and sent - answered <= window // 2:
                    batch = lines[sent:min(len(lines), answered + window)]
                    self._send(b"".join(batch))
                    sent += len(batch)
                    self.in_flight = sent - answered
                line = self._readline()
                self.in_flight -= 1
                try:
                    result = parse_ok(line)
                except LedgerProtocolError as e:
                    result = e
                answered += 1
                yield answered - 1, result
        finally:
            if answered < sent:
                self.close()

    def put_many(self, texts: Iterable[str], window: int = 64) -> list[int]:
        """Pipelined PUTs; returns the seqs in order. Raises LedgerProtocolError
        (after reading every answer) if any PUT was refused; `.seqs` on the
        exception holds the results (int or the error) for every text."""
        results = [result for _index, result in self.put_iter(texts, window)]
        errors = [r for r in results if isinstance(r, LedgerError)]
        if errors:
            exc = LedgerProtocolError(f"{len(errors)} of {len(results)} PUTs refused, first: {errors[0]}")
            exc.seqs = results
            raise exc
        return results

    def get(self) -> list[tuple[int, str]]:
        self._send(b"GET\n")
        records = []
        while True:
            line = self._readline()
            word, _sep, rest = line.partition(" ")
            if word == "REC":
                seq, _sep, text = rest.partition(" ")
                if not seq.isdigit():
                    raise self._fail(LedgerProtocolError(f"bad record line: {line!r}"))
                records.append((int(seq), text))
            elif word == "END" and rest.isdigit():
                if int(rest) != len(records):
                    raise self._fail(LedgerProtocolError(f"END {rest} after {len(records)} records"))
                return records
            else:
                # ERR mid-stream or garbage: the rest of the stream is unknown.
                raise self._fail(LedgerProtocolError(f"unexpected reply to GET: {line!r}"))

    def close(self) -> None:
        if self._sock is not None:
            self._rfile.close()
            self._sock.close()
            self._sock = None

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- CLI ------------------------------------------------------------------

def write_records(host: str, port: int, count: int, prefix: str, rate: float | None,
                  timeout: float) -> dict:
    """Write `count` records `<prefix>-<i>` on one connection and summarise.

    Without rate: pipelined. With rate: one PUT at a time, started every 1/rate s,
    so per-record latency shows pauses (checkpoints, a failover).
    acked + refused + unknown + unsent == count: on a timeout or connection loss
    the run stops ("error"); PUTs sent but not answered are "unknown" (they may
    be on the disk), the rest "unsent". "seqs" lists [i, seq] per acked record.
    """
    texts = [f"{prefix}-{i}" for i in range(count)]
    acked, refused, latencies = [], [], []
    error, unknown, done = None, 0, 0
    start = time.monotonic()
    led = None
    try:
        with LedgerClient(host, port, timeout) as led:
            if rate:
                for i, text in enumerate(texts):
                    time.sleep(max(0.0, start + i / rate - time.monotonic()))
                    t0 = time.monotonic()
                    try:
                        acked.append([i, led.put(text)])
                        latencies.append(time.monotonic() - t0)
                    except LedgerProtocolError as e:
                        refused.append({"i": i, "error": str(e)})
                    done = i + 1
            else:
                for i, result in led.put_iter(texts):
                    if isinstance(result, int):
                        acked.append([i, result])
                    else:
                        refused.append({"i": i, "error": str(result)})
                    done = i + 1
    except LedgerError as e:
        error = str(e)
        if led is not None:
            unknown = 1 if rate else led.in_flight
    elapsed = time.monotonic() - start
    summary = {
        "host": host, "port": port, "count": count, "prefix": prefix, "rate": rate,
        "acked": len(acked), "refused": len(refused), "unknown": unknown,
        "unsent": count - done - unknown, "error": error,
        "elapsed": round(elapsed, 3),
        "records_per_s": round(len(acked) / elapsed, 1) if elapsed > 0 else None,
        "seqs": acked, "refusals": refused,
    }
    if latencies:
        lat = sorted(latencies)
        summary["latency_ms"] = {"p50": round(lat[len(lat) // 2] * 1000, 2),
                                 "p99": round(lat[int(len(lat) * 0.99)] * 1000, 2),
                                 "max": round(lat[-1] * 1000, 2)}
    return summary


def run_load(host: str, port: int, timeout: float, acked_path: str, summary_path: str, tag: str,
             interval: float, max_seconds: float) -> dict:
    """A client during a fault, until SIGTERM/SIGINT (or max_seconds, or a failed write).

    One connection writes `<tag>-<i>` records one at a time; each acknowledged record is appended
    at once to acked_path as a JSON line {"seq", "text", "t"}. A second connection, opened at the
    start, stays idle; at the end it must still answer (a PING and a PUT, which is logged as
    acknowledged too). The summary (also returned) goes to summary_path, written last.
    """
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    errors: list[str] = []
    held_error: str | None = "not connected"
    times: list[float] = []
    start = time.monotonic()
    with open(acked_path, "a", encoding="ascii") as acked:
        def ack(seq: int, text: str) -> None:
            times.append(time.monotonic())
            acked.write(json.dumps({"seq": seq, "text": text, "t": round(time.time(), 3)}) + "\n")
            acked.flush()

        try:
            with LedgerClient(host, port, timeout) as held, LedgerClient(host, port, timeout) as writer:
                held.ping()
                i = 0
                while not stop.is_set() and time.monotonic() - start < max_seconds:
                    text = f"{tag}-{i:06d}"
                    try:
                        ack(writer.put(text), text)
                    except LedgerError as e:
                        errors.append(f"{text}: {e}")
                        break
                    i += 1
                    stop.wait(interval)
                try:
                    held.ping()
                    ack(held.put(f"{tag}-held"), f"{tag}-held")
                    held_error = None
                except LedgerError as e:
                    held_error = str(e)
        except LedgerError as e:
            errors.append(f"connect: {e}")
    gaps = [b - a for a, b in zip([start, *times], times)]
    summary = {
        "host": host, "tag": tag, "acked": len(times), "errors": errors,
        "held_ok": held_error is None, "held_error": held_error,
        "stopped_by": "error" if errors else "signal" if stop.is_set() else "time",
        "elapsed_s": round(time.monotonic() - start, 3),
        "longest_gap_s": round(max(gaps, default=0.0), 3),
    }
    with open(summary_path + ".tmp", "w", encoding="ascii") as out:
        out.write(json.dumps(summary) + "\n")
    Path(summary_path + ".tmp").replace(summary_path)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m colo_lab.ledger", description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per answer (default 10)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("put", help="append records, print their seqs")
    sp.add_argument("texts", nargs="+")
    sg = sub.add_parser("get", help="print every record as '<seq> <text>'")
    sg.add_argument("--json", action="store_true", help="print a JSON list of [seq, text]")
    sub.add_parser("ping", help="check that the ledger answers")
    sw = sub.add_parser("write", help="write N records on one connection, print a JSON summary")
    sw.add_argument("--count", type=int, required=True)
    sw.add_argument("--prefix", required=True)
    sw.add_argument("--rate", type=float, help="records per second (default: as fast as possible, pipelined)")
    sl = sub.add_parser("load", help="write records one at a time and hold an idle connection until SIGTERM; "
                        "log acknowledged records as JSON lines, then write a JSON summary")
    sl.add_argument("--acked", required=True, help="file the acknowledged records are appended to")
    sl.add_argument("--summary", required=True, help="file the summary is written to at the end")
    sl.add_argument("--tag", default="load", help="records are <tag>-<n> (default: load)")
    sl.add_argument("--interval", type=float, default=0.05, help="seconds between two writes (default 0.05)")
    sl.add_argument("--max-seconds", type=float, default=3600, help="stop by itself after this long (default 3600)")
    a = p.parse_args(argv)

    try:
        if a.cmd == "write":
            summary = write_records(a.host, a.port, a.count, a.prefix, a.rate, a.timeout)
            print(json.dumps(summary))
            return 0 if summary["acked"] == a.count else 1
        if a.cmd == "load":
            summary = run_load(a.host, a.port, a.timeout, a.acked, a.summary, a.tag, a.interval, a.max_seconds)
            return 0 if summary["held_ok"] and not summary["errors"] else 1
        with LedgerClient(a.host, a.port, a.timeout) as led:
            if a.cmd == "ping":
                t0 = time.monotonic()
                led.ping()
                print(f"PONG {1000 * (time.monotonic() - t0):.1f} ms")
            elif a.cmd == "put":
                refused = 0
                for i, result in led.put_iter(a.texts):
                    if isinstance(result, LedgerError):
                        refused += 1
                        print(f"ledger: record {i + 1}: {result}", file=sys.stderr)
                    else:
                        print(result)
                return 1 if refused else 0
            elif a.cmd == "get":
                records = led.get()
                if a.json:
                    print(json.dumps(records))
                else:
                    sys.stdout.writelines(f"{seq} {text}\n" for seq, text in records)
    except LedgerError as e:
        print(f"ledger: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
