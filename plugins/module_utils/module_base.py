# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared plumbing of the colo.ft modules (the runtime in colo/ stays Ansible-free).

* VM_SPEC_ARGS: the argument-spec fragment for a VM description; its option
  names map 1:1 onto VMSpec fields (OPTION_TO_FIELD renames the two that differ).
* ColoModule: an AnsibleModule that turns runtime errors (ColoError and
  subclasses) into fail_json with the runtime's sentence as msg, loads the spec
  a running VM was started with (launcher.read_record) so that every module but
  `vm` needs only `name`, and opens short QMP connections.
* Pure helpers (predict_*) used by the modules' check mode; unit tested.
"""
from __future__ import annotations

import os
import traceback
from contextlib import contextmanager
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint, failover, replication
from ansible_collections.colo.ft.plugins.module_utils.colo import proxy as colo_proxy
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, InvalidSpec, LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.launcher import Launcher, read_record
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import STATE_ROOT, VMSpec
from ansible_collections.colo.ft.plugins.module_utils.dict_options import validated_subset

# Module option -> VMSpec field, where the names differ.
OPTION_TO_FIELD = {
    "forward_address": "forward_addr",
    "checkpoint_address": "checkpoint_addr",
}

# Options of every module.
COMMON_ARGS: dict[str, dict[str, Any]] = {
    "name": {"type": "str", "required": True},
    "state_root": {"type": "path", "default": STATE_ROOT},
}

# The VM description (colo.ft.vm); defaults equal VMSpec's.
VM_SPEC_ARGS: dict[str, dict[str, Any]] = {
    "memory_mib": {"type": "int", "default": 256},
    "vcpus": {"type": "int", "default": 1},
    "disk": {"type": "path"},
    "disk_format": {"type": "str", "default": "qcow2", "choices": ["qcow2", "raw"]},
    "disk_device": {"type": "str", "default": "virtio-blk-pci"},
    "mac": {"type": "str"},
    "nic_model": {"type": "str", "default": "e1000"},
    "boot": {"type": "str", "default": "kernel", "choices": ["kernel", "disk"]},
    "kernel": {"type": "path"},
    "initrd": {"type": "path"},
    "append": {"type": "str", "default": ""},
    "accel": {"type": "str", "default": "auto", "choices": ["auto", "kvm", "tcg"]},
    "machine": {"type": "str", "default": "pc"},
    "cpu": {"type": "str"},
    "bridge": {"type": "str"},
    "tap": {"type": "str"},
    "forward_address": {"type": "str"},
    "checkpoint_address": {"type": "str"},
    "port_base": {"type": "int"},
    "mirror_port": {"type": "int"},
    "compare_port": {"type": "int"},
    "migration_port": {"type": "int"},
    "nbd_port": {"type": "int"},
    "active_disk": {"type": "path"},
    "hidden_disk": {"type": "path"},
    "qemu_binary": {"type": "str", "default": "qemu-system-x86_64"},
    "extra_args": {"type": "list", "elements": "str", "default": []},
}

# Options that place a VM on a host (the roles set them per host); the other VM_SPEC_ARGS describe the guest.
PLACEMENT_ARGS = ("bridge", "tap", "forward_address", "checkpoint_address", "active_disk", "hidden_disk")
# A guest option given directly and in the `vm` dict at once is refused (mutually_exclusive).
GUEST_ARGS = tuple(k for k in VM_SPEC_ARGS if k not in PLACEMENT_ARGS)

# colo-compare tuning (proxy.CompareOptions), shared by proxy and checkpoint.
COMPARE_ARGS: dict[str, dict[str, Any]] = {
    "compare_timeout": {"type": "int"},
    "expired_scan_cycle": {"type": "int"},
    "max_queue_size": {"type": "int"},
}


def spec_from_params(params: dict[str, Any]) -> VMSpec:
    """VMSpec from module parameters (only the VM description options are read)."""
    data: dict[str, Any] = {"name": params["name"], "state_root": params.get("state_root") or STATE_ROOT}
    for option in VM_SPEC_ARGS:
        if option in params:
            data[OPTION_TO_FIELD.get(option, option)] = params[option]
    if data.get("extra_args") is None:
        data["extra_args"] = []
    if data.get("append") is None:
        data["append"] = ""
    return VMSpec(**data)


def apply_vm_dict(params: dict[str, Any]) -> None:
    """Fill the VM options from params["vm"] (e.g. an entry of the roles' colo_vms), checked like options.

    Guest options cannot be given both ways (mutually_exclusive); a placement option given directly wins
    over the same key in vm. InvalidSpec on an unknown key, a bad value or another name.
    """
    vm = params.get("vm") or {}
    if not vm:
        return
    checked = validated_subset(vm, {"name": {"type": "str"}, **VM_SPEC_ARGS}, "vm")
    name = checked.pop("name", params["name"])
    if name != params["name"]:
        raise InvalidSpec(f"vm.name {name!r} differs from name {params['name']!r}")
    for key, value in checked.items():
        if key in PLACEMENT_ARGS and params.get(key) is not None:
            continue
        params[key] = value


def stub_spec(name: str, state_root: str = STATE_ROOT) -> VMSpec:
    """A spec that only locates a VM's state directory (nothing else is valid)."""
    return VMSpec(name=name, disk="", mac="", state_root=state_root)


def with_overrides(spec: VMSpec, **overrides: Any) -> VMSpec:
    """A copy of spec with the given fields replaced (None values are ignored)."""
    data = spec.to_dict()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return VMSpec.from_dict(data)


def compare_options(params: dict[str, Any]) -> colo_proxy.CompareOptions | None:
    opts = {k: params.get(k) for k in COMPARE_ARGS}
    if all(v is None for v in opts.values()):
        return None
    return colo_proxy.CompareOptions(**opts)


def spec_summary(spec: VMSpec | None, role: str | None) -> dict[str, Any]:
    """What the vm module shows as diff: the recorded spec and role (or nothing)."""
    if spec is None:
        return {}
    rename = {f: o for o, f in OPTION_TO_FIELD.items()}
    return {"role": role, **{rename.get(k, k): v for k, v in spec.to_dict().items()}}


# -- check-mode predictions (pure) -------------------------------------------------------


def image_problems(spec: VMSpec, role: str, exists=os.path.exists, isdir=os.path.isdir,
                   access=os.access) -> list[str]:
    """Files a start needs that are missing (checked before anything is started)."""
    p: list[str] = []
    if not exists(spec.disk):
        p.append(f"disk image {spec.disk} does not exist")
    for key in ("kernel", "initrd"):
        path = getattr(spec, key)
        if spec.boot == "kernel" and path and not exists(path):
            p.append(f"{key} {path} does not exist")
    if role == "secondary":
        for path in sorted({os.path.dirname(spec.active_path), os.path.dirname(spec.hidden_path)}):
            # The launcher creates missing directories: the nearest existing one must be writable.
            probe = path
            while probe and not exists(probe):
                parent = os.path.dirname(probe)
                if parent == probe:
                    break
                probe = parent
            if not isdir(probe) or not access(probe, os.W_OK):
                p.append(f"overlay directory {path} cannot be created or written ({probe} is not a writable directory)")
    return p


# -- the module class ----------------------------------------------------------------------


class ColoModule(AnsibleModule):
    """AnsibleModule with the colo.ft conventions (see the file's docstring)."""

    def __init__(self, argument_spec: dict[str, Any], with_vm_spec: bool = False, **kwargs: Any) -> None:
        spec = dict(COMMON_ARGS)
        if with_vm_spec:
            spec.update(VM_SPEC_ARGS)
        spec.update(argument_spec)
        kwargs.setdefault("supports_check_mode", True)
        super().__init__(argument_spec=spec, **kwargs)
        self.launcher = Launcher()
        self.timings: dict[str, float] = {}

    # -- errors

    def run(self, func: Any) -> None:
        """Call func(); ColoError -> fail_json(msg=its sentence); success -> exit_json(**result)."""
        try:
            result = func()
        except ColoError as exc:
            result = None
            self.fail_json(msg=str(exc), error=type(exc).__name__, exception=traceback.format_exc())
        except OSError as exc:  # a file or command the runtime needed (its message names it)
            result = None
            self.fail_json(msg=f"{exc.__class__.__name__}: {exc}", error=type(exc).__name__,
                           exception=traceback.format_exc())
        self.exit_json(**result)

    # -- locating a VM

    @property
    def state_root(self) -> str:
        return self.params["state_root"]

    def record(self, name: str | None = None) -> dict[str, Any] | None:
        return read_record(os.path.join(self.state_root, name or self.params["name"]))

    def load_spec(self, name: str | None = None) -> tuple[VMSpec, dict[str, Any]]:
        """The spec and record a VM was started with; LaunchError if there is none."""
        name = name or self.params["name"]
        record = self.record(name)
        if not record or "spec" not in record:
            raise LaunchError(
                f"no VM {name!r} was started on this host (no {os.path.join(self.state_root, name, 'spec.json')}); "
                "start it with colo.ft.vm first (or set state_root)")
        spec = VMSpec.from_dict(record["spec"])
        return spec, record

    @contextmanager
    def qmp(self, spec: VMSpec, timeout: float = 30.0):
        """A short QMP connection to the VM (QEMU serves one client at a time)."""
        if not os.path.exists(spec.qmp_path):
            raise LaunchError(f"VM {spec.name} is not running (no QMP socket {spec.qmp_path}); "
                              "start it with colo.ft.vm first")
        client = QMPClient(spec.qmp_path, timeout=timeout)
        try:
            client.connect()
            yield client
        finally:
            client.close()


# -- QEMU state snapshot and the predictions made from it (check mode) ----------------------


def snapshot(qmp: QMPClient) -> dict[str, Any]:
    """Read-only view of the COLO-relevant state of a VM (queries only)."""
    snap: dict[str, Any] = {
        "version": tuple(qmp.version),
        "colo": qmp.execute("query-colo-status"),
        "migrate": qmp.execute("query-migrate"),
        "run": qmp.execute("query-status"),
        "caps": {c["capability"]: c["state"] for c in qmp.execute("query-migrate-capabilities")},
        "params": qmp.execute("query-migrate-parameters"),
        "exports": replication.nbd_exports(qmp),
        "node_exists": replication.node_exists(qmp, replication.NODE),
        "objects": colo_proxy.objects(qmp),
        "chardevs": sorted(colo_proxy.chardevs(qmp)),
    }
    try:
        snap["child"] = replication.replication_child(qmp)
        snap["has_quorum"] = True
    except ColoError:  # no quorum colo-disk0: a plain VM
        snap["child"], snap["has_quorum"] = None, False
    return snap


def colo_summary(snap: dict[str, Any]) -> dict[str, Any]:
    colo = snap["colo"]
    return {"mode": colo.get("mode"), "last_mode": colo.get("last-mode"), "reason": colo.get("reason"),
            "migration_status": snap["migrate"].get("status", "none"), "run_state": snap["run"].get("status")}


def predict_ready(snap: dict[str, Any]) -> bool:
    """Would checkpoint.prepare_secondary() act? Raises where it would refuse."""
    if snap["colo"]["mode"] == "secondary":
        return False
    if snap["run"]["status"] != "inmigrate" and snap["colo"]["last-mode"] == "secondary":
        # A failover made this VM the running guest: it can only be protected from here now.
        raise ColoError("this VM took over the guest after a failover and serves it now; it cannot become a secondary "
                        "again. Protect it from this host instead: playbooks/reprotect.yml (or colo.ft.checkpoint "
                        "state=protected here, with a new secondary readied on the other host)")
    if snap["run"]["status"] != "inmigrate":
        raise ColoError("the secondary QEMU is not waiting for an incoming migration "
                        "(start it with colo.ft.vm role=secondary)")
    want = checkpoint.colo_capabilities(snap["version"])
    if any(snap["caps"].get(k) != v for k, v in want.items()):
        return True
    if replication.EXPORT not in snap["exports"]:
        return True
    return not snap["migrate"].get("socket-address")


def predict_protect(snap: dict[str, Any]) -> bool:
    """Would protecting this primary act? Raises on a secondary."""
    if snap["colo"]["mode"] == "secondary":
        raise ColoError("this VM is a COLO secondary: protection is started on the primary "
                        "(on the secondary, use state=ready)")
    return not (snap["colo"]["mode"] == "primary" and snap["migrate"].get("status") == "colo")


def predict_release(snap: dict[str, Any]) -> bool:
    """Would checkpoint.release_primary() act (replication child, proxy objects, COLO mode)?"""
    return bool(snap["child"] or snap["node_exists"] or snap["colo"]["mode"] == "primary"
                or any(o in snap["objects"] for o in colo_proxy.PRIMARY_OBJECTS))


def check_secondary_lost_side(snap: dict[str, Any]) -> None:
    """The refusals of failover.secondary_lost(), without acting."""
    colo = snap["colo"]
    if colo["mode"] == "secondary":
        raise failover.WrongSide("lost=secondary runs on the primary, but this VM is the COLO secondary "
                                 "(here use lost=primary)")
    if colo["mode"] == "none" and colo["last-mode"] != "primary" and snap["child"] is None:
        raise failover.WrongSide(
            "lost=secondary: this VM is not in COLO, was never a primary "
            f"(last mode {colo['last-mode']}) and has no replication child; nothing to release")


def check_primary_lost_side(snap: dict[str, Any]) -> None:
    """The refusals of failover.primary_lost(), without acting."""
    colo = snap["colo"]
    if colo["mode"] == "primary":
        raise failover.WrongSide("lost=primary runs on the secondary, but this VM is the COLO primary "
                                 "(here use lost=secondary)")
    if colo["mode"] == "none" and colo["last-mode"] != "secondary":
        raise failover.WrongSide(
            "lost=primary: this VM is not in COLO and was never a secondary "
            f"(last mode {colo['last-mode']}); nothing to take over")


def predict_primary_lost(snap: dict[str, Any], tap_bridge: str | None, client_bridge: str | None) -> bool:
    """Would failover.primary_lost() act? (An NBD server left without export is not visible: not counted.)"""
    check_primary_lost_side(snap)
    if snap["colo"]["mode"] == "secondary":
        return True
    if snap["exports"]:
        return True
    if any(o in snap["objects"] for o in colo_proxy.SECONDARY_OBJECTS):
        return True
    if any(c in snap["chardevs"] for c in colo_proxy.SECONDARY_CHARDEVS):
        return True
    return bool(client_bridge) and tap_bridge != client_bridge


def predict_proxy(snap: dict[str, Any], state: str, chardev_ids: list[str], object_ids: list[str]) -> bool:
    if state == "present":
        return (any(c not in snap["chardevs"] for c in chardev_ids)
                or any(o not in snap["objects"] for o in object_ids))
    return any(c in snap["chardevs"] for c in chardev_ids) or any(o in snap["objects"] for o in object_ids)


def predict_replication(snap: dict[str, Any], state: str) -> bool:
    if state == "exported":
        return replication.EXPORT not in snap["exports"]
    if state == "stopped":
        return bool(snap["exports"])
    if state == "attached":
        return snap["child"] is None
    return bool(snap["child"] or snap["node_exists"])  # detached
