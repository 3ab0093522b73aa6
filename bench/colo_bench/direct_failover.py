"""Runs on the surviving lab host: arm, then on "go" take over the guest with the COLO runtime.

    python3 direct_failover.py VM CLIENT_BRIDGE ISOLATED_BRIDGE

Prints "ready" once the VM's record is read, waits for a line "go" on stdin, calls
failover.primary_lost() and prints one JSON line: the actions and the seconds they took.
The runtime is plain Python (stdlib only) next to this file, under ansible_collections/.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_collections.colo.ft.plugins.module_utils.colo import failover, launcher  # noqa: E402
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient  # noqa: E402
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import STATE_ROOT, VMSpec  # noqa: E402


def main() -> int:
    name, client_bridge, isolated_bridge = sys.argv[1:4]
    record = launcher.read_record(os.path.join(STATE_ROOT, name))
    if not record:
        print(f"no record of VM {name} under {STATE_ROOT}", file=sys.stderr)
        return 2
    spec = VMSpec.from_dict(record["spec"])
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 3
    t0 = time.monotonic()
    qmp = QMPClient(spec.qmp_path, timeout=30)
    qmp.connect()
    try:
        actions = failover.primary_lost(qmp, tap=spec.tap_name, client_bridge=client_bridge,
                                        isolated_bridge=isolated_bridge)
    finally:
        qmp.close()
    print(json.dumps({"actions": actions, "duration_s": round(time.monotonic() - t0, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
