#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: replication
short_description: Disk replication steps of a COLO pair, one at a time
version_added: 0.2.0
description:
  - For users who drive the COLO steps themselves; M(colo.ft.checkpoint) runs all of them in order.
  - On the B(secondary), V(exported) starts the NBD server on the checkpoint-link address and exports the
    secondary's disk (C(parent0)) writable; V(stopped) stops the NBD server.
  - On the B(primary), V(attached) resyncs the secondary's disk by C(drive-mirror) (unless O(resync=false)) and adds
    the replication child to the disk's quorum; V(detached) removes it.
  - After V(attached) with a resync the guest is B(paused) (no write may slip between the copy and the replication
    child). Start COLO next (M(colo.ft.checkpoint) O(colo.ft.checkpoint#module:state=protected) only waits for it
    then), or detach and resume the guest.
author:
  - colo.ft maintainers (@colo-ft)
extends_documentation_fragment:
  - colo.ft.colo
  - colo.ft.colo.attributes
attributes:
  check_mode:
    support: full
    details: With V(stopped), an NBD server left running without any export is not visible to QEMU queries; check
      mode predicts no change for it.
  diff_mode:
    support: none
options:
  state:
    description: V(exported) or V(stopped) on the secondary, V(attached) or V(detached) on the primary.
    type: str
    choices: [exported, stopped, attached, detached]
    required: true
  secondary_address:
    description: The secondary's checkpoint-link address; default the recorded O(colo.ft.vm#module:checkpoint_address).
    type: str
  resync:
    description: With V(attached), copy the whole disk to the secondary first (required unless both disks are known
      to be identical, for example copies of one image with the guest not yet started).
    type: bool
    default: true
  resync_stall_timeout:
    description:
      - With V(attached), seconds the resync may go without copying a byte before it is given up (the copy is
        cancelled; running again starts it over). A resync that keeps copying is never cut short, whatever the
        disk's size. While it runs, its progress is in C(resync.json) of the VM's state directory, which
        M(colo.ft.info) reports as C(resync).
      - O(timeout) is an alias (it used to bound the whole resync).
    type: float
    default: 60
    aliases: [timeout]
seealso:
  - module: colo.ft.checkpoint
  - module: colo.ft.proxy
"""

EXAMPLES = r"""
- name: Export the secondary's disk (secondary host)
  colo.ft.replication:
    name: guest1
    state: exported

- name: Resync and attach the replication child (primary host); the guest is paused afterwards
  colo.ft.replication:
    name: guest1
    state: attached
"""

RETURN = r"""
actions:
  description: QMP steps taken; empty when nothing had to change. In check mode, the steps it would take.
  returned: always
  type: list
  elements: str
  sample: ["nbd-server-start 10.213.3.12:9999", "nbd-server-add parent0 writable"]
replication:
  description: Replication state after the task.
  returned: always
  type: dict
  contains:
    node_attached:
      description: The quorum child that is the replication node, or V(null).
      type: str
    nbd_exports:
      description: NBD exports of this QEMU.
      type: list
      elements: str
"""

from ansible_collections.colo.ft.plugins.module_utils.colo import replication, resync_progress, state
from ansible_collections.colo.ft.plugins.module_utils.module_base import ColoModule


def run(module: ColoModule) -> dict:
    p = module.params
    spec, record = module.find()
    progress = resync_progress.ProgressFile(resync_progress.path(spec))
    with module.qmp(spec) as qmp:
        before = state.read(qmp)
        plan = replication.plan(before, record.get("role"), p["state"], p["secondary_address"] or spec.checkpoint_addr,
                                spec.nbd_port, p["resync"], float(p["resync_stall_timeout"]), progress)
        try:
            result, after = module.apply(plan, qmp, before)
        finally:
            progress.remove()
        result["replication"] = {"node_attached": after.child, "nbd_exports": list(after.exports)}
    return result


def main() -> None:
    module = ColoModule(
        argument_spec={
            "state": {"type": "str", "required": True, "choices": ["exported", "stopped", "attached", "detached"]},
            "secondary_address": {"type": "str"},
            "resync": {"type": "bool", "default": True},
            "resync_stall_timeout": {"type": "float", "default": 60, "aliases": ["timeout"]},
        },
    )
    module.run(lambda: run(module))


if __name__ == "__main__":
    main()
