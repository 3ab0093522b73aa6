"""resync_progress: the resync's progress in the VM's state directory, for colo.ft.info while the copy runs."""
from __future__ import annotations

from ansible_collections.colo.ft.plugins.module_utils.colo import resync_progress
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec


def test_progress_is_written_at_most_once_a_second_and_removed_at_the_end(tmp_path):
    spec = VMSpec(name="big", disk="/d", mac="52:54:00:13:01:10", state_root=str(tmp_path))
    (tmp_path / "big").mkdir()
    now = [1000.0]
    progress = resync_progress.ProgressFile(resync_progress.path(spec), clock=lambda: now[0])
    assert resync_progress.read(spec) is None
    progress(0, 0)
    assert resync_progress.read(spec) == {"copied_bytes": 0, "total_bytes": 0, "started": 1000.0, "updated": 1000.0,
                                          "bytes_per_second": None}
    now[0] = 1000.5
    progress(2**20, 2**30)  # within the second: not written
    assert resync_progress.read(spec)["copied_bytes"] == 0
    now[0] = 1002.0
    progress(2**29, 2**30)
    assert resync_progress.read(spec) == {"copied_bytes": 2**29, "total_bytes": 2**30, "started": 1000.0,
                                          "updated": 1002.0, "bytes_per_second": 2**28}
    now[0] = 1002.2
    progress(2**30, 2**30)  # complete: written at once, a short copy shows its end too
    assert resync_progress.read(spec)["copied_bytes"] == 2**30
    progress.remove()
    assert resync_progress.read(spec) is None
    assert list((tmp_path / "big").iterdir()) == []
    progress.remove()  # twice is fine


def test_an_unreadable_file_reads_as_no_resync(tmp_path):
    spec = VMSpec(name="big", disk="/d", mac="52:54:00:13:01:10", state_root=str(tmp_path))
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / resync_progress.FILE).write_text("{half")
    assert resync_progress.read(spec) is None
    (tmp_path / "big" / resync_progress.FILE).write_text("[1]")
    assert resync_progress.read(spec) is None
