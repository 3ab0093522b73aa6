#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint
short_description: Start or stop COLO checkpointing of a VM pair
version_added: 0.1.0
description:
  - V(ready) runs on the B(secondary) host. It sets the COLO migration capabilities, exports the secondary's disk over
    NBD on its checkpoint-link address and makes QEMU listen for the incoming migration.
  - V(protected) runs on the B(primary) host, after V(ready) on the secondary. It resyncs the secondary's disk by
    C(drive-mirror) while the guest runs, pauses the guest, adds the replication child to the disk's quorum,
    adds the network proxy objects that are missing, sets capabilities and the checkpoint delay, migrates, and waits
    until COLO runs. The guest keeps running apart from the short pause at the switch.
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
      - With V(protected), the milliseconds between periodic checkpoints (C(x-checkpoint-delay)); QEMU's default is
        20000. Default is the recorded value (2000).
      - On a pair that is already protected, a value that differs from QEMU's current one is applied in place
        (C(migrate-set-parameters)), without a new protection; leaving it unset never changes a running pair.
    type: int
  timeout:
    description: With V(protected), seconds allowed for the resync and for COLO to start.
    type: float
    default: 600
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
  description: QMP steps taken (in check mode always empty, with C(changed) predicted); empty when nothing had to change.
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
  description: With V(protected), what the protection took.
  returned: when state is protected and not in check mode
  type: dict
  contains:
    duration_s:
      description: The whole task on the QEMU side.
      type: float
    resync_s:
      description: Disk resync (drive-mirror start to job end).
      type: float
    colo_after_migrate_s:
      description: C(migrate) to COLO running.
      type: float
    guest_pause_ms:
      description: The guest's pause around the switch to COLO.
      type: float
"""

import time

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.module_base import (
    COMPARE_ARGS,
    ColoModule,
    colo_summary,
    compare_options,
    predict_protect,
    predict_ready,
    predict_release,
    snapshot,
    with_overrides,
)


def run(module: ColoModule) -> dict:
    p = module.params
    state = p["state"]
    spec, record = module.load_spec()
    role = record.get("role")
    address = p["secondary_address"] or spec.checkpoint_addr
    result: dict = {"changed": False, "actions": []}
    with module.qmp(spec, timeout=max(30.0, float(p["timeout"]))) as qmp:
        snap = snapshot(qmp)
        if state == "ready":
            if role != "secondary":
                raise ColoError(f"VM {spec.name} was started as {role}: state=ready runs on the secondary "
                                "(started with colo.ft.vm role=secondary)")
            if not address:
                raise ColoError("state=ready needs the secondary's checkpoint-link address: set secondary_address "
                                "(or checkpoint_address when starting the VM)")
            changed = predict_ready(snap)
            if changed and not module.check_mode:
                checkpoint.check_version(qmp, p["allow_unsupported_qemu"])
                result["actions"] = checkpoint.prepare_secondary(qmp, address, spec.nbd_port, spec.migration_port)
                changed = bool(result["actions"])
        elif state == "protected":
            if not snap["has_quorum"]:
                raise ColoError(f"VM {spec.name} was started as {role} and has no quorum disk: only a VM started "
                                "with colo.ft.vm role=primary (or a promoted secondary) can be protected")
            if not address:
                raise ColoError("state=protected needs the secondary's checkpoint-link address: set "
                                "secondary_address (or checkpoint_address when starting the VM)")
            changed = predict_protect(snap)
            delay = p["checkpoint_delay_ms"]
            if not changed and delay is not None and snap["params"].get("x-checkpoint-delay") != delay:
                # Protected already: only the checkpoint interval moves.
                changed = True
                if not module.check_mode:
                    result["actions"] = checkpoint.set_parameters(qmp, delay)
            elif changed and not module.check_mode:
                pspec = with_overrides(spec, forward_addr=p["forward_address"], checkpoint_addr=address)
                if not pspec.forward_addr:
                    raise ColoError("state=protected needs this host's forward-link address: set forward_address")
                # The secondary runs on another host and was readied there (state=ready).
                res = checkpoint.protect(
                    qmp, None, address, nbd_port=spec.nbd_port, migration_port=spec.migration_port,
                    checkpoint_delay_ms=p["checkpoint_delay_ms"] or spec.checkpoint_delay_ms,
                    timeout=float(p["timeout"]), allow_unsupported=p["allow_unsupported_qemu"],
                    proxy_spec=pspec, compare=compare_options(p))
                for w in res.warnings:
                    module.warn(w)
                result["actions"] = res.actions
                result["timings"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in {
                    "duration_s": res.duration_s, "resync_s": res.resync_s,
                    "colo_after_migrate_s": res.colo_after_migrate_s, "guest_pause_ms": res.guest_pause_ms}.items()}
                # A call that found the migration under way only waited: that finished a change too.
                changed = bool(res.actions) or res.colo_after_migrate_s is not None
        else:  # unprotected
            if snap["colo"]["mode"] == "secondary" or (role == "secondary" and snap["colo"]["last-mode"] == "none"):
                raise ColoError(f"VM {spec.name} is the COLO secondary: stop protection on the primary "
                                "(state=unprotected there) and stop this VM with colo.ft.vm state=stopped")
            changed = predict_release(snap)
            if changed and not module.check_mode:
                t0 = time.monotonic()
                result["actions"] = checkpoint.stop_protection(qmp, None)
                result["timings"] = {"duration_s": round(time.monotonic() - t0, 3)}
                changed = bool(result["actions"])
        result["changed"] = changed
        result["colo"] = colo_summary(snapshot(qmp)) if not module.check_mode else colo_summary(snap)
    return result


def main() -> None:
    module = ColoModule(
        argument_spec={
            "state": {"type": "str", "required": True, "choices": ["ready", "protected", "unprotected"]},
            "secondary_address": {"type": "str"},
            "forward_address": {"type": "str"},
            "checkpoint_delay_ms": {"type": "int"},
            "timeout": {"type": "float", "default": 600},
            "allow_unsupported_qemu": {"type": "bool", "default": False},
            **COMPARE_ARGS,
        },
    )
    module.run(lambda: run(module))


if __name__ == "__main__":
    main()
