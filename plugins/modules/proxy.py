#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: proxy
short_description: QEMU's COLO network proxy objects of a running VM
version_added: 0.2.0
description:
  - For users who drive the COLO steps themselves; M(colo.ft.vm) starts a primary or secondary with its proxy, and
    M(colo.ft.checkpoint) and M(colo.ft.failover) add and remove it as needed.
  - On the primary side the proxy is C(filter-mirror) C(m0), the redirectors C(redire0)/C(redire1), C(iothread1) and
    C(colo-compare) C(comp0) with their chardevs (C(mirror0) and C(compare1) listen on the forward-link address).
    On the secondary side it is the redirectors C(f1)/C(f2) with chardevs C(red0)/C(red1) connecting to the
    primary's forward-link address (the rewriter C(rew0) is left alone).
  - V(present) hot-adds what is missing (on a VM that carries C(rew0), before it); V(absent) removes what is there.
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
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  side:
    description:
      - Which side's proxy. Default is the role the VM was started in (V(plain) is refused).
      - A promoted former secondary that becomes primary needs V(primary).
    type: str
    choices: [primary, secondary]
  forward_address:
    description: The primary's forward-link address; default the recorded O(colo.ft.vm#module:forward_address).
    type: str
  with_chardevs:
    description:
      - With V(absent) and O(side=primary), remove the chardevs too. They are kept by default, a later re-protection
        reuses them.
    type: bool
    default: false
seealso:
  - module: colo.ft.checkpoint
  - module: colo.ft.replication
"""

EXAMPLES = r"""
- name: Proxy of a promoted former secondary that becomes primary again
  colo.ft.proxy:
    name: guest1
    side: primary
    forward_address: 10.213.2.12
    compare_timeout: 3000

- name: Remove the primary's proxy
  colo.ft.proxy:
    name: guest1
    state: absent
"""

RETURN = r"""
actions:
  description: QMP steps taken; empty when nothing had to change. In check mode, the steps it would take.
  returned: always
  type: list
  elements: str
  sample: ["chardev-add mirror0", "object-add filter-mirror m0 before rew0"]
objects:
  description: COLO proxy objects present after the task (id to QOM type).
  returned: always
  type: dict
  sample: {"m0": "filter-mirror", "comp0": "colo-compare"}
"""

from ansible_collections.colo.ft.plugins.module_utils.colo import proxy, state
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import PROXY_QOM_TYPES
from ansible_collections.colo.ft.plugins.module_utils.module_base import (
    COMPARE_ARGS,
    ColoModule,
    settings_overrides,
)
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import with_overrides


def run(module: ColoModule) -> dict:
    p = module.params
    spec, record = module.find()
    spec = with_overrides(spec, forward_addr=p["forward_address"], **settings_overrides(p))
    with module.qmp(spec) as qmp:
        before = state.read(qmp)
        plan = proxy.plan(before, spec, p["side"] or record.get("role"), p["state"] == "present", p["with_chardevs"])
        result, after = module.apply(plan, qmp, before)
        result["objects"] = {k: v for k, v in after.objects.items() if v in PROXY_QOM_TYPES}
    return result


def main() -> None:
    module = ColoModule(
        argument_spec={
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "side": {"type": "str", "choices": ["primary", "secondary"]},
            "forward_address": {"type": "str"},
            "with_chardevs": {"type": "bool", "default": False},
            **COMPARE_ARGS,
        },
    )
    module.run(lambda: run(module))


if __name__ == "__main__":
    main()
