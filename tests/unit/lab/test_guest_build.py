"""Pure logic of lab/guest/build and of the ledger client's reply parsing.

The real inputs (Debian's bzImage and modules) are exercised by the build itself and by
tests/lab/test_guest_boot.py; here small hand-made ELF files pin down the parsing rules.
"""

from __future__ import annotations

import gzip
import importlib.machinery
import importlib.util
import lzma
import struct
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
_loader = importlib.machinery.SourceFileLoader("guest_build", str(REPO / "lab/guest/build"))
_spec = importlib.util.spec_from_loader("guest_build", _loader)
build = importlib.util.module_from_spec(_spec)
_loader.exec_module(build)


def elf64(sections=(), notes=()):
    """A minimal x86_64 ELF64: named sections, and one PT_NOTE segment holding notes."""
    note = b"".join(struct.pack("<III", len(n) + 1, 4, t) + (n.encode() + b"\0").ljust((len(n) + 4) // 4 * 4, b"\0")
                    + b"\0" * 4 for n, t in notes)
    shstr = b"\0" + b"".join(name.encode() + b"\0" for name, _data in sections) + b".shstrtab\0"
    body = bytearray(b"\0" * 64)
    note_off = len(body)
    body += note
    data_offs = []
    for _name, data in sections:
        data_offs.append(len(body))
        body += data
    shstr_off = len(body)
    body += shstr
    phoff = len(body)
    body += struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note), len(note), 4)
    shoff = len(body)
    body += b"\0" * 64  # section 0
    name_pos = 1
    for (name, data), off in zip(sections, data_offs):
        body += struct.pack("<IIQQQQIIQQ", name_pos, 1, 0, 0, off, len(data), 0, 0, 1, 0)
        name_pos += len(name) + 1
    body += struct.pack("<IIQQQQIIQQ", name_pos, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
    struct.pack_into("<4sBBBB8xHHIQQQIHHHHHH", body, 0, b"\x7fELF", 2, 1, 1, 0, 2, 62, 1, 0, phoff, shoff,
                     0, 64, 56, 1, 64, len(sections) + 2, len(sections) + 1)
    return bytes(body)


def ko(depends="", name="m"):
    return elf64([(".text", b"\x90" * 8), (".modinfo", f"license=GPL\0depends={depends}\0name={name}\0".encode())])


def test_modinfo_and_deps():
    assert build.modinfo(ko("virtio,virtio_ring"))["depends"] == "virtio,virtio_ring"
    assert build.module_deps(ko("")) == []
    assert build.module_deps(ko("a-b,c")) == ["a_b", "c"]


def test_module_name():
    assert build.module_name("lib/modules/6.12/kernel/drivers/char/hw_random/virtio-rng.ko.xz") == "virtio_rng"
    assert build.module_name("virtio_blk.ko") == "virtio_blk"


def test_resolve_modules_orders_dependencies_first_and_skips_builtin():
    kos = {"virtio_ring": ko(), "virtio": ko(), "virtio_blk": ko("virtio,virtio_ring"),
           "virtio_pci": ko("virtio_pci_modern_dev,virtio,virtio_ring"), "virtio_pci_modern_dev": ko("crc"),
           "e1000": ko()}
    order = build.resolve_modules(["virtio_blk", "virtio_pci", "e1000"], kos, builtin={"crc"})
    assert order == ["virtio", "virtio_ring", "virtio_blk", "virtio_pci_modern_dev", "virtio_pci", "e1000"]
    with pytest.raises(ValueError, match="not found"):
        build.resolve_modules(["virtio_blk"], {"virtio_blk": ko("virtio")}, builtin=set())
    with pytest.raises(ValueError, match="loop"):
        build.resolve_modules(["a"], {"a": ko("b"), "b": ko("a")}, builtin=set())


def bzimage(payload, header=True):
    """Setup sectors + a payload somewhere after junk, as in a bzImage."""
    img = bytearray(512 * 5 + 1000)
    if header:
        img[0x1f1] = 4
        img[0x202:0x206] = b"HdrS"
        struct.pack_into("<II", img, 0x248, 1000, len(payload))
    return bytes(img) + payload + b"\0\0\0\0trailer"


@pytest.mark.parametrize("compress", [lambda d: gzip.compress(d, mtime=0),
                                      lambda d: lzma.compress(d, format=lzma.FORMAT_XZ)])
@pytest.mark.parametrize("header", [True, False])
def test_extract_vmlinux(compress, header):
    elf = elf64(notes=[("Xen", 18)]) + b"kernel" * 100
    # A decoy: a gzip stream that is not an ELF must be skipped.
    decoy = gzip.compress(b"not a kernel", mtime=0)
    image = bzimage(compress(elf), header) if header else decoy + bzimage(compress(elf), header)
    assert build.extract_vmlinux(image) == elf
    assert build.extract_vmlinux(elf) == elf
    with pytest.raises(ValueError):
        build.extract_vmlinux(bzimage(decoy))


def test_pvh_note():
    assert build.has_pvh_entry(elf64(notes=[("GNU", 3), ("Xen", 18)]))
    assert not build.has_pvh_entry(elf64(notes=[("Xen", 17)]))


def parse_newc(data):
    entries, pos = [], 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) // 4 * 4
        if name == "TRAILER!!!":
            assert pos == len(data)
            return entries
        entries.append((name, mode, data[pos:pos + size], (f[9], f[10]), f[5]))
        pos = (pos + size + 3) // 4 * 4


def test_cpio_newc_round_trip():
    entries = [build.dir_entry("bin"), build.file_entry("bin/x", b"abcde", 0o755),
               ("bin/sh", 0o120777, b"x", (0, 0)), ("dev/console", 0o020600, b"", (5, 1))]
    parsed = parse_newc(build.cpio_newc(entries))
    assert [(n, m, d, r) for n, m, d, r, _mtime in parsed] == entries
    assert {entry[-1] for entry in parsed} == {0}  # reproducible
    assert build.cpio_newc(entries) == build.cpio_newc(entries)


def test_deb_name_matches_apt():
    assert build.deb_name("busybox-static", "1:1.35.0-4+deb12u1+b1") == "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
    assert build.deb_name("linux-image-6.1.0-50-amd64", "6.1.176-1") == "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb"


def test_ledger_parse_ok():
    from colo_lab.ledger import LedgerProtocolError, parse_ok
    assert parse_ok("OK 17") == 17
    for bad in ("ERR disk full", "OK", "OK x", "PONG"):
        with pytest.raises(LedgerProtocolError):
            parse_ok(bad)
