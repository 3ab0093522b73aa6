#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint
short_description: Start or stop COLO checkpointing of a VM pair
version_added: 0.2.0
description:
  - V(ready) runs on the B(secondary) host. It sets the COLO migration capabilities, exports the secondary's disk over
    NBD on its checkpoint-link address and makes QEMU listen for the incoming migration.
  - V(protected) runs on the B(primary) host, after V(ready) on the secondary. It resyncs the secondary's disk by
    C(drive-mirror) while the guest runs (the whole disk, whatever the secondary's image held), pauses the guest,
    adds the replication child to the disk's quorum, adds the network proxy objects that are missing, sets
    capabilities and the checkpoint delay, migrates, and waits until COLO runs. The guest keeps running apart from the short pause at the switch.
  - On a survivor of a failover (a former secondary promoted by M(colo.ft.failover), or a primary whose secondary
    died) V(protected) is the re-protection with a freshly started secondary; set O(forward_address) when this host's
    forward-link address differs from the one recorded at start (a former secondary).
  - V(unprotected) runs on the primary. It drops the replication child and the proxy objects and leaves COLO; the
    guest keeps running alone. Stop the secondary VM first (M(colo.ft.vm) O(colo.ft.vm#module:state=stopped) on
    the secondary host) so that it can never take over.
  - The VM description (ports, addresses) comes from the record M(colo.ft.vm) wrote at start.
author:
  - colo.ft maintainers (@colo-ft)
extends_documentation_fragment:
  - colo.ft.colo
  - colo.ft.colo.compare
  - colo.ft.colo.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  state:
    description: V(ready) (secondary), V(protected) or V(unprotected) (primary).
    type: str
    choices: [ready, protected, unprotected]
    required: true
  secondary_address:
    description:
      - The secondary's checkpoint-link address. With V(ready) the NBD server and the incoming migration listen
        there; with V(protected) the primary connects to it.
      - Default is O(colo.ft.vm#module:checkpoint_address) recorded when the VM was started.
    type: str
  forward_address:
    description:
      - With V(protected), this host's forward-link address, where the new secondary's redirectors connect.
        Default is the recorded O(colo.ft.vm#module:forward_address); set it when re-protecting from a former
        secondary.
    type: str
  checkpoint_delay_ms:
    description:
      - With V(protected), the milliseconds between periodic checkpoints (C(x-checkpoint-delay)) for this run.
        Default is the VM's own O(colo.ft.vm#module:checkpoint_delay_ms), recorded when it was started (so the
        same after a failover and a re-protection).
      - On a pair that is already protected, a delay that differs from QEMU's current one is applied in place
        (C(migrate-set-parameters)), without a new protection; a later run without this option puts the
        recorded delay back.
    type: int
  timeout:
    description:
      - With V(protected), seconds allowed for COLO to start after the resync (the first full RAM copy, with the
        guest paused). The resync is not bounded by it (see O(resync_stall_timeout)).
    type: float
    default: 600
  resync_stall_timeout:
    description:
      - With V(protected), seconds the disk resync may go without copying a byte before it is given up (the copy is
        cancelled; protecting again starts it over). A resync that keeps copying is never cut short, whatever the
        disk's size.
      - While the resync runs, its progress is in C(resync.json) of the VM's state directory, which M(colo.ft.info)
        reports as C(resync).
    type: float
    default: 60
  allow_unsupported_qemu:
    description: Protect even with a QEMU known to fail COLO. Unsafe.
    type: bool
    default: false
seealso:
  - module: colo.ft.vm
  - module: colo.ft.failover
  - module: colo.ft.info
"""

EXAMPLES = r"""
- name: Secondary ready (on the secondary host)
  colo.ft.checkpoint:
    name: guest1
    state: ready
  delegate_to: colo-b

- name: Protect the running primary (on the primary host)
  colo.ft.checkpoint:
    name: guest1
    state: protected
    checkpoint_delay_ms: 2000
  delegate_to: colo-a

- name: Checkpoint every 500 ms from now on (the pair stays protected)
  colo.ft.checkpoint:
    name: guest0
    state: protected
    checkpoint_delay_ms: 500
  delegate_to: colo-a

- name: Re-protect from the promoted former secondary with a new secondary on colo-a
  colo.ft.checkpoint:
    name: guest1
    state: protected
    forward_address: 10.213.2.12
    secondary_address: 10.213.3.11
  delegate_to: colo-b
"""

RETURN = r"""
actions:
  description: QMP steps taken; empty when nothing had to change. In check mode, the steps it would take.
  returned: always
  type: list
  elements: str
  sample: ["drive-mirror colo-disk0 -> nbd://10.213.3.12:9999/parent0", "stop", "migrate tcp:10.213.3.12:9998"]
colo:
  description: COLO state after the task.
  returned: always
  type: dict
  contains:
    mode:
      description: V(none), V(primary) or V(secondary).
      type: str
    last_mode:
      description: Mode before the last failover.
      type: str
    reason:
      description: Why COLO last ended.
      type: str
    migration_status:
      description: C(query-migrate) status (V(colo) while COLO runs).
      type: str
    run_state:
      description: QEMU run state.
      type: str
timings:
  description: What the task took on the QEMU side. With V(protected) also the protection's phases (null where the
    task only moved the checkpoint delay or waited for a migration under way); with V(unprotected) only C(duration_s).
  returned: when something changed and not in check mode
  type: dict
  contains:
    duration_s:
      description: The whole task on the QEMU side.
      type: float
    resync_s:
      description: Disk resync (drive-mirror start to job end).
      type: float
    resync_bytes:
      description: The resync job's progress at its end, in bytes - the disk's whole virtual size (areas that read
        as zeroes count without being sent as data) plus what the guest rewrote meanwhile.
      type: int
    colo_after_migrate_s:
      description: C(migrate) to COLO running.
      type: float
    guest_pause_ms:
      description: The guest's pause around the switch to COLO.
      type: float
"""

import time

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint, resync_progress, state
from ansible_collections.colo.ft.plugins.module_utils.module_base import (
    COMPARE_ARGS,
    ColoModule,
    settings_overrides,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import with_overrides


def run(module: ColoModule) -> dict:
    p = module.params
    spec, record = module.find()
    role = record.get("role")
    address = p["secondary_address"] or spec.checkpoint_addr
    progress = resync_progress.ProgressFile(resync_progress.path(spec))
    with module.qmp(spec, timeout=max(30.0, float(p["timeout"]))) as qmp:
        before = state.read(qmp)
        t0 = time.monotonic()
        if p["state"] == "ready":
            plan = checkpoint.plan_ready(before, role, address, spec.nbd_port, spec.migration_port,
                                         p["allow_unsupported_qemu"])
        elif p["state"] == "protected":
            # This run's settings override the recorded ones; a former secondary protects from its own forward link.
            pspec = with_overrides(spec, forward_addr=p["forward_address"], checkpoint_addr=address,
                                   **settings_overrides(p))
            plan = checkpoint.plan_protect(before, pspec, address, float(p["timeout"]), p["allow_unsupported_qemu"],
                                           progress=progress, stall_timeout=float(p["resync_stall_timeout"]))
        else:
            plan = checkpoint.plan_release(before, role)
        try:
            result, after = module.apply(plan, qmp, before)
        finally:
            progress.remove()
        if isinstance(plan, checkpoint.ProtectPlan) and not module.check_mode:
            result["changed"] = plan.result.changed
            if result["changed"]:
                plan.result.duration_s = time.monotonic() - t0
                result["timings"] = plan.result.timings()
        elif p["state"] == "unprotected" and result["changed"] and not module.check_mode:
            result["timings"] = {"duration_s": round(time.monotonic() - t0, 3)}
        result["colo"] = after.summary()
    return result


def main() -> None:
    module = ColoModule(
        argument_spec={
            "state": {"type": "str", "required": True, "choices": ["ready", "protected", "unprotected"]},
            "secondary_address": {"type": "str"},
            "forward_address": {"type": "str"},
            "checkpoint_delay_ms": {"type": "int"},
            "timeout": {"type": "float", "default": 600},
            "resync_stall_timeout": {"type": "float", "default": 60},
            "allow_unsupported_qemu": {"type": "bool", "default": False},
            **COMPARE_ARGS,
        },
    )
    module.run(lambda: run(module))


if __name__ == "__main__":
    main()
