"""Small process helpers shared by the lab's pieces."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Sequence


class LabError(Exception):
    """A failure the lab explains to the person running it."""


def log(message: str) -> None:
    print(f"colo-lab: {message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, check: bool = True, capture: bool = False, input: str | None = None,
        netns: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    result = subprocess.run(list(argv), text=True, input=input, cwd=cwd, check=False,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None)
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip() if capture else ""
        raise LabError(f"{' '.join(argv)} failed with exit code {result.returncode}" + (f": {detail}" if detail else ""))
    return result


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
