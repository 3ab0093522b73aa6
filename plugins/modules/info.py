#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: info
short_description: QEMU's COLO support and the COLO state of the VMs on a host
version_added: 0.2.0
description:
  - Reports whether the QEMU on the host can run COLO (version policy and compiled-in features) and, for every VM
    started by M(colo.ft.vm) under O(state_root) (or only O(name)), its role and COLO mode, run state, migration
    status, replication state and, with O(sample_seconds), the checkpoints made and the guest pauses they caused.
  - Works, and reports it, when QEMU is not installed or when no VM runs.
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
  name:
    description: Report only this VM. Default is every VM found under O(state_root).
    required: false
  sample_seconds:
    description:
      - Seconds to watch each running VM's QMP events to count checkpoints (one C(STOP)/C(RESUME) pair each)
        and measure the pauses. V(0) skips the sampling (checkpoint figures are V(null)).
      - VMs are sampled in parallel.
    type: float
    default: 0
  checkpoint_causes:
    description:
      - With O(sample_seconds) (required then), also count a COLO primary's checkpoints by cause
        (RV(vms.checkpoint_causes)).
      - QEMU's colo-compare and COLO trace events are switched on for the sample (QMP C(trace-event-set-state)) and
        read back from the VM's C(qemu.log); events that were on already stay on. QEMU must have been built with
        the C(log) trace backend, as Debian's is.
    type: bool
    default: false
  qemu_binary:
    description: The QEMU binary whose version and features are reported.
    type: str
    default: qemu-system-x86_64
  probe_features:
    description:
      - Report QEMU's COLO features. They are read over QMP from a running VM, or else from a short-lived
        C(-machine none) QEMU that is started and stopped for this.
    type: bool
    default: true
seealso:
  - module: colo.ft.vm
  - module: colo.ft.checkpoint
"""

EXAMPLES = r"""
- name: COLO state of every VM on the host, checkpoints counted for 10 s
  colo.ft.info:
    sample_seconds: 10
  register: colo

- name: The primary runs COLO and checkpoints
  ansible.builtin.assert:
    that:
      - colo.vms.guest1.mode == 'primary'
      - colo.vms.guest1.migration_status == 'colo'
      - colo.vms.guest1.checkpoints > 0

- name: Why the primary checkpoints under the current load
  colo.ft.info:
    name: guest1
    sample_seconds: 20
    checkpoint_causes: true
  register: why

- name: Show the checkpoints by cause
  ansible.builtin.debug:
    var: why.vms.guest1.checkpoint_causes

- name: Refuse hosts whose QEMU cannot run COLO
  ansible.builtin.assert:
    that: colo.qemu.supported
    fail_msg: "{{ colo.qemu.reason }}"
"""

RETURN = r"""
qemu:
  description: The QEMU binary of the host.
  returned: always
  type: dict
  contains:
    binary:
      description: The binary probed.
      type: str
      sample: qemu-system-x86_64
    installed:
      description: Whether the binary was found and answered C(--version).
      type: bool
    version:
      description: Its version (with the package version), V(null) if not installed.
      type: str
      sample: 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)
    supported:
      description: Whether colo.ft would run COLO with it (version policy and, when probed, features).
      type: bool
    reason:
      description: Why it is (not) supported, in a sentence.
      type: str
      sample: QEMU 10.0.13 is known broken for COLO ...
    warnings:
      description: Allowed but worth saying (untested version).
      type: list
      elements: str
    features:
      description: COLO pieces found; V(null) when not probed (QEMU missing or O(probe_features=false)).
      type: dict
      contains:
        replication:
          description: The C(replication) block driver.
          type: bool
        colo_compare:
          description: The C(colo-compare) object.
          type: bool
        x_colo:
          description: The C(x-colo) migration capability.
          type: bool
        lost_heartbeat:
          description: The C(x-colo-lost-heartbeat) command.
          type: bool
        source:
          description: V(vm:<name>) (read from a running VM) or V(probe) (a C(-machine none) QEMU).
          type: str
