"""Running a command from the runtime library.

The library is used outside Ansible (tests, benchmarks, lab), so it cannot use
AnsibleModule.run_command; every external command goes through run() here,
with an argv list (never a shell) and a timeout.
"""
from __future__ import annotations

import subprocess
from typing import Any


def run(argv: list[str], timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run(argv) without check; text output captured unless stdout/stderr are given."""
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
    # pylint: disable-next=ansible-bad-function  # stdlib-only library, see module docstring
    return subprocess.run(argv, timeout=timeout, check=False, **kwargs)
