"""The COLO channels refuse strangers (real QEMU, TLS as the roles set it up).

A stranger is anyone without a certificate of the pair's CA: no certificate at all,
or one from another CA. Each refusal has its control: the same attempt with the
pair's certificate gets through, so a broken setup (no TLS at all) fails these tests.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from colo_env import CLIENT_BRIDGE, ISOLATED_BRIDGE, Env, connect, http_get  # noqa: E402
from test_colo_sequences import WHY_NOT  # noqa: E402

from colo_lab import x509  # noqa: E402

from ansible_collections.colo.ft.plugins.module_utils.colo import checkpoint, replication  # noqa: E402
from ansible_collections.colo.ft.plugins.module_utils.colo.devices import TLS_CLIENT, TLS_SERVER  # noqa: E402
from ansible_collections.colo.ft.plugins.module_utils.colo.stats import sample_checkpoints  # noqa: E402

pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


@pytest.fixture(scope="module")
def stranger(env):
    """x509 files of another CA, for the same addresses."""
    if not env.tls:
        pytest.skip("COLO_RT_TLS=0: nothing to refuse")
    ca = os.path.join(env.work, "stranger-ca")
    x509.make_ca(ca, "a stranger's CA")
    return x509.make_host_dir(ca, os.path.join(env.work, "stranger"), "stranger",
                              sorted({env.forward, env.checkpoint}))


def _nbd_info(env, spec, tls_dir: str | None) -> subprocess.CompletedProcess[str]:
    """qemu-img info on the secondary's export, as a client with tls_dir's certificate (None: cleartext)."""
    node = {"driver": "nbd", "server": {"type": "inet", "host": env.checkpoint, "port": str(spec.nbd_port)},
            "export": replication.EXPORT}
    argv = ["qemu-img", "info", "-U"]  # -U: no lock wanted, the export is in use
    if tls_dir:
        node["tls-creds"] = "t0"
        argv += ["--object", f"tls-creds-x509,id=t0,endpoint=client,dir={tls_dir}"]
    return subprocess.run([*argv, "json:" + json.dumps(node)], capture_output=True, text=True, timeout=30, check=False)


def _knock(env: Env, spec) -> None:
    """Client->guest traffic with a marker (colo-compare holds the answers until a secondary joins)."""
    if not (env.net and env.has_guest(spec)):
        return
    for _attempt in range(3):
        try:
            http_get("/?secret-marker", timeout=1)
        except (OSError, RuntimeError):
            pass


def _tls_accepted(host: str, port: int, tls_dir: str, cert: bool) -> bool:
    """Does the server keep a TLS client that trusts tls_dir's CA (with its certificate if cert)?

    TLS 1.3 refuses a client certificate after the client's handshake ends: a refusal shows
    as an alert or EOF at the first read; an accepted client just waits (nothing to read).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(tls_dir, "ca-cert.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(tls_dir, "server-cert.pem"), os.path.join(tls_dir, "server-key.pem"))
    try:
        with ctx.wrap_socket(socket.create_connection((host, port), timeout=5)) as c:
            c.settimeout(1.0)
            try:
                return c.recv(1) != b""
            except TimeoutError:
                return True
    except (ssl.SSLError, ConnectionError):
        return False


def _reads_nothing(sock: socket.socket, seconds: float) -> bytes:
    """What a cleartext stranger reads in `seconds` (the guest's traffic would show here)."""
    sock.settimeout(0.2)
    got = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    return got


def test_mirror0_gives_strangers_nothing(env, vms, stranger):
    """mirror0 (the primary's copy of all client->guest traffic), with no secondary holding it: a cleartext
    reader gets nothing while a client talks to the guest, a TLS client without a certificate or with
    another CA's is refused; with the pair's certificate the handshake works."""
    p = env.spec("rtsm", CLIENT_BRIDGE)
    vms.append(p)
    env.start(p, "primary")
    own = p.tls_dir
    if env.has_guest(p):
        env.wait_guest_ready(p)
    plain = socket.create_connection((env.forward, p.mirror_port), timeout=5)
    talk = threading.Thread(target=_knock, args=(env, p))
    talk.start()
    leaked = _reads_nothing(plain, 3.0)
    talk.join()
    plain.close()
    assert b"secret-marker" not in leaked and not leaked, f"mirror0 gave a cleartext stranger {leaked[:80]!r}"
    assert not _tls_accepted(env.forward, p.mirror_port, stranger, cert=True), "mirror0 took another CA's client"
    assert not _tls_accepted(env.forward, p.mirror_port, own, cert=False), "mirror0 took a client without certificate"
    assert _tls_accepted(env.forward, p.mirror_port, own, cert=True), "control: the pair's certificate is refused"


def test_nbd_and_migration_refuse_strangers_and_the_pair_protects(env, vms, stranger):
    p = env.spec("rtsp", CLIENT_BRIDGE)
    s = env.spec("rtss", ISOLATED_BRIDGE)
    vms += [p, s]
    # As _pair() in test_colo_sequences: the secondary starts with the primary, before the guest boots.
    env.start(p, "primary")
    env.start(s, "secondary")
    own = s.tls_dir
    if env.has_guest(p):
        env.wait_guest_ready(p)
    sq = connect(s)
    checkpoint.prepare_secondary(sq, env.checkpoint, s.nbd_port, s.migration_port)
    assert sq.execute("query-migrate-parameters")["tls-creds"] == TLS_SERVER

    # The NBD export (the disk the guest runs on after a failover): no certificate, another CA: refused.
    for tls_dir in (None, stranger):
        out = _nbd_info(env, s, tls_dir)
        assert out.returncode != 0, f"NBD export open to a stranger ({tls_dir}): {out.stdout}"
    out = _nbd_info(env, s, own)
    assert out.returncode == 0, f"control: the pair's certificate should open the export: {out.stderr}"

    # A rogue migration stream (a cleartext QEMU) is refused and the real primary still gets in.
    rogue = env.spec("rtsr", None, firmware_only=True)
    rogue.tls_dir = None
    vms.append(rogue)
    env.start(rogue, "plain")
    rq = connect(rogue)
    rq.execute("migrate", {"uri": f"tcp:{env.checkpoint}:{s.migration_port}"})
    end = time.monotonic() + 30
    while rq.execute("query-migrate").get("status") not in ("failed", "cancelled", "completed"):
        assert time.monotonic() < end, "the rogue migration neither failed nor completed"
        time.sleep(0.1)
    assert rq.execute("query-migrate")["status"] == "failed"
    assert sq.execute("query-status")["status"] == "inmigrate", "the secondary left inmigrate after a rogue stream"

    pq = connect(p)
    res = checkpoint.protect(pq, sq, env.checkpoint, s.nbd_port, s.migration_port, timeout=300)
    assert pq.execute("query-migrate-parameters")["tls-creds"] == TLS_CLIENT
    assert any("nbd+tls://" in a for a in res.actions), res.actions
    assert pq.execute("query-colo-status")["mode"] == "primary"
    assert sq.execute("query-colo-status")["mode"] == "secondary"
    # COLO runs over the TLS channels: checkpoints complete (a STOP/RESUME pair each on the primary). The guest's
    # service through the protected pair is checked end to end by test_colo_sequences (also TLS) and the lab.
    stats = sample_checkpoints(pq, 6.0)
    assert stats.count >= 1, f"no checkpoint in 6 s over TLS: {stats.to_dict()}"