vms:
  description: Per VM name, its state. Empty when no VM was started under O(state_root).
  returned: always
  type: dict
  sample:
    guest1:
      role: primary
      mode: primary
      last_mode: none
      reason: none
      running: true
      run_state: running
      migration_status: colo
      checkpoints: 7
      checkpoint_delay_ms: 2000
      pause_p50_ms: 81.2
      pause_p99_ms: 140.3
      pause_max_ms: 140.3
      replication: attached
      tls: true
      tls_dir: /etc/colo-ft/tls
      pid: 1234
  contains:
    role:
      description: V(primary)/V(secondary) while in COLO; after it V(standalone), or V(primary-unprotected) with a
        replication child but no COLO. V(null) when not running.
      type: str
    recorded_role:
      description: The role M(colo.ft.vm) started it in.
      type: str
    mode:
      description: COLO mode (C(query-colo-status)) V(none), V(primary) or V(secondary).
      type: str
    last_mode:
      description: COLO mode before the last failover.
      type: str
    reason:
      description: Why COLO ended (V(none), V(request), V(error)).
      type: str
    running:
      description: Whether its QEMU process runs.
      type: bool
    pid:
      description: PID of its QEMU.
      type: int
    run_state:
      description: QEMU's run state (C(query-status)).
      type: str
    migration_status:
      description: C(query-migrate) status, V(colo) while COLO runs.
      type: str
    checkpoints:
      description: Checkpoints seen during O(sample_seconds) (V(null) without sampling).
      type: int
    checkpoints_per_second:
      description: Checkpoints per second during the sample.
      type: float
    checkpoint_delay_ms:
      description: Milliseconds between periodic checkpoints (C(x-checkpoint-delay)) set in QEMU now.
      type: int
    checkpoint_causes:
      description:
        - With O(checkpoint_causes), on a COLO primary, why it checkpointed during the sample (V(null) otherwise).
      type: dict
      contains:
        checkpoints:
          description:
            - The sample's checkpoints by cause. Each counts for colo-compare's first request since the previous
              checkpoint began; one with none came from the timer.
            - V(periodic) the timer (C(x-checkpoint-delay)); V(tcp) a TCP segment whose payload or acknowledgement
              differs from the secondary's; V(udp), V(icmp), V(other) a packet of that protocol with no identical
              twin; V(compare_timeout) a packet that waited longer than C(compare_timeout) for its twin.
          type: dict
          sample: {"periodic": 1, "tcp": 44, "udp": 0, "icmp": 0, "other": 0, "compare_timeout": 0}
        differing_frames:
          description: Every difference colo-compare found, by protocol and frame size of the primary's packet.
          type: dict
          sample: {"tcp 270": 62, "tcp 528": 1}
        dropped_packets:
          description: Packets colo-compare dropped on a full queue (C(max_queue_size)).
          type: int
    pause_p50_ms:
      description: Median guest pause per checkpoint in ms.
      type: float
    pause_p99_ms:
      description: 99th percentile (nearest rank) of the guest pause per checkpoint in ms.
      type: float
    pause_max_ms:
      description: Longest guest pause per checkpoint in ms.
      type: float
    replication:
      description: V(attached) (primary replicates its disk), V(resyncing) (drive-mirror running),
        V(exported) (secondary serves its disk over NBD) or V(none).
      type: str
    replication_detail:
      description: Quorum children, block jobs and NBD exports.
      type: dict
    proxy_objects:
      description: COLO proxy objects present (id to QOM type).
      type: dict
    qemu_version:
      description: Version of the running QEMU.
      type: str
    tls:
      description: Whether the running QEMU holds the TLS credentials, so that its COLO channels (migration, NBD,
        the proxy's sockets) are TLS with both ends' certificates checked; V(false) means cleartext.
      type: bool
    tls_dir:
      description: The x509 directory the VM was started with (its record); V(null) without TLS.
      type: str
    last_failover:
      description: The newest entry of the VM's failover log (a take-over, release or self-fence by the colo.ft
        agent or M(colo.ft.failover)) with its C(when), C(action), C(why), C(by), C(host) and C(qemu_pid);
        V(null) if there is none.
      type: dict
    given_up:
      description: Whether the failover log says this QEMU was fenced (its host lost quorum); such a QEMU is
        never resumed.
      type: bool
    resync:
      description:
        - While the primary resyncs the secondary's disk (M(colo.ft.checkpoint) V(protected) or
          M(colo.ft.replication) V(attached) holds the VM's monitor meanwhile, so the other fields may be missing
          with an RV(vms.error)), how far the copy is - C(copied_bytes), C(total_bytes) (grows with the guest's
          writes), C(bytes_per_second), and C(started) and C(updated) (UNIX times); V(null) when no resync runs.
      type: dict
    error:
      description: Why the VM could not be queried (its other fields are then partial).
      type: str
      returned: when the query failed
