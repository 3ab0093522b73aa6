"""images.disk_copy_problems: which secondary image can take the primary's resync (the colo_secondary role asks)."""
from __future__ import annotations

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo.images import disk_copy_problems, image_facts

GIB4 = 4 * 2**30
PATH = "/var/lib/colo-ft/images/big.img"


def info(fmt="raw", size=GIB4, **more):
    """What qemu-img info --output=json says of an image (the keys read)."""
    return {"filename": PATH, "format": fmt, "virtual-size": size, "actual-size": 4096, **more}


def test_image_facts():
    assert image_facts(info()) == ("raw", GIB4, None)
    assert image_facts(info("qcow2", backing_filename="b", **{"full-backing-filename": "/srv/base.qcow2"})) == (
        "qcow2", GIB4, "/srv/base.qcow2")
    assert image_facts({}) == (None, None, None)


def test_a_missing_or_matching_image_has_no_problem():
    assert disk_copy_problems("big", PATH, "raw", info(), None) == []
    assert disk_copy_problems("big", PATH, "raw", info(), info()) == []
    # The primary's image may have a backing file: the resync copies the whole chain into a standalone image.
    layered = info("qcow2", **{"backing-filename": "base.qcow2", "full-backing-filename": "/srv/base.qcow2"})
    assert disk_copy_problems("big", PATH, "qcow2", layered, None) == []
    assert disk_copy_problems("big", PATH, "qcow2", layered, info("qcow2")) == []


@pytest.mark.parametrize("secondary, words", [
    (info(size=GIB4 // 2), ["big: the secondary's image /var/lib/colo-ft/images/big.img has a virtual size of "
                            "2147483648 bytes (2.00 GiB), the primary's 4294967296 bytes (4.00 GiB)",
                            "remove it on the secondary host", "qemu-img resize"]),
    (info("qcow2"), ["big: the secondary's image /var/lib/colo-ft/images/big.img is qcow2, but the VM's disk_format "
                     "is raw", "remove it on the secondary host", "qemu-img convert"]),
    (info(**{"backing-filename": "/srv/old.img"}), ["has a backing file (/srv/old.img)", "standalone"]),
])
def test_a_secondary_image_the_resync_cannot_fill_is_refused(secondary, words):
    problems = disk_copy_problems("big", PATH, "raw", info(), secondary)
    assert len(problems) == 1, problems
    for w in words:
        assert w in problems[0]


def test_the_primary_image_must_have_the_vm_format():
    problems = disk_copy_problems("big", PATH, "qcow2", info("raw"), None)
    assert problems == ["big: the primary's image of /var/lib/colo-ft/images/big.img is raw, but the VM's disk_format "
                        "is qcow2: set disk_format: raw in its colo_vms entry (QEMU opens the image in that format on "
                        "both hosts)"]


def test_every_problem_is_told():
    problems = disk_copy_problems("big", PATH, "qcow2", {"format": "raw"}, info("vmdk", size=1))
    assert len(problems) == 3, problems  # primary's format, its missing size, the secondary's format
