#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: failover
short_description: Fail a COLO pair over to the surviving side
version_added: 0.2.0
description:
  - Runs on the B(survivor) of a COLO pair; O(lost) says which side died. With O(lost=auto) the VM's own COLO state
    decides. A COLO secondary (or a VM that was one and took over already) lost its primary, anything else lost
    its secondary (among them a survivor whose re-protection had attached a replication child).
  - O(lost=primary), on the secondary host. The secondary takes over the guest. It stops the NBD server, sends
    C(x-colo-lost-heartbeat), moves the guest's tap from the isolated bridge to the client bridge, removes the
    redirector filters and their chardevs and announces the guest's MAC.
  - O(lost=secondary), on the primary host. The primary stops waiting for its secondary. It drops the replication child
    and the proxy objects, then sends C(x-colo-lost-heartbeat); without this the primary would release packets
    only at colo-compare's timeout.
  - Refuses on the wrong side (for example O(lost=primary) on the primary). A second run finds nothing left to do
    and reports no change.
  - Every failover that changes something is written to the VM's failover log (C(/var/lib/colo-ft/failovers/NAME.jsonl),
    see docs/agent.md), as the colo.ft agent's are. Refuses a QEMU that the log says was fenced (its host lost
    quorum and the other host may run the guest) - such a QEMU is never resumed.
  - Resume protection afterwards with M(colo.ft.checkpoint) O(colo.ft.checkpoint#module:state=protected) and a newly
    started secondary.
author:
  - colo.ft maintainers (@colo-ft)
extends_documentation_fragment:
  - colo.ft.colo
  - colo.ft.colo.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  lost:
    description: Which side died. The module runs on the other one. V(auto) lets the VM's COLO state say.
    type: str
    choices: [auto, primary, secondary]
    default: auto
  client_bridge:
    description:
      - With O(lost=primary), the bridge the promoted secondary's tap is moved to (the clients' bridge).
      - Set to an empty string to leave the tap where it is.
    type: str
    default: br0
  isolated_bridge:
    description:
      - With O(lost=primary), the bridge the secondary's tap is expected on. A tap found on another bridge
        (neither this one nor O(client_bridge)) is refused rather than moved.
    type: str
    default: br1
  announce:
    description: With O(lost=primary), send C(announce-self) (gratuitous ARP/RARP) so switches learn the guest's new port.
    type: bool
    default: true
seealso:
  - module: colo.ft.checkpoint
  - module: colo.ft.info
"""

EXAMPLES = r"""
- name: The primary host died; take over on the secondary
  colo.ft.failover:
    name: guest1
    lost: primary
    client_bridge: br0
    isolated_bridge: br1
  delegate_to: colo-b

- name: The secondary host died; the primary carries on alone
  colo.ft.failover:
    name: guest1
    lost: secondary
  delegate_to: colo-a
"""

RETURN = r"""
actions:
  description: Steps taken; empty when nothing had to change. In check mode, the steps it would take.
  returned: always
  type: list
  elements: str
  sample: ["nbd-server-stop", "x-colo-lost-heartbeat", "ip link set colo-guest1 master br0 (was br1)", "object-del f2",
           "object-del f1", "chardev-remove red1", "chardev-remove red0", "announce-self"]
colo:
  description: COLO state after the task (see M(colo.ft.checkpoint)).
  returned: always
  type: dict
lost:
  description: The side that was lost (what O(lost=auto) decided).
  returned: always
  type: str
  sample: primary
duration_s:
  description: Seconds the failover took on the QEMU side (QMP commands and tap move).
  returned: always
  type: float
  sample: 0.06
"""

import time

from ansible_collections.colo.ft.plugins.module_utils.colo import failover, failover_log, state
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.host import bridge_of
from ansible_collections.colo.ft.plugins.module_utils.module_base import ColoModule


def run(module: ColoModule) -> dict:
    p = module.params
    spec, dummy = module.find()
    pid = module.launcher.find_pid(spec)
    client_bridge = p["client_bridge"] or None
    # Out of band: a dead secondary's streams are yanked even while QEMU's main loop waits on them.
    with module.qmp(spec, oob=True) as qmp:
        t0 = time.monotonic()
        before = state.read(qmp)

        def tap_bridge(tap: str) -> str | None:
            try:
                return bridge_of(tap)
            except ColoError as exc:
                raise ColoError(f"cannot move the guest's tap to {client_bridge}: {exc}") from None

        lost, plan = failover.plan(before, p["lost"], spec.tap_name if client_bridge else None, client_bridge,
                                   p["isolated_bridge"] or None, p["announce"], tap_bridge,
                                   failover_log.given_up(spec, pid))
        result, after = module.apply(plan, qmp, before)
        if plan.changed and not module.check_mode:
            failover_log.append(spec, failover_log.ACTION_OF_LOST[lost], f"colo.ft.failover lost={p['lost']}",
                                "colo.ft.failover", pid)
        result.update(lost=lost, duration_s=round(time.monotonic() - t0, 3), colo=after.summary())
    return result


def main() -> None:
    module = ColoModule(
        argument_spec={
            "lost": {"type": "str", "default": "auto", "choices": ["auto", "primary", "secondary"]},
            "client_bridge": {"type": "str", "default": "br0"},
            "isolated_bridge": {"type": "str", "default": "br1"},
            "announce": {"type": "bool", "default": True},
        },
    )
    module.run(lambda: run(module))


if __name__ == "__main__":
    main()