agent:
  description: What the colo.ft agent of this host (role colo.ft.colo_cluster) last published - its node id,
    whether the node is quorate, the node ids in its quorum view, the agents in its CPG group, the maintenance
    switch, whether it re-protects by itself (C(auto_reprotect)) and its view of each VM; V(null) where no agent runs.
  returned: always
  type: dict
  sample:
    node: 1
    quorate: true
    nodes: [1, 2]
    agents: [1, 2]
    maintenance: false
    auto_reprotect: true
"""

import threading

from ansible_collections.colo.ft.plugins.module_utils.colo import agent, failover_log, guard, resync_progress
from ansible_collections.colo.ft.plugins.module_utils.colo import status as colo_status
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError
from ansible_collections.colo.ft.plugins.module_utils.colo.records import known_vms
from ansible_collections.colo.ft.plugins.module_utils.colo.qmp import QMPClient
from ansible_collections.colo.ft.plugins.module_utils.colo.summary import vm_entry
from ansible_collections.colo.ft.plugins.module_utils.colo.vm import VMSpec
from ansible_collections.colo.ft.plugins.module_utils.module_base import ColoModule, stub_spec


def _files(spec: VMSpec, vmstat: dict) -> dict:
    """What the VM's state directory tells besides QEMU: its failover log, a resync under way."""
    return {"last_failover": failover_log.last(spec),
            "given_up": failover_log.given_up(spec, vmstat.get("pid")) is not None,
            "resync": resync_progress.read(spec)}


def collect(module: ColoModule) -> dict:
    p = module.params
    names = [p["name"]] if p["name"] else known_vms(p["state_root"])
    vms: dict = {}
    running: list[VMSpec] = []
    threads = []
    lock = threading.Lock()

    def query(name: str, spec: VMSpec, vmstat: dict, record: dict | None) -> None:
        st, err = None, None
        try:
            with QMPClient(spec.qmp_path, timeout=10.0) as qmp:
                st = colo_status.status(qmp, float(p["sample_seconds"]),
                                        spec.log_path if p["checkpoint_causes"] else None)
        except ColoError as exc:
            err = str(exc)
        entry = vm_entry(st, vmstat, record)
        entry.update(_files(spec, vmstat))
        if err:
            entry["error"] = err
        with lock:
            vms[name] = entry

    for name in names:
        try:
            spec, record, status = module.launcher.find(name, p["state_root"])
        except ColoError:  # no (usable) record: report what runs on its state directory
            spec, record = stub_spec(name, p["state_root"]), None
            status = module.launcher.status(spec)
        vmstat = status.to_dict()
        if not vmstat["qmp"]:
            entry = vm_entry(None, vmstat, record)
            entry.update(_files(spec, vmstat))
            if vmstat["running"]:
                entry["error"] = vmstat["message"]
            vms[name] = entry
            continue
        running.append(spec)
        t = threading.Thread(target=query, args=(name, spec, vmstat, record), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    qemu = guard.qemu_report(p["qemu_binary"], p["probe_features"], running)
    vms = dict(sorted(vms.items()))
    published = agent.published()
    return {"changed": False, "qemu": qemu, "vms": vms, "agent": published}


def main() -> None:
    module = ColoModule(
        argument_spec={
            "name": {"type": "str", "required": False},
            "sample_seconds": {"type": "float", "default": 0},
            "checkpoint_causes": {"type": "bool", "default": False},
            "qemu_binary": {"type": "str", "default": "qemu-system-x86_64"},
            "probe_features": {"type": "bool", "default": True},
        },
    )
    if module.params["sample_seconds"] < 0:
        module.fail_json(msg="sample_seconds must be 0 or more")
    if module.params["checkpoint_causes"] and module.params["sample_seconds"] == 0:
        module.fail_json(msg="checkpoint_causes counts the checkpoints of a sample: set sample_seconds too")
    module.run(lambda: collect(module))


if __name__ == "__main__":
    main()
