#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm
short_description: Start or stop the QEMU of a COLO VM in one role
version_added: 0.2.0
description:
  - Starts the QEMU process of a VM as a plain VM, as COLO primary or as COLO secondary, or stops it.
  - The primary gets a one-child quorum disk and the proxy's chardevs, so that protection can be added while it
    runs (M(colo.ft.checkpoint)), which also adds the network proxy (filter-mirror, redirectors, colo-compare).
    A primary started with the proxy would get none of its output out until COLO runs. The secondary
    gets the redirector and rewriter filters, the replication disk over fresh active and hidden overlays, and
    waits for the incoming migration.
  - The description is validated (every problem listed) and the image files checked before anything is started.
  - QEMU runs as a transient systemd unit C(colo-ft-<name>) where systemd is PID 1, else as a daemonized process.
    Its state (QMP socket, pidfile, logs, the recorded description) lives in O(state_root)/O(name).
  - Idempotent; a VM already running under that name with another description or role is refused, not restarted.
author:
  - colo.ft maintainers (@colo-ft)
extends_documentation_fragment:
  - colo.ft.colo
  - colo.ft.colo.vm_spec
  - colo.ft.colo.compare
  - colo.ft.colo.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the recorded description and role before and after.
options:
  state:
    description:
      - V(started) starts the VM unless it already runs with this description and role.
      - V(stopped) stops it (QMP C(quit), then SIGTERM, then SIGKILL); only O(name) is needed.
    type: str
    choices: [started, stopped]
    default: started
  role:
    description:
      - V(plain) runs the guest alone, V(primary) and V(secondary) run it as one side of a COLO pair.
      - Start the secondary before protecting the primary.
    type: str
    choices: [plain, primary, secondary]
    default: plain
  allow_unsupported_qemu:
    description:
      - Start a primary or secondary even with a QEMU known to fail COLO (older than 11, 10.0.x, 10.1.x).
      - Unsafe, measured failures are deadlocks of the primary and memory corruption of the secondary.
    type: bool
    default: false
  stop_timeout:
    description: With O(state=stopped), seconds to wait after QMP C(quit) before SIGTERM.
    type: int
    default: 15
  vm:
    description:
      - The guest's description as one dictionary, e.g. an entry of the roles' C(colo_vms) - O(name) and any of the
        VM options of this module (O(memory_mib), O(disk), O(mac), O(kernel), O(port_base), ...), checked like the
        options themselves.
      - A guest option may be given either here or directly, not both. The options that place the VM on a host
        (O(bridge), O(tap), O(forward_address), O(checkpoint_address), O(active_disk), O(hidden_disk)) may be in
        both; the direct value wins.
      - With O(state=started), O(disk) and O(mac) are required (here or directly), and O(forward_address) for
        O(role=primary) and O(role=secondary).
    type: dict
seealso:
  - module: colo.ft.checkpoint
  - module: colo.ft.info
"""

EXAMPLES = r"""
- name: Start the secondary (on the secondary host)
  colo.ft.vm:
    name: guest1
    role: secondary
    disk: /var/lib/colo/guest1.qcow2
    mac: "52:54:00:13:01:10"
    kernel: /srv/colo-lab/guest/vmlinux
    initrd: /srv/colo-lab/guest/initrd.img
    append: console=ttyS0 panic=-1 quiet
    accel: tcg
    bridge: br1
    forward_address: 10.213.2.11
    checkpoint_address: 10.213.3.12

- name: Start the primary (on the primary host), same description
  colo.ft.vm:
    name: guest1
    role: primary
    disk: /var/lib/colo/guest1.qcow2
    mac: "52:54:00:13:01:10"
    kernel: /srv/colo-lab/guest/vmlinux
    initrd: /srv/colo-lab/guest/initrd.img
    append: console=ttyS0 panic=-1 quiet
    accel: tcg
    bridge: br0
    forward_address: 10.213.2.11
    checkpoint_address: 10.213.3.12

- name: Start each guest described in colo_vms as a primary (what the colo_primary role does)
  colo.ft.vm:
    name: "{{ item.name }}"
    vm: "{{ item }}"
    role: primary
    bridge: br0
    forward_address: 10.213.2.11
    checkpoint_address: 10.213.3.12
  loop: "{{ colo_vms }}"

- name: Stop it
  colo.ft.vm:
    name: guest1
    state: stopped
"""

RETURN = r"""
vm:
  description: The VM after the task (in check mode, as it would be).
  returned: always
  type: dict
  contains:
    name:
      description: VM name.
      type: str
      sample: guest1
    role:
      description: Role it runs in (or would run in); V(null) when stopped.
      type: str
      sample: primary
    pid:
      description: PID of its QEMU process, V(null) when not running (or not known yet in check mode).
      type: int
      sample: 12345
    running:
      description: Whether a QEMU process runs for it.
      type: bool
      sample: true
    qemu_status:
      description: QEMU's run state (C(query-status)) such as V(running) or V(inmigrate); V(null) when not running.
      type: str
      sample: running
    qmp_socket:
      description: Path of its QMP socket.
      type: str
      sample: /run/colo-ft/guest1/qmp.sock
    state_dir:
      description: Its state directory.
      type: str
      sample: /run/colo-ft/guest1
    manager:
      description: V(systemd) (transient unit C(colo-ft-<name>)) or V(daemon) (daemonized QEMU).
      type: str
      sample: systemd
message:
  description: What was done, in a sentence.
  returned: always
  type: str
  sample: started VM guest1 as primary
elapsed_s:
  description: Seconds the start or stop took (0 when nothing was done).
  returned: always
  type: float
  sample: 0.42
