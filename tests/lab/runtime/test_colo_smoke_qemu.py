"""The primary/secondary command lines really run COLO (one host, loopback links).

Uses the QMP sequences of docs/qemu-colo.md ("Protect a running primary", then
"Failover when the primary died"), written out here with raw QMP on purpose: this test
checks the argv (ids, drives, unix-socket loopback pairs), not the sequence code.
Guest: firmware only (no OS), which is enough for checkpoints.
"""
from __future__ import annotations

import os
import shutil
import signal
import time

from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo.devices import primary_objects, replication_blockdev

CAPS = {"capabilities": [{"capability": "x-colo", "state": True}, {"capability": "return-path", "state": True}]}


@pytest.mark.parametrize("proxy", [True, False], ids=["proxy-in-argv", "proxy-hot-added"])
def test_protect_then_failover(proxy, make_spec, launcher, disk):
    base = 19400 + os.getpid() % 500 * 4
    sec_disk = disk.replace(".qcow2", "-b.qcow2")   # each "host" has its own copy of the image
    shutil.copyfile(disk, sec_disk)
    pri = make_spec(name="colo2", state="a", port_base=base)
    sec = make_spec(name="colo2", state="b", port_base=base, disk=sec_disk)
    launcher.start(sec, "secondary")
    rp = launcher.start(pri, "primary", proxy=proxy)
    timings = {}
    with QMPClient(sec.qmp_path, timeout=10) as s, QMPClient(pri.qmp_path, timeout=10) as p:
        s.execute("migrate-set-capabilities", CAPS)
        nbd_addr = {"host": sec.checkpoint_addr, "port": str(sec.nbd_port)}
        s.execute("nbd-server-start", {"addr": {"type": "inet", "data": nbd_addr}})
        s.execute("nbd-server-add", {"device": "parent0", "writable": True})
        s.execute("migrate-incoming", {"uri": f"tcp:{sec.checkpoint_addr}:{sec.migration_port}"})

        if not proxy:  # what protection does for a primary started with proxy=False
            present = {o["name"] for o in p.execute("qom-list", {"path": "/objects"})}
            for obj in primary_objects(pri):
                if obj.id not in present:
                    p.execute("object-add", obj.qmp())
        t = time.monotonic()
        with p.listen(("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED")) as jobs:
            p.execute("drive-mirror", {"device": "colo-disk0", "job-id": "resync", "mode": "existing",
                                       "format": "raw", "sync": "full",
                                       "target": f"nbd://{pri.checkpoint_addr}:{pri.nbd_port}/parent0"})
            jobs.wait("BLOCK_JOB_READY", 30)
            timings["mirror ready"] = time.monotonic() - t
            p.execute("stop")
            p.execute("block-job-cancel", {"device": "resync"})
            jobs.wait("BLOCK_JOB_COMPLETED", 30)
        assert p.execute("query-block-jobs") == []
        p.execute("blockdev-add", replication_blockdev(pri))
        p.execute("x-blockdev-change", {"parent": "colo-disk0", "node": "replication0"})
        p.execute("migrate-set-capabilities", CAPS)
        p.execute("migrate-set-parameters", {"x-checkpoint-delay": 500})
        pause_events = p.listen(("STOP", "RESUME"))
        t = time.monotonic()
        p.execute("migrate", {"uri": f"tcp:{pri.checkpoint_addr}:{pri.migration_port}"})
        deadline = time.monotonic() + 30
        while p.execute("query-migrate").get("status") != "colo":
            assert time.monotonic() < deadline, p.execute("query-migrate")
            time.sleep(0.05)
        timings["colo running after migrate"] = time.monotonic() - t
        assert p.execute("query-colo-status")["mode"] == "primary"
        assert s.execute("query-colo-status")["mode"] == "secondary"

        # periodic checkpoints: the primary pauses (STOP) and resumes (RESUME)
        pauses = []
        for _checkpoint in range(3):
            stop = pause_events.wait("STOP", 10)
            # (a RESUME from COLO's start, before the first checkpoint, may still be unread)
            resume = pause_events.wait("RESUME", 10, lambda e: QMPClient.event_time(e) >= QMPClient.event_time(stop))
            pauses.append(QMPClient.event_time(resume) - QMPClient.event_time(stop))
        assert p.execute("query-status")["status"] in ("running", "colo")  # "colo" while a checkpoint is on

    # the primary dies; the secondary takes over (docs/qemu-colo.md, "Failover when the primary died")
    os.kill(rp.pid, signal.SIGKILL)
    with QMPClient(sec.qmp_path, timeout=10) as s:
        t = time.monotonic()
        s.execute("nbd-server-stop")
        s.execute("x-colo-lost-heartbeat")
        for obj in ("f2", "f1"):
            s.execute("object-del", {"id": obj})
        for ch in ("red1", "red0"):
            s.execute("chardev-remove", {"id": ch})
        timings["failover QMP commands"] = time.monotonic() - t
        deadline = time.monotonic() + 10
        while s.execute("query-colo-status")["mode"] != "none":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert s.execute("query-status")["status"] == "running"
        assert s.execute("query-colo-status")["reason"] in ("request", "error")
    print("\n  " + "  ".join(f"{k}: {v:.3f}s" for k, v in timings.items())
          + "  checkpoint pauses: " + ", ".join(f"{x * 1000:.0f} ms" for x in pauses))
