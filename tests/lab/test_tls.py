"""The pair's x509 credentials as colo_host makes them (roles/colo_host/tasks/tls.yml), on the lab.

The channels' use of them is tested with real QEMU in tests/lab/runtime/test_tls_qemu.py (strangers
refused) and by test_colo.py's scenario, whose every protected state asserts `tls` on the primary.
"""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from colo_lab.config import HOSTS
from colo_lab.testing import ansible, on_host, recap

pytestmark = pytest.mark.usefixtures("lab")

PLAYBOOK = "tests/lab/playbooks/colo_host_only.yml"
TLS_DIR = "/etc/colo-ft/tls"
CA_DIR = Path.home() / ".colo-ft" / "ca" / "_".join(sorted(h.name for h in HOSTS))


def _openssl(*args: str, stdin: str = "") -> str:
    return subprocess.run(["openssl", *args], input=stdin, text=True, capture_output=True, check=True).stdout


def _cert(host: str) -> str:
    return on_host(host, f"cat {TLS_DIR}/server-cert.pem").stdout


def _fingerprints() -> dict[str, str]:
    return {h.name: _openssl("x509", "-noout", "-fingerprint", "-sha256", stdin=_cert(h.name)) for h in HOSTS}


def test_certificates_name_the_link_addresses_and_keys_stay_where_they_were_made(tmp_path):
    ansible("ansible-playbook", PLAYBOOK)
    assert stat.S_IMODE(os.stat(CA_DIR).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(CA_DIR / "ca-key.pem").st_mode) == 0o600
    for host in HOSTS:
        pem = tmp_path / f"{host.name}.pem"
        pem.write_text(_cert(host.name))
        _openssl("verify", "-CAfile", str(CA_DIR / "ca-cert.pem"), str(pem))  # signed by the pair's CA
        san = _openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(pem))
        assert f"IP Address:{host.address('eth1')}" in san and f"IP Address:{host.address('eth2')}" in san, san
        assert "TLS Web Server Authentication, TLS Web Client Authentication" in \
            _openssl("x509", "-noout", "-ext", "extendedKeyUsage", "-in", str(pem))
        modes = on_host(host.name, f"stat -c '%n %a %U' {TLS_DIR} {TLS_DIR}/server-key.pem").stdout.split("\n")
        assert modes[:2] == [f"{TLS_DIR} 700 root", f"{TLS_DIR}/server-key.pem 600 root"], modes
        # The CA's key is on the controller only.
        assert on_host(host.name, "find / -xdev -name 'ca-key.pem' 2>/dev/null", check=False).stdout.strip() == ""


def test_rotation_makes_new_certificates_and_a_rerun_changes_nothing():
    before = _fingerprints()
    rotated = recap(ansible("ansible-playbook", PLAYBOOK, "-e", "colo_host_tls_rotate=true").stdout)
    assert all(rotated[h.name]["changed"] > 0 for h in HOSTS), rotated
    after = _fingerprints()
    assert all(after[h] != before[h] for h in before), "rotation kept a certificate"
    again = recap(ansible("ansible-playbook", PLAYBOOK).stdout)
    assert all(again[h.name]["changed"] == 0 for h in HOSTS), again
    assert _fingerprints() == after
    check = recap(ansible("ansible-playbook", PLAYBOOK, "--check").stdout)
    assert all(check[h.name]["changed"] == 0 for h in HOSTS), check


def test_a_certificate_for_other_addresses_is_replaced():
    host = HOSTS[0].name
    before = _fingerprints()[host]
    # Sign the host's own key for an address it does not have: the next run must notice and replace it.
    csr = on_host(host, f"openssl req -new -key {TLS_DIR}/server-key.pem -subj /CN=wrong").stdout
    ext = CA_DIR / "wrong.ext"
    ext.write_text("subjectAltName=IP:10.99.99.99\n")
    try:
        wrong = _openssl("x509", "-req", "-CA", str(CA_DIR / "ca-cert.pem"), "-CAkey", str(CA_DIR / "ca-key.pem"),
                         "-set_serial", "7", "-days", "1", "-extfile", str(ext), stdin=csr)
    finally:
        ext.unlink()
    on_host(host, f"cat > {TLS_DIR}/server-cert.pem <<'EOF'\n{wrong}EOF")
    result = recap(ansible("ansible-playbook", PLAYBOOK, "--limit", host).stdout)
    assert result[host]["changed"] > 0
    fixed = _fingerprints()[host]
    assert fixed not in (before, _openssl("x509", "-noout", "-fingerprint", "-sha256", stdin=wrong))
    assert "10.99.99.99" not in _openssl("x509", "-noout", "-ext", "subjectAltName", stdin=_cert(host))