qemu:
  description: The QEMU binary checked before a primary or secondary was started.
  returned: when a primary or secondary was (or would be) started
  type: dict
  contains:
    version:
      description: Its version.
      type: str
      sample: 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)
    warnings:
      description: What the guard allowed but wants said (untested version, unsafe override).
      type: list
      elements: str
updated:
  description: Settings that change without a restart, recorded anew for the running VM (C(key old -> new)).
  returned: when the VM ran as asked but with other such settings
  type: list
  elements: str
  sample: ["checkpoint_delay_ms 2000 -> 500"]
"""

import time

from ansible_collections.colo.ft.plugins.module_utils.colo import guard
from ansible_collections.colo.ft.plugins.module_utils.colo.argv import qemu_argv
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError, LaunchError
from ansible_collections.colo.ft.plugins.module_utils.colo.host import image_problems
from ansible_collections.colo.ft.plugins.module_utils.colo.launcher import read_record
from ansible_collections.colo.ft.plugins.module_utils.colo.records import live_setting_changes
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec
from ansible_collections.colo.ft.plugins.module_utils.module_base import (
    ColoModule,
    GUEST_ARGS,
    apply_vm_dict,
    spec_from_params,
    spec_summary,
    stub_spec,
)


def _vm_info(module: ColoModule, spec: VMSpec, role: str | None) -> dict:
    st = module.launcher.status(spec)
    return {
        "name": spec.name,
        "role": role if st.running else None,
        "pid": st.pid,
        "running": st.running,
        "qemu_status": st.qemu_status,
        "qmp_socket": spec.qmp_path,
        "state_dir": spec.state_dir,
        "manager": st.manager or module.launcher.manager,
    }


def started(module: ColoModule) -> dict:
    p = module.params
    apply_vm_dict(p)
    role = p["role"]
    spec = spec_from_params(p).validate(role)
    problems = image_problems(spec, role)
    if problems:
        raise LaunchError(f"cannot start VM {spec.name}: " + "; ".join(problems))

    wanted = qemu_argv(spec, role, daemonize=not module.launcher.use_systemd, proxy=False)
    already, _pid = module.launcher.plan_start(spec, role, wanted)
    record = read_record(spec) if already else None
    live = live_setting_changes(record, spec) if record else {}  # recorded anew by launcher.start
    changed = not already or bool(live)
    result: dict = {"changed": changed, "elapsed_s": 0.0}
    before = spec_summary(VMSpec.from_dict(record["spec"]), record.get("role")) if record else {}
    result["diff"] = {"before": before, "after": spec_summary(spec, role)}

    if not already and role in ("primary", "secondary"):
        g = guard.check(spec.qemu_binary, allow_unsupported=p["allow_unsupported_qemu"])
        for w in g.warnings:
            module.warn(w)
        result["qemu"] = {"version": str(g.version) if g.version else None, "warnings": g.warnings}
    if not changed:
        result["message"] = f"VM {spec.name} is already running as {role}"
    elif module.check_mode and already:
        result["message"] = f"would record {', '.join(sorted(live))} of VM {spec.name}"
    elif module.check_mode:
        result["message"] = f"would start VM {spec.name} as {role}"
        result["vm"] = {"name": spec.name, "role": role, "pid": None, "running": True, "qemu_status": None,
                        "qmp_socket": spec.qmp_path, "state_dir": spec.state_dir,
                        "manager": module.launcher.manager}
        return result
    else:
        # The proxy is hot-added by protection: a primary with it would serve nothing until then.
        res = module.launcher.start(spec, role, proxy=False)
        result.update(changed=res.changed, message=res.message, elapsed_s=round(res.elapsed_s, 3))
        if res.updated:
            result["updated"] = res.updated
    result["vm"] = _vm_info(module, spec, role)
    return result


def stopped(module: ColoModule) -> dict:
    p = module.params
    try:
        spec, record, st = module.launcher.find(p["name"], p["state_root"])
    except (ColoError, TypeError, ValueError):  # no (usable) record: the paths are all a stop needs
        spec, record = stub_spec(p["name"], p["state_root"]), {}
        st = module.launcher.status(spec)
    result: dict = {"changed": st.running, "elapsed_s": 0.0,
                    "diff": {"before": spec_summary(spec, record.get("role")) if st.running and record else {},
                             "after": {}}}
    if not st.running:
        result["message"] = f"VM {spec.name} is not running"
    elif module.check_mode:
        result["message"] = f"would stop VM {spec.name}"
    else:
        t0 = time.monotonic()
        res = module.launcher.stop(spec, timeout=float(p["stop_timeout"]))
        result.update(changed=res.changed, message=res.message, elapsed_s=round(time.monotonic() - t0, 3))
    info = _vm_info(module, spec, record.get("role"))
    if module.check_mode and st.running:
        info.update(running=False, pid=None, qemu_status=None, role=None)
    result["vm"] = info
    return result


def main() -> None:
    module = ColoModule(
        argument_spec={
            "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
            "role": {"type": "str", "default": "plain", "choices": ["plain", "primary", "secondary"]},
            "allow_unsupported_qemu": {"type": "bool", "default": False},
            "stop_timeout": {"type": "int", "default": 15},
            "vm": {"type": "dict"},
        },
        with_vm_spec=True,
        # disk, mac and (for a COLO role) forward_address may come from vm: VMSpec.validate() checks them.
        mutually_exclusive=[("vm", key) for key in GUEST_ARGS],
    )
    module.run(lambda: started(module) if module.params["state"] == "started" else stopped(module))


if __name__ == "__main__":
    main()
