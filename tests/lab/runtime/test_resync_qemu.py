"""replication.resync against real QEMU (firmware-only guests, one host, loopback): what makes the secondary's
image a copy of the primary's (docs/qemu-colo.md, "Protect a running primary").

- Whatever the secondary's image held, it reads as the primary's afterwards (sync=full rewrites every block,
  zeroes included), and progress is reported while the copy runs.
- A secondary image of another virtual size is refused by QEMU, and said so.
- A copy that stops moving is given up after stall_timeout (its NBD connection cut, the job cancelled, the guest
  left running); a second resync starts over and completes.
"""
from __future__ import annotations

import os
import random
import subprocess
import time

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo import replication
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient

MIB = 2**20
SIZE = 128 * MIB


def image(path: str, size: int, chunks: list[tuple[int, int]], seed: int) -> str:
    """A sparse raw image with random data at (offset MiB, length MiB) chunks."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in chunks:
            f.seek(offset * MIB)
            f.write(rng.randbytes(length * MIB))
    return path


@pytest.fixture
def pair(make_spec, launcher, workdir):
    """Start a primary (data at 8, 40 and 120 MiB) and a secondary whose image holds other data, with its
    NBD export up; returns a function that starts them with the secondary's image of a given size."""
    base = 18400 + os.getpid() % 500 * 4

    def start(secondary_size: int = SIZE):
        pdisk = image(os.path.join(workdir, "p.img"), SIZE, [(8, 8), (40, 16), (120, 8)], 1)
        sdisk = image(os.path.join(workdir, "s.img"), secondary_size, [(0, 4), (24, 8), (64, 8)], 2)
        pri = make_spec(name="rsync", state="a", port_base=base, disk=pdisk, disk_format="raw")
        sec = make_spec(name="rsync", state="b", port_base=base, disk=sdisk, disk_format="raw")
        launcher.start(sec, "secondary")
        launcher.start(pri, "primary", proxy=False)  # the resync alone is under test
        with QMPClient(sec.qmp_path, timeout=10) as s:
            replication.ensure_nbd_export(s, sec.checkpoint_addr, sec.nbd_port)
        return pri, sec
    return start


def same_images(pri, sec, launcher) -> bool:
    launcher.stop(sec, timeout=10)
    launcher.stop(pri, timeout=10)
    return subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", pri.disk, sec.disk],
                          check=False).returncode == 0


def test_resync_makes_the_secondary_image_a_copy_and_reports_progress(pair, launcher):
    pri, sec = pair()
    seen = []
    with QMPClient(pri.qmp_path, timeout=30) as p:
        done = replication.resync(p, pri.checkpoint_addr, pri.nbd_port, progress=lambda c, t: seen.append((c, t)))
        assert done == [f"drive-mirror colo-disk0 -> nbd://127.0.0.1:{pri.nbd_port}/parent0", "stop",
                        "block-job-cancel resync"]
        assert p.execute("query-block-jobs") == [] and not p.execute("query-status")["running"]
        p.execute("cont")
    assert seen and seen[-1][0] == SIZE, seen[-3:]  # every block counts, zeroes included
    assert [c for c, _t in seen] == sorted(c for c, _t in seen)
    assert same_images(pri, sec, launcher)


def test_a_secondary_image_of_another_size_is_refused(pair):
    pri, _sec = pair(secondary_size=SIZE // 2)
    with QMPClient(pri.qmp_path, timeout=30) as p:
        with pytest.raises(ColoError, match="ended before it was ready: Source and target image have different sizes"):
            replication.resync(p, pri.checkpoint_addr, pri.nbd_port)
        assert p.execute("query-block-jobs") == [] and p.execute("query-status")["running"]


def test_a_stalled_resync_is_given_up_and_a_rerun_completes(pair, launcher):
    """The job stops copying mid-way (paused here: a secondary frozen mid-copy can also hold the primary's main loop
    on its NBD writes, see docs/qemu-colo.md): it is given up after stall_timeout, its NBD connection cut and the
    job cancelled, the guest left running; a second resync starts over and completes."""
    pri, sec = pair()
    seen = []

    def slow_then_stuck(copied, _total):
        seen.append(copied)
        if len(seen) == 1:  # copy slowly (1 MiB/s), so the job is caught mid-copy
            p.execute("block-job-set-speed", {"device": replication.JOB, "speed": MIB})
        elif copied > 0 and not p.execute("query-block-jobs")[0]["paused"]:
            p.execute("block-job-pause", {"device": replication.JOB})

    with QMPClient(pri.qmp_path, timeout=30) as p:
        t = time.monotonic()
        with pytest.raises(ColoError, match=r"resync of colo-disk0 made no progress for 2 s \(\d+ of \d+ bytes copied\)"
                                            r".*cut and cancelled; protecting again starts it over"):
            replication.resync(p, pri.checkpoint_addr, pri.nbd_port, stall_timeout=2, progress=slow_then_stuck)
        assert 2 < time.monotonic() - t < 20
        assert 0 < seen[-1] < SIZE, seen
        assert p.execute("query-status")["running"], "the guest must keep running when the copy is given up"
        deadline = time.monotonic() + 30
        while p.execute("query-block-jobs"):  # the cancelled job ends (its connection was cut)
            assert time.monotonic() < deadline, p.execute("query-block-jobs")
            time.sleep(0.1)
        assert replication.resync(p, pri.checkpoint_addr, pri.nbd_port)[0].startswith("drive-mirror")
        p.execute("cont")
    assert same_images(pri, sec, launcher)
