"""The secondary's disk image: what it must match of the primary's before protection.

No image is ever copied from the primary. Protection starts with a full resync
(replication.resync: drive-mirror sync=full to the secondary's NBD export),
which writes the whole disk into the secondary's image, so that image only
needs the format the VM is started with (its disk_format) and the virtual size
of the primary's image; a missing one is created empty (sparse) by the roles.
disk_copy_problems() decides from `qemu-img info --output=json` of both images
(the colo_secondary role reads them on the hosts; the colo.ft.disk_copy_problems
filter hands them here) and says what to fix, before anything changes.
"""
from __future__ import annotations

from typing import Any


# Said of a secondary's image that cannot take the resync: the way out that always works.
REMOVE = ("remove it on the secondary host: colo.ft then creates an empty image of the primary's format and size, "
          "which the full resync at protection fills")


def _size_text(size: int) -> str:
    return f"{size} bytes ({size / 2**30:.2f} GiB)"


def image_facts(info: dict[str, Any]) -> tuple[str | None, int | None, str | None]:
    """(format, virtual size in bytes, backing file or None) from `qemu-img info --output=json`."""
    size = info.get("virtual-size")
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return info.get("format"), int(size) if isinstance(size, int) else None, backing or None


def disk_copy_problems(vm: str, path: str, disk_format: str, primary: dict[str, Any],
                       secondary: dict[str, Any] | None) -> list[str]:
    """What keeps the secondary's image at `path` from taking the resync of the primary's, one sentence each.

    primary: qemu-img info of the primary's image (its disk, or the disk_source it is copied from);
    secondary: qemu-img info of the image already at `path` on the secondary, None when there is none (then
    one of the primary's virtual size is created in disk_format). A primary image with a backing file is
    fine (the resync copies what the guest sees, the whole chain); the secondary's must be standalone.
    """
    p: list[str] = []
    fmt, size, _backing = image_facts(primary)
    if fmt != disk_format:
        p.append(f"{vm}: the primary's image of {path} is {fmt}, but the VM's disk_format is {disk_format}: set "
                 f"disk_format: {fmt} in its colo_vms entry (QEMU opens the image in that format on both hosts)")
    if size is None:
        p.append(f"{vm}: qemu-img info of the primary's image of {path} gives no virtual size")
    if secondary is None:
        return p
    there, there_size, there_backing = image_facts(secondary)
    if there != disk_format:
        p.append(f"{vm}: the secondary's image {path} is {there}, but the VM's disk_format is {disk_format}; "
                 f"{REMOVE} (or convert it with qemu-img convert)")
    if size is not None and there_size != size:
        p.append(f"{vm}: the secondary's image {path} has a virtual size of "
                 f"{_size_text(there_size) if there_size is not None else 'unknown'}, the primary's "
                 f"{_size_text(size)}; {REMOVE} (or resize it with qemu-img resize)")
    if there_backing:
        p.append(f"{vm}: the secondary's image {path} has a backing file ({there_backing}), but it must be a "
                 f"standalone image (the resync writes the whole disk into it); {REMOVE}")
    return p
