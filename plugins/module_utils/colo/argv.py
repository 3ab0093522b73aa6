"""The QEMU command line of a VM in each role (docs/qemu-colo.md, "Primary command line",
"Secondary command line"), measured with QEMU 11.1.3:

* plain:     the guest alone, unprotected (same hardware, plain disk).
* primary:   tap hn0 + filter-mirror/redirectors + colo-compare (iothread) and
             a one-child quorum `colo-disk0` over the image, so protection can
             be added at run time (drive-mirror, replication child, migrate).
* secondary: same hardware and MAC, redirector/rewriter filters fed from the
             primary's forward link, replication (secondary mode) over
             active -> hidden -> parent0, quorum `colo-disk0`, `-incoming defer`.
"""
from __future__ import annotations

from ansible_collections.colo.ft.plugins.module_utils.colo.vm import (
    CHILD_ID,
    DISK_DEVICE_ID,
    DISK_ID,
    NETDEV_ID,
    NIC_ID,
    PARENT_ID,
    VMSpec,
)


def opt(value: str) -> str:
    """Escape a value for a QEMU -option string (a comma is written twice)."""
    return str(value).replace(",", ",,")


def qemu_argv(spec: VMSpec, role: str, paused: bool = False, daemonize: bool = False,
              proxy: bool = True) -> list[str]:
    """The full QEMU argv for a role ("plain", "primary", "secondary").

    paused adds -S (boot under COLO; unreliable under TCG, see docs/qemu-colo.md,
    "Starting paused under TCG").
    daemonize adds -daemonize (used where systemd is not PID 1).
    proxy=False starts a primary without the filters and colo-compare (the
    chardevs, iothread and quorum stay): measured on QEMU 11.1.3, colo-compare
    holds the guest's output until a checkpoint, so a primary started with
    them cannot answer any client before a secondary is attached. Hot-add
    primary_objects() when protecting.
    """
    # devices renders its options with opt() from here: imported when called, not at load (cycle).
    from ansible_collections.colo.ft.plugins.module_utils.colo import confine, devices  # pylint: disable=import-outside-toplevel

    spec.validate(role)
    argv = [
        spec.qemu_binary,
        "-name", f"{opt(spec.name)},debug-threads=on",
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-msg", "timestamp=on",
        "-machine", spec.machine,
        "-accel", spec.effective_accel,
    ]
    if spec.cpu:
        argv += ["-cpu", spec.cpu]
    argv += [
        "-m", str(spec.memory_mib),
        "-smp", str(spec.vcpus),
        "-qmp", f"unix:{opt(spec.qmp_path)},server=on,wait=off",
        "-qmp", f"unix:{opt(spec.agent_qmp_path)},server=on,wait=off",
        "-serial", f"file:{opt(spec.serial_path)}",
        "-pidfile", spec.pid_path,
        *confine.qemu_args(spec, daemonize),
    ]
    if spec.boot == "kernel":
        argv += ["-kernel", spec.kernel]  # type: ignore[list-item]  # validated
        if spec.initrd:
            argv += ["-initrd", spec.initrd]
        if spec.append:
            argv += ["-append", spec.append]

    # Network: a tap made and bridged beforehand (see host.tap_plumbing), no scripts.
    netdev = f"tap,id={NETDEV_ID},ifname={spec.tap_name},vhost=off,script=no,downscript=no"
    if spec.vnet_hdr:
        netdev += ",vnet_hdr=on"
    # romfile= : no PXE option ROM needed (kernel or disk boot), no ipxe package needed.
    argv += ["-netdev", netdev,
             "-device", f"{spec.nic_model},id={NIC_ID},netdev={NETDEV_ID},mac={spec.mac.lower()},romfile="]

    img = opt(spec.disk)
    if role in ("primary", "secondary"):
        for o in devices.tls_objects(spec):
            argv += ["-object", o.cli()]
    if role == "plain":
        argv += ["-drive", f"if=none,id={DISK_ID},driver={spec.disk_format},file.filename={img}"]
    elif role == "primary":
        for c in devices.primary_chardevs(spec):
            argv += ["-chardev", c.cli()]
        for o in devices.primary_objects(spec):
            if proxy or o.qom_type == "iothread":
                argv += ["-object", o.cli()]
        argv += ["-drive", f"if=none,id={DISK_ID},driver=quorum,read-pattern=fifo,vote-threshold=1,"
                           f"children.0.file.filename={img},children.0.driver={spec.disk_format}"]
    elif role == "secondary":
        for c in devices.secondary_chardevs(spec):
            argv += ["-chardev", c.cli()]
        for o in devices.secondary_objects(spec):
            argv += ["-object", o.cli()]
        argv += [
            "-drive", f"if=none,id={PARENT_ID},driver={spec.disk_format},file.filename={img}",
            "-drive", f"if=none,id={CHILD_ID},driver=replication,mode=secondary,top-id={DISK_ID},"
                      f"file.driver=qcow2,file.file.filename={opt(spec.active_path)},"
                      f"file.backing.driver=qcow2,file.backing.file.filename={opt(spec.hidden_path)},"
                      f"file.backing.backing={PARENT_ID}",
            "-drive", f"if=none,id={DISK_ID},driver=quorum,read-pattern=fifo,vote-threshold=1,children.0={CHILD_ID}",
        ]
    disk_dev = f"{spec.disk_device},id={DISK_DEVICE_ID},drive={DISK_ID}"
    if spec.boot == "disk":
        disk_dev += ",bootindex=1"
    argv += ["-device", disk_dev]
    if role == "secondary":
        argv += ["-incoming", "defer"]
    if paused:
        argv.append("-S")
    if daemonize:
        # -daemonize points stderr at /dev/null unless a log file is set (-D):
        # keep QEMU's runtime errors (chardev, COLO) in qemu.log.
        argv += ["-daemonize", "-D", spec.log_path]
    argv += spec.extra_args
    return argv


def listen_ports(spec: VMSpec, role: str) -> list[tuple[str, str, int]]:
    """(purpose, address, port) of the TCP ports QEMU listens on in this role."""
    if role == "primary":
        return [("mirror", spec.forward_addr, spec.mirror_port), ("compare", spec.forward_addr, spec.compare_port)]
    if role == "secondary":
        return [("migration", spec.checkpoint_addr, spec.migration_port), ("NBD", spec.checkpoint_addr, spec.nbd_port)]
    return []
