"""Throw-away x509 files for tests: a CA and host certificates in QEMU's tls-creds-x509 layout.

The roles make the real ones (roles/colo_host/tasks/tls*.yml); tests that start QEMU
without the roles (the runtime tests in a chroot) and the strangers of the security
tests (a certificate from another CA) use these. Needs the openssl command.
"""
from __future__ import annotations

import os
import subprocess
import tempfile

EXT = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName={san}
"""


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(ca_dir: str, name: str = "colo.ft test CA") -> None:
    """ca-key.pem and ca-cert.pem in ca_dir (kept if there)."""
    os.makedirs(ca_dir, mode=0o700, exist_ok=True)
    if os.path.exists(os.path.join(ca_dir, "ca-cert.pem")):
        return
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
             "-keyout", os.path.join(ca_dir, "ca-key.pem"), "-out", os.path.join(ca_dir, "ca-cert.pem"),
             "-days", "30", "-subj", f"/O=colo.ft/CN={name}")


def make_host_dir(ca_dir: str, out_dir: str, cn: str, ips: list[str]) -> str:
    """out_dir with ca-cert.pem and one key + certificate (for both ends) naming the ips; returns out_dir."""
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    key = os.path.join(out_dir, "server-key.pem")
    cert = os.path.join(out_dir, "server-cert.pem")
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = os.path.join(tmp, "host.csr"), os.path.join(tmp, "host.ext")
        with open(ext, "w", encoding="utf-8") as f:
            f.write(EXT.format(san=",".join(f"IP:{ip}" for ip in ips)))
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                 "-keyout", key, "-out", csr, "-subj", f"/O=colo.ft/CN={cn}")
        _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(ca_dir, "ca-cert.pem"),
                 "-CAkey", os.path.join(ca_dir, "ca-key.pem"), "-CAcreateserial", "-days", "30",
                 "-extfile", ext, "-out", cert)
    with open(os.path.join(ca_dir, "ca-cert.pem"), encoding="utf-8") as src, \
            open(os.path.join(out_dir, "ca-cert.pem"), "w", encoding="utf-8") as dst:
        dst.write(src.read())
    for end in ("client-key.pem", "client-cert.pem"):
        target = os.path.join(out_dir, end)
        if not os.path.lexists(target):
            os.symlink(end.replace("client", "server"), target)
    return out_dir
