"""A disk of several GiB protected host to host: no image passes through the controller, whose memory stays flat.

site.yml protects a second guest, big0, beside the lab's guest0 (own name, MAC, address and ports): a 4 GiB raw
disk on the primary with random data at several offsets (the first MiBs, where the guest's ledger writes, stay
zero) and no image on the secondary. colo_secondary creates the secondary's image empty and sparse with the
primary's format and size, the full resync at protection fills it (its progress is in the VM's resync.json while
it runs), the data reads the same on both hosts afterwards, the secondary's image stays sparse, and the peak
resident memory of ansible-playbook and its forks stays far below the disk's size.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

import pytest
from colo_lab.config import GUEST_ADDR
from colo_lab.inventory import INVENTORY
from colo_lab.testing import ansible_peak_rss, on_host, recap, record_metric, run_module, vm_info

GIB = 2**30
SIZE = 4 * GIB
DISK = "/var/lib/colo-ft/images/big0.img"
PROGRESS = "/run/colo-ft/big0/resync.json"
# (offset, length) in MiB: random data on the primary, up to the disk's last MiB.
REGIONS = [(512, 64), (1536, 64), (2560, 64), (4096 - 64, 64)]
HOLE = (3072, 64)  # never written: zeroes on both hosts
MAX_RSS_MIB = 300


def region_sums(host: str, regions) -> list[str]:
    script = " && ".join(f"dd if={DISK} bs=1M skip={o} count={n} status=none | sha256sum" for o, n in regions)
    return [line.split()[0] for line in on_host(host, script, timeout=120).stdout.splitlines()]


@pytest.fixture
def big0(lab, tmp_path):
    """colo_vms with big0 beside guest0, as an extra-vars file; big0's disk on the primary only. Afterwards big0
    is stopped (secondary first) and its disks removed."""
    guest = json.loads(INVENTORY.read_text())["all"]["vars"]["colo_vms"][0]
    address = GUEST_ADDR.rsplit(".", 1)[0] + ".20"
    vm = {**{k: v for k, v in guest.items() if k != "disk_source"},
          "name": "big0", "mac": "52:54:00:13:01:20", "disk": DISK, "disk_format": "raw", "port_base": 9200,
          "append": guest["append"].replace(f"colo.ip={GUEST_ADDR}/", f"colo.ip={address}/"), "ready_host": address}
    assert vm["append"] != guest["append"]
    fill = " && ".join(f"head -c {n}M /dev/urandom | dd of={DISK} bs=1M seek={o} conv=notrunc status=none"
                       for o, n in REGIONS)
    on_host("colo-a", f"mkdir -p {DISK.rsplit('/', 1)[0]} && rm -f {DISK} && truncate -s {SIZE} {DISK} && {fill}",
            timeout=300)
    on_host("colo-b", f"rm -f {DISK}")
    extra = tmp_path / "big0.json"
    extra.write_text(json.dumps({"colo_vms": [guest, vm]}))
    try:
        yield extra
    finally:
        for host in ("colo-b", "colo-a"):
            run_module(host, "colo.ft.vm", {"name": "big0", "state": "stopped"})
            on_host(host, f"rm -f {DISK}", check=False)


def watch_progress(until: threading.Event, samples: list[dict]) -> None:
    """Read big0's resync.json on the primary until told to stop (the file exists only while the resync runs)."""
    while not until.is_set():
        out = on_host("colo-a", f"cat {PROGRESS} 2>/dev/null", check=False, timeout=30).stdout.strip()
        if out:
            samples.append(json.loads(out))
        time.sleep(0.3)


def test_a_large_disk_is_created_on_the_secondary_and_filled_by_the_resync(big0):
    primary_sums = region_sums("colo-a", REGIONS)
    stop, samples = threading.Event(), []
    watcher = threading.Thread(target=watch_progress, args=(stop, samples), daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        # -v: the protect task's result (its timings) is in the output.
        result, peak_kib = ansible_peak_rss("ansible-playbook", "playbooks/site.yml", "-v", "-e", f"@{big0}")
    finally:
        stop.set()
        watcher.join(timeout=60)
    site_s = time.monotonic() - started
    assert all(c["failed"] == 0 for c in recap(result.stdout).values())

    # Created here by colo_secondary, empty and sparse, with the primary's format and size.
    assert "TASK [colo.ft.colo_secondary : Create the image with the primary's format and virtual size]" in result.stdout
    info = json.loads(on_host("colo-b", f"qemu-img info --output=json -U {DISK}").stdout)
    assert (info["format"], info["virtual-size"]) == ("raw", SIZE), info
    assert on_host("colo-b", f"stat -c %U {DISK}").stdout.strip() == "colo-qemu"

    # Protected, and the resync copied the data: the same regions on both hosts, the hole still zeroes.
    vms = vm_info(sample_seconds=3)
    assert (vms["colo-a"]["big0"]["mode"], vms["colo-b"]["big0"]["mode"]) == ("primary", "secondary"), vms
    assert vms["colo-a"]["big0"]["replication"] == "attached"
    assert region_sums("colo-b", REGIONS) == primary_sums
    zeroes = hashlib.sha256(bytes(HOLE[1] * 2**20)).hexdigest()
    assert region_sums("colo-b", [HOLE]) == region_sums("colo-a", [HOLE]) == [zeroes]
    allocated = int(on_host("colo-b", f"stat -c '%b %B' {DISK}").stdout.split()[0]) * 512
    data = sum(n for _o, n in REGIONS) * 2**20
    assert allocated < 2 * data, f"the secondary's image is not sparse: {allocated} bytes allocated"

    # The module's own figures: the whole data copied, and the resync's progress seen while it ran.
    timings = [json.loads(m) for m in re.findall(r'"timings": (\{[^}]*\})', result.stdout)]
    big = [t for t in timings if (t.get("resync_bytes") or 0) >= SIZE]  # the job counts zero areas too
    assert len(big) == 1, timings
    assert samples, "no resync progress was seen while site.yml ran"
    copied = [s["copied_bytes"] for s in samples]
    assert copied == sorted(copied) and copied[-1] > 0, samples
    assert all(s["total_bytes"] >= s["copied_bytes"] for s in samples), samples

    peak_mib = peak_kib / 1024
    for name, value in (("large_disk_gib", SIZE / GIB), ("large_disk_data_mib", data / 2**20),
                        ("large_disk_resync_s", big[0]["resync_s"]), ("large_disk_resync_bytes", big[0]["resync_bytes"]),
                        ("large_disk_secondary_allocated_mib", round(allocated / 2**20)),
                        ("large_disk_site_s", round(site_s, 1)), ("large_disk_controller_peak_rss_mib", round(peak_mib))):
        record_metric(name, value)
    print(f"large disk: {SIZE / GIB:g} GiB raw, {data / 2**20:g} MiB of data; resync {big[0]['resync_s']} s for "
          f"{big[0]['resync_bytes']} bytes; {len(samples)} progress samples; secondary allocated "
          f"{allocated / 2**20:.0f} MiB; site.yml {site_s:.0f} s; controller peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < MAX_RSS_MIB, f"the controller's peak RSS was {peak_mib:.0f} MiB for a {SIZE / GIB:g} GiB disk"
