"""The xl config colo_primary renders for the Xen backend, parsed by Xen's own parser (libxlutil).

The role's task file (xen_config.yml, template xl-colo.cfg.j2) runs for real through ansible-playbook on
localhost; the result is read with libxlutil from Debian's Xen packages (libxen-dev, see
scripts/apt-packages.txt) through ctypes: xlu_cfg_readdata, xlu_cfg_get_string / xlu_cfg_get_list, and the
disk spec through xlu_disk_parse, whose result libxenlight turns into JSON (libxl_device_disk_gen_json).
No hypervisor is needed for any of this.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible_collections.colo.ft.plugins.module_utils.colo import xen_colo

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 5))

# The seed's example guest config (shared/seeds/xen-colo-wiki.txt, "Example"), one option per line.
SEED_DISK = ("format=raw,devtype=disk,access=w,backendtype=qdisk,vdev=hda,colo,colo-host=192.168.2.88,colo-port=9001,"
             "colo-export=qdisk1,active-disk=/mnt/ramfs/active_disk.img,hidden-disk=/mnt/ramfs/hidden_disk.img,"
             "target=/home/changlox/suse-64hvm.img")
SEED_EXAMPLE = """\
builder='hvm'
memory='1024'
vcpus=2
cpus=['2','3']
name='hvm_nopv_colo'
device_model_version='qemu-xen'
device_model_override='/home/changlox/qemu/x86_64-softmmu/qemu-system-x86_64'
disk = [ '{SEED_DISK}']
vif = [ 'mac=00:16:4f:00:00:11, bridge=br0, model=e1000, forwarddev=eth1' ]
#-----------------------------------------------------------------------------
# boot on floppy (a), hard disk (c), Network (n) or CD-ROM (d)
# default: hard disk, cd-rom, floppy
boot='c'
sdl=0
vnc=1
vnclisten=''
stdvga = 0
serial='pty'
apic=1
apci=1
pae=1
extid=0
keymap='en-us'
localtime=1
hpet=1
usbdevice='tablet'
xen_platform_pci = 0
""".format(SEED_DISK=SEED_DISK)

# An inventory that describes the seed's guest and hosts (master 192.168.x.33, slave 192.168.x.88).
SEED_VM = {
    "name": "hvm_nopv_colo", "memory_mib": 1024, "vcpus": 2, "mac": "00:16:4f:00:00:11",
    "disk": "/home/changlox/suse-64hvm.img", "disk_format": "raw", "xen_colo_export": "qdisk1",
    "xen_active_disk": "/mnt/ramfs/active_disk.img", "xen_hidden_disk": "/mnt/ramfs/hidden_disk.img",
    # cpus pins the seed's vCPUs; apci=1 is the seed's (typo of acpi, which the role writes anyway).
    "xen_options": {"cpus": ["2", "3"], "apci": 1},
}
DEFAULT_VM = {"name": "web0", "memory_mib": 512, "mac": "52:54:00:00:00:11", "disk": "/srv/vm/web0.img"}


class XLU:
    """The parts of libxlutil (and libxenlight for the disk's JSON) the test needs."""

    def __init__(self):
        try:
            self.xlu = ctypes.CDLL(ctypes.util.find_library("xlutil") or "libxlutil.so")
            self.xl = ctypes.CDLL(ctypes.util.find_library("xenlight") or "libxenlight.so")
            self.yajl = ctypes.CDLL(ctypes.util.find_library("yajl") or "libyajl.so.2")
        except OSError as exc:
            pytest.fail(f"libxlutil/libxenlight not found ({exc}): install libxen-dev (scripts/bootstrap does)")
        x, vp, cp = self.xlu, ctypes.c_void_p, ctypes.c_char_p
        x.xlu_cfg_init.restype = vp
        x.xlu_cfg_init.argtypes = [vp, cp]
        x.xlu_cfg_readdata.argtypes = [vp, cp, ctypes.c_int]
        x.xlu_cfg_destroy.argtypes = [vp]
        x.xlu_cfg_get_string.argtypes = [vp, cp, ctypes.POINTER(cp), ctypes.c_int]
        x.xlu_cfg_get_list.argtypes = [vp, cp, ctypes.POINTER(vp), ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        x.xlu_cfg_get_listitem.restype = cp
        x.xlu_cfg_get_listitem.argtypes = [vp, ctypes.c_int]
        x.xlu_disk_parse.argtypes = [vp, ctypes.c_int, vp, vp]
        self.xl.libxl_device_disk_init.argtypes = [vp]
        self.xl.libxl_device_disk_gen_json.argtypes = [vp, vp]
        self.yajl.yajl_gen_alloc.restype = vp
        self.yajl.yajl_gen_alloc.argtypes = [vp]
        self.yajl.yajl_gen_get_buf.argtypes = [vp, ctypes.POINTER(vp), ctypes.POINTER(ctypes.c_size_t)]
        self.yajl.yajl_gen_free.argtypes = [vp]
        libc = ctypes.CDLL(None)
        libc.fdopen.restype = vp
        libc.fdopen.argtypes = [ctypes.c_int, cp]
        self.report = libc.fdopen(os.dup(2), b"w")

    def parse(self, text: str, keys: list[str]) -> dict:
        """Parse text as an xl config; the values of keys (a string, or a list of strings)."""
        cfg = self.xlu.xlu_cfg_init(self.report, b"xl-colo.cfg")
        data = text.encode()
        rc = self.xlu.xlu_cfg_readdata(cfg, data, len(data))
        assert rc == 0, f"libxlutil refused the config (errno {rc}):\n{text}"
        out = {}
        for key in keys:
            s = ctypes.c_char_p()
            if self.xlu.xlu_cfg_get_string(cfg, key.encode(), ctypes.byref(s), 1) == 0:
                out[key] = s.value.decode()
                continue
            lst, n = ctypes.c_void_p(), ctypes.c_int()
            if self.xlu.xlu_cfg_get_list(cfg, key.encode(), ctypes.byref(lst), ctypes.byref(n), 1) == 0:
                out[key] = [self.xlu.xlu_cfg_get_listitem(lst, i).decode() for i in range(n.value)]
        out["__disks"] = [self.disk(cfg, d) for d in out.get("disk", [])]
        self.xlu.xlu_cfg_destroy(cfg)
        return out

    def disk(self, cfg, spec: str) -> dict:
        """A disk spec as Xen parses it (xlu_disk_parse), as libxl's JSON of libxl_device_disk."""
        disk = ctypes.create_string_buffer(16384)  # larger than libxl_device_disk
        self.xl.libxl_device_disk_init(disk)
        specs = (ctypes.c_char_p * 1)(spec.encode())
        rc = self.xlu.xlu_disk_parse(cfg, 1, specs, disk)
        assert rc == 0, f"xlu_disk_parse refused {spec!r} (errno {rc})"
        gen = self.yajl.yajl_gen_alloc(None)
        assert self.xl.libxl_device_disk_gen_json(gen, disk) == 0
        buf, size = ctypes.c_void_p(), ctypes.c_size_t()
        self.yajl.yajl_gen_get_buf(gen, ctypes.byref(buf), ctypes.byref(size))
        data = json.loads(ctypes.string_at(buf, size.value))
        self.yajl.yajl_gen_free(gen)
        return data


def seed_keys(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", text, re.M)]


def vif_options(vif: str) -> dict:
    return dict(p.strip().split("=", 1) for p in vif.split(",") if p.strip())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Run colo_primary's xen_config.yml on localhost with the seed's inventory; {vm name: config text}."""
    tmp = tmp_path_factory.mktemp("xl")
    inventory = {"all": {
        "vars": {"colo_vms": [SEED_VM, DEFAULT_VM], "colo_forward_nic": "eth1",
                 "colo_xen_device_model": "/home/changlox/qemu/x86_64-softmmu/qemu-system-x86_64"},
        "children": {
            "colo_primary": {"hosts": {"master": {
                "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "colo_forward_address": "192.168.1.33", "colo_checkpoint_address": "192.168.2.33"}}},
            "colo_secondary": {"hosts": {"slave": {
                "colo_forward_address": "192.168.1.88", "colo_checkpoint_address": "192.168.2.88"}}},
        }}}
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(yaml.safe_dump([{
        "name": "Render the xl configs", "hosts": "colo_primary", "gather_facts": False,
        "vars": {"colo_primary_xen_config_dir": str(tmp / "cfg")},
        "tasks": [{"name": "xl configs", "ansible.builtin.include_role": {
            "name": "colo.ft.colo_primary", "tasks_from": "xen_config.yml"}}],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    res = subprocess.run([playbook, "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return {p.stem: p.read_text() for p in (tmp / "cfg").iterdir()}


@pytest.fixture(scope="module")
def xlu():
    return XLU()


def test_seed_example_is_reproduced_option_by_option(rendered, xlu):
    keys = seed_keys(SEED_EXAMPLE)
    assert len(keys) == 24
    seed = xlu.parse(SEED_EXAMPLE, keys)
    ours = xlu.parse(rendered["hvm_nopv_colo"], keys)
    missing = [k for k in keys if k not in ours]
    assert not missing, f"options of the seed's example missing: {missing}\n{rendered['hvm_nopv_colo']}"
    for key in keys:
        if key == "vif":
            assert [vif_options(v) for v in ours[key]] == [vif_options(v) for v in seed[key]]
        elif key != "disk":
            assert ours[key] == seed[key], key
    # The disk as Xen understands it: every COLO key of the seed, with the same values.
    assert ours["__disks"] == seed["__disks"]
    assert seed["__disks"][0] == {
        "pdev_path": "/home/changlox/suse-64hvm.img", "vdev": "hda", "backend": "qdisk", "format": "raw",
        "readwrite": 1, "colo_enable": "True", "colo_host": "192.168.2.88", "colo_port": 9001,
        "colo_export": "qdisk1", "active_disk": "/mnt/ramfs/active_disk.img", "hidden_disk": "/mnt/ramfs/hidden_disk.img"}


def test_defaults_agree_with_the_module(rendered, xlu):
    cfg = xlu.parse(rendered["web0"], ["name", "memory", "vcpus", "disk", "vif", "xen_platform_pci", "acpi", "builder"])
    assert (cfg["name"], cfg["memory"], cfg["vcpus"], cfg["xen_platform_pci"], cfg["builder"]) == ("web0", "512", "1", "0", "hvm")
    assert "device_model_override" in rendered["web0"]  # the inventory's colo_xen_device_model
    disk = cfg["__disks"][0]
    # The overlays the module creates on the secondary are the ones the disk spec names.
    vm = xen_colo.vm_from_entry(DEFAULT_VM, "/mnt/ramfs", "/etc/xen/colo-ft")
    assert (disk["active_disk"], disk["hidden_disk"]) == (vm.active_disk, vm.hidden_disk)
    # Second VM, second colo-port; its own export.
    assert (disk["colo_host"], disk["colo_port"], disk["colo_export"], disk["pdev_path"]) == (
        "192.168.2.88", 9002, "web0-disk", "/srv/vm/web0.img")
    assert vif_options(cfg["vif"][0]) == {"mac": "52:54:00:00:00:11", "bridge": "br0", "model": "e1000", "forwarddev": "eth1"}
