# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared plumbing of the colo.ft modules (the runtime in colo/ stays Ansible-free).

* VM_SPEC_ARGS: the argument-spec fragment for a VM description; its option
  names map 1:1 onto VMSpec fields (OPTION_TO_FIELD renames the two that differ).
  The per-VM COLO settings are among them; checkpoint and proxy take
  COMPARE_ARGS (and checkpoint its delay) as overrides of the recorded ones.
* ColoModule: an AnsibleModule that turns runtime errors (ColoError and
  subclasses) into fail_json with the runtime's sentence as msg, finds the spec
  a running VM was started with so that every module but `vm` needs only
  `name`, opens short QMP connections, and applies a runtime plan (check mode:
  lists its steps).
Modules decide nothing themselves: refusals and steps come from the runtime's planners.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
import os
import traceback
from contextlib import contextmanager
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.colo.ft.plugins.module_utils.colo import state
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, InvalidSpec, LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.plan import Plan
from ansible_collections.colo.ft.plugins.module_utils.colo.launcher import Launcher
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import (
    OPTION_TO_FIELD,
    STATE_ROOT,
    VMSpec,
    check_locator,
    spec_from_options,
)
from ansible_collections.colo.ft.plugins.module_utils.dict_options import validated_subset

# Options of every module.
COMMON_ARGS: dict[str, dict[str, Any]] = {
    "name": {"type": "str", "required": True},
    "state_root": {"type": "path", "default": STATE_ROOT},
}

# colo-compare tuning: VMSpec fields; checkpoint and proxy take them as overrides of the recorded ones.
COMPARE_ARGS: dict[str, dict[str, Any]] = {
    "compare_timeout": {"type": "int"},
    "expired_scan_cycle": {"type": "int"},
    "max_queue_size": {"type": "int"},
}

# The VM description (colo.ft.vm); defaults equal VMSpec's. The COLO settings (checkpoint delay,
# reconnect, compare) are recorded with the VM, so they hold across failover and re-protection.
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
    "tls_dir": {"type": "path"},
    "checkpoint_delay_ms": {"type": "int", "default": VMSpec.__dataclass_fields__["checkpoint_delay_ms"].default},
    "reconnect_ms": {"type": "int", "default": VMSpec.__dataclass_fields__["reconnect_ms"].default},
    **COMPARE_ARGS,
    "qemu_binary": {"type": "str", "default": "qemu-system-x86_64"},
    "qemu_user": {"type": "str"},
    "extra_args": {"type": "list", "elements": "str", "default": []},
}

# Options that place a VM on a host (the roles set them per host); the other VM_SPEC_ARGS describe the guest.
PLACEMENT_ARGS = ("bridge", "tap", "forward_address", "checkpoint_address", "active_disk", "hidden_disk", "tls_dir",
                  "qemu_user")
# A guest option given directly and in the `vm` dict at once is refused (mutually_exclusive).
GUEST_ARGS = tuple(k for k in VM_SPEC_ARGS if k not in PLACEMENT_ARGS)


def spec_from_params(params: dict[str, Any]) -> VMSpec:
    """VMSpec from module parameters (only the VM description options are read)."""
    return spec_from_options(params["name"], {o: params[o] for o in VM_SPEC_ARGS if o in params},
                             params.get("state_root") or STATE_ROOT)


def apply_vm_dict(params: dict[str, Any], label: str = "vm") -> None:
    """Fill the VM options from params["vm"] (e.g. an entry of the roles' colo_vms), checked like options.

    Guest options cannot be given both ways (mutually_exclusive); a placement option given directly wins
    over the same key in vm. InvalidSpec on an unknown key, a bad value or another name.
    """
    vm = params.get("vm") or {}
    if not vm:
        return
    checked = validated_subset(vm, {"name": {"type": "str"}, **VM_SPEC_ARGS}, label)
    name = checked.pop("name", params["name"])
    if name != params["name"]:
        raise InvalidSpec(f"vm.name {name!r} differs from name {params['name']!r}")
    for key, value in checked.items():
        if key in PLACEMENT_ARGS and params.get(key) is not None:
            continue
        params[key] = value


def spec_from_vm_dict(vm: dict[str, Any], label: str = "vm") -> VMSpec:
    """The VMSpec colo.ft.vm builds from its `vm` option alone (an entry of the roles' colo_vms), not yet
    validated. InvalidSpec, naming label, on an unknown key or a bad value, as the module would refuse it."""
    params: dict[str, Any] = {k: copy.deepcopy(a.get("default")) for k, a in VM_SPEC_ARGS.items()}
    params.update(name=vm.get("name"), state_root=STATE_ROOT, vm=vm)
    apply_vm_dict(params, label)
    return spec_from_params(params)


def vm_entry_options(entry: Any, index: int, role_keys: Any = ()) -> tuple[dict[str, Any], str] | None:
    """An entry of the roles' colo_vms as colo.ft.vm's `vm` option (without the roles' own keys) and the
    label that names it in messages; None if the entry is not a mapping."""
    if not isinstance(entry, Mapping):
        return None
    vm = {k: v for k, v in entry.items() if k not in role_keys}
    return vm, f"colo_vms entry {index} ({entry.get('name', 'no name')})"


def stub_spec(name: str, state_root: str = STATE_ROOT) -> VMSpec:
    """A spec that only locates a VM's state directory (nothing else is valid); InvalidSpec when
    name or state_root cannot name one."""
    check_locator(name, state_root)
    return VMSpec(name=name, disk="", mac="", state_root=state_root)


def settings_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """The COLO settings a task sets for this run only (unset or not an option of it: the recorded ones)."""
    return {k: params.get(k) for k in ("checkpoint_delay_ms", *COMPARE_ARGS) if k in params}


def spec_summary(spec: VMSpec | None, role: str | None) -> dict[str, Any]:
    """What the vm module shows as diff: the recorded spec and role (or nothing)."""
    if spec is None:
        return {}
    rename = {f: o for o, f in OPTION_TO_FIELD.items()}
    return {"role": role, **{rename.get(k, k): v for k, v in spec.to_dict().items()}}


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

    def find(self) -> tuple[VMSpec, dict[str, Any]]:
        """The spec and record the VM `name` was started with (Launcher.find, the one lookup)."""
        spec, record, _status = self.launcher.find(self.params["name"], self.params["state_root"])
        return spec, record

    @contextmanager
    def qmp(self, spec: VMSpec, timeout: float = 30.0, oob: bool = False):
        """A short QMP connection to the VM (QEMU serves one client at a time); oob: with
        out-of-band execution where QEMU offers it (QMPClient.execute_oob)."""
        if not os.path.exists(spec.qmp_path):
            raise LaunchError(f"VM {spec.name} is not running (no QMP socket {spec.qmp_path}); "
                              "start it with colo.ft.vm first")
        client = QMPClient(spec.qmp_path, timeout=timeout, oob=oob)
        try:
            client.connect()
            yield client
        finally:
            client.close()

    # -- plans

    def apply(self, plan: Plan, qmp: QMPClient, before: state.VMState) -> tuple[dict[str, Any], state.VMState]:
        """Check mode: the plan's steps as actions, changed if there are any. Otherwise apply it:
        the actions QEMU was told, changed if there were any. Returns them and the VM's state after."""
        for w in plan.warnings:
            self.warn(w)
        if self.check_mode:
            return {"changed": plan.changed, "actions": plan.describe()}, before
        actions = plan.apply(qmp)
        return {"changed": bool(actions), "actions": actions}, state.read(qmp)
