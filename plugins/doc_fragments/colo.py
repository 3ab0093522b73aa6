# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation shared by the colo.ft modules."""

from __future__ import annotations


class ModuleDocFragment:
    # Options of every colo.ft module (colo.ft.colo).
    DOCUMENTATION = r"""
options:
  name:
    description:
      - Name of the VM. It names the state directory O(state_root)/O(name), the QEMU C(-name) and
        the systemd unit C(colo-ft-<name>).
      - The same name is used for the VM on both hosts of a pair.
    type: str
    required: true
  state_root:
    description:
      - Directory holding one state directory per VM (QMP socket, pidfile, logs and C(spec.json),
        the description the VM was started with).
      - Modules other than M(colo.ft.vm) read the VM description from there, so they need only O(name).
    type: path
    default: /run/colo-ft
notes:
  - QEMU serves one QMP client at a time, so the modules keep their QMP connections short; do not keep
    another QMP client connected to the VM while they run.
  - Runtime errors (refused QEMU, invalid description, failed QMP command) fail the task with a message
    that says what went wrong and, where possible, what to do.
requirements:
  - QEMU >= 11 with COLO (the C(replication) block driver, C(colo-compare), the C(x-colo) migration capability)
    on the managed host; 11.1.3 is tested.
  - C(ip) (iproute2) on the managed host.
"""

    # The VM description (colo.ft.colo.vm_spec), used by colo.ft.vm.
    VM_SPEC = r"""
options:
  memory_mib:
    description: Guest memory in MiB.
    type: int
    default: 256
  vcpus:
    description: Number of virtual CPUs.
    type: int
    default: 1
  disk:
    description:
      - Absolute path of the guest's disk image. On the secondary it is the copy that the primary resyncs
        over NBD before protection starts.
      - Required with O(state=started).
    type: path
  disk_format:
    description: Format of O(disk).
    type: str
    choices: [qcow2, raw]
    default: qcow2
  disk_device:
    description: QEMU device model of the guest disk.
    type: str
    default: virtio-blk-pci
  mac:
    description:
      - MAC address of the guest NIC, for example V(52:54:00:13:01:10). Must be the same on both hosts.
      - Required with O(state=started).
    type: str
  nic_model:
    description: QEMU device model of the guest NIC. V(e1000) avoids the vnet header handling that virtio-net needs.
    type: str
    default: e1000
  boot:
    description: Boot a kernel image given by O(kernel) (V(kernel)), or the disk (V(disk)).
    type: str
    choices: [kernel, disk]
    default: kernel
  kernel:
    description: Absolute path of the guest kernel; required with O(boot=kernel).
    type: path
  initrd:
    description: Absolute path of the guest initrd (with O(boot=kernel)).
    type: path
  append:
    description: Kernel command line (with O(boot=kernel)).
    type: str
    default: ''
  accel:
    description:
      - Accelerator. V(auto) means TCG, because a C(/dev/kvm) can exist and still fail stock guest kernels
        (paravirtual KVM); V(kvm) must be asked for.
    type: str
    choices: [auto, kvm, tcg]
    default: auto
  machine:
    description: QEMU machine type.
    type: str
    default: pc
  cpu:
    description: QEMU CPU model (C(-cpu)); QEMU's default when unset.
    type: str
  bridge:
    description:
      - Bridge the guest's tap joins. Unset leaves the tap on no bridge.
      - On the secondary this is usually an isolated bridge; M(colo.ft.failover) moves the tap to the client bridge.
    type: str
  tap:
    description: Name of the guest's tap device; default C(colo-<name>), shortened with a hash to 15 characters.
    type: str
  forward_address:
    description:
      - The primary's address on the forward link. The primary's proxy listens there (mirror and compare ports)
        and the secondary connects to it.
      - Required for O(role=primary) and O(role=secondary).
    type: str
  checkpoint_address:
    description:
      - The secondary's address on the checkpoint link, where its NBD server and the incoming migration listen.
      - Needed by M(colo.ft.checkpoint) (it is the default of its O(colo.ft.checkpoint#module:secondary_address)).
    type: str
  port_base:
    description:
      - First of the four COLO ports; mirror is O(port_base), compare O(port_base)+1, migration O(port_base)+2,
        NBD O(port_base)+3. Unset gives QEMU's documented ports 9003, 9004, 9998, 9999.
    type: int
  mirror_port:
    description: Port of the primary's mirror chardev (overrides O(port_base)).
    type: int
  compare_port:
    description: Port of the primary's compare chardev (overrides O(port_base)).
    type: int
  migration_port:
    description: Port of the secondary's incoming migration (overrides O(port_base)).
    type: int
  nbd_port:
    description: Port of the secondary's NBD server (overrides O(port_base)).
    type: int
  active_disk:
    description:
      - Secondary only. The active overlay; default C(active.qcow2) in the VM's state directory (tmpfs under C(/run)).
      - It takes every write between two checkpoints, so keep it on tmpfs or ramfs.
    type: path
  hidden_disk:
    description: Secondary only. The hidden overlay; default C(hidden.qcow2) in the VM's state directory.
    type: path
  tls_dir:
    description:
      - Directory of this host's x509 files in QEMU's layout (C(ca-cert.pem), C(server-cert.pem), C(server-key.pem),
        C(client-cert.pem), C(client-key.pem)). Set, every COLO channel is TLS with both ends' certificates
        checked against the CA (migration, the NBD export and its clients, the proxy's mirror and compare sockets).
      - Unset, the channels are cleartext and open to anyone who reaches the ports; the roles set it
        (C(colo_tls), on by default).
    type: path
  checkpoint_delay_ms:
    description:
      - Milliseconds between periodic checkpoints (C(x-checkpoint-delay); QEMU's own default is 20000), 1 to
        3600000. A COLO setting of the VM, recorded with it on both hosts, so a re-protection after a failover
        uses it too.
      - Changing it on a running VM does not restart the VM. The record is updated (changed), and
        M(colo.ft.checkpoint) O(colo.ft.checkpoint#module:state=protected) applies it to the protected pair.
    type: int
    default: 2000
  reconnect_ms:
    description: Milliseconds between the secondary's attempts to reconnect its redirectors to the primary, 1 to 60000.
    type: int
    default: 1000
  qemu_binary:
    description: QEMU system emulator to run (name in E(PATH) or absolute path).
    type: str
    default: qemu-system-x86_64
  qemu_user:
    description:
      - System user QEMU drops root to (C(-run-with user=)) once it has opened its tap, disk and sockets; the
        user must exist (the colo_host role creates C(colo-qemu)). Unset, QEMU stays root.
      - At start the disk image and a secondary's overlays are given to this user (QEMU reopens them by name
        later), and its group may traverse the state directory; every directory above them must be searchable
        by it, or the start is refused before anything changes.
      - QEMU always runs under its seccomp sandbox (C(-sandbox on)); see the README, Confined QEMU.
    type: str
  extra_args:
    description: Extra QEMU arguments, one list element per argv element, appended to the command line.
    type: list
    elements: str
    default: []
"""

    # colo-compare tuning (colo.ft.colo.compare). With colo.ft.vm these are the VM's settings, recorded
    # with it; colo.ft.checkpoint and colo.ft.proxy take them as overrides of the recorded ones.
    COMPARE = r"""
options:
  compare_timeout:
    description:
      - Milliseconds a packet of the primary waits for its twin from the secondary before colo-compare releases it
        (QEMU's default is 3000), 1 to 600000. Applied when C(comp0) is created.
      - With M(colo.ft.vm) a setting of the VM, recorded with it; M(colo.ft.checkpoint) and M(colo.ft.proxy) use the
        recorded value unless the task sets one. Unset everywhere, QEMU's default applies.
    type: int
  expired_scan_cycle:
    description: Milliseconds between colo-compare's scans for expired packets (QEMU's default is 3000), 1 to 600000;
      recorded like O(compare_timeout).
    type: int
  max_queue_size:
    description: Packets colo-compare queues per connection (QEMU's default is 1024), 1 to 1048576; recorded like
      O(compare_timeout).
    type: int
"""

    # The input of the filters that read the roles' colo_vms (colo.ft.colo.vm_entries).
    VM_ENTRIES = r"""
options:
  _input:
    description: The VM descriptions (the roles' C(colo_vms)).
    type: list
    elements: dict
    required: true
  role_keys:
    description: Keys of an entry that the roles use themselves and do not pass to M(colo.ft.vm) (e.g. C(ready_port)).
    type: list
    elements: str
    default: []
"""

    # Module attributes (colo.ft.colo.attributes).
    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""
