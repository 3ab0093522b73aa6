"""playbooks/failover.yml with colo_backend=xen: the Xen tools' commands on each side.

The lab hosts have no hypervisor, so `xl` is a stand-in (tests/lab/files/fake_xl.py) that keeps a domain
list and logs every call; the playbook, the roles' xen_failover.yml and colo.ft.xen_colo run for real.
Both hosts answer, so colo_failover_dead names the host given up: it is fenced (its domains destroyed)
and the other takes over. The QEMU pair of the other lab tests is not touched.
"""
from __future__ import annotations

import json
import shlex

import pytest
from colo_lab.testing import ansible, on_host, recap

pytestmark = pytest.mark.usefixtures("lab")

VM = "guest0"  # the lab inventory's colo_vms entry
XL = "/usr/local/sbin/xl"
DIR = "/var/lib/colo-ft-fake-xl"
with open(__file__.rsplit("/", 1)[0] + "/files/fake_xl.py", encoding="utf-8") as _f:
    FAKE_XL = "#!/usr/bin/python3\n" + _f.read()


def set_domains(host: str, domains: dict) -> None:
    on_host(host, f"mkdir -p {DIR} && : > {DIR}/calls && echo {shlex.quote(json.dumps(domains))} > {DIR}/domains.json")


def domains(host: str) -> dict:
    return json.loads(on_host(host, f"cat {DIR}/domains.json").stdout)


def calls(host: str) -> list[str]:
    """The xl commands that changed something (xl list only reads)."""
    return [c for c in on_host(host, f"cat {DIR}/calls").stdout.splitlines() if c and c != "list"]


def failover(dead: str, *extra: str, check: bool = True):
    return ansible("ansible-playbook", "playbooks/failover.yml", "-e", "colo_backend=xen",
                   "-e", f"colo_failover_dead={dead}", *extra, check=check)


@pytest.fixture
def fake_xl():
    for host in ("colo-a", "colo-b"):
        on_host(host, f"test ! -e {XL} && cat > {XL} <<'EOF'\n{FAKE_XL}EOF\nchmod 0755 {XL}")
    yield
    for host in ("colo-a", "colo-b"):
        on_host(host, f"rm -rf {XL} {DIR}", check=False)


def test_primary_given_up_secondary_takes_over(fake_xl):
    set_domains("colo-a", {VM: "-b----"})
    set_domains("colo-b", {VM + "--incoming": "--p---"})

    counts = recap(failover("colo-a", "--check").stdout)
    assert counts["colo-a"]["changed"] == 1 and counts["colo-b"]["changed"] == 1, counts
    assert calls("colo-a") == [] and calls("colo-b") == []  # check mode ran nothing

    counts = recap(failover("colo-a").stdout)
    assert calls("colo-a") == [f"destroy {VM}"]
    assert calls("colo-b") == [f"rename {VM}--incoming {VM}", f"unpause {VM}"]
    assert domains("colo-a") == {} and domains("colo-b") == {VM: "-b----"}
    assert counts["colo-a"]["changed"] == 1 and counts["colo-b"]["changed"] == 1, counts

    counts = recap(failover("colo-a").stdout)  # again: nothing left to do
    assert counts["colo-a"]["changed"] == 0 and counts["colo-b"]["changed"] == 0, counts
    assert len(calls("colo-b")) == 2


def test_secondary_given_up_primary_runs_alone(fake_xl):
    set_domains("colo-a", {VM: "--p---"})
    set_domains("colo-b", {VM + "--incoming": "--p---"})
    failover("colo-b")
    assert calls("colo-b") == [f"destroy {VM}--incoming"]
    assert calls("colo-a") == [f"unpause {VM}"]
    assert domains("colo-a") == {VM: "-b----"} and domains("colo-b") == {}


def test_a_survivor_without_the_guest_stops_before_anything_is_fenced(fake_xl):
    set_domains("colo-a", {VM: "-b----"})
    set_domains("colo-b", {})
    out = failover("colo-a", check=False)
    assert out.returncode != 0
    assert f"no domain {VM} or {VM}--incoming on this host" in out.stdout, out.stdout[-3000:]
    assert calls("colo-a") == [] and domains("colo-a") == {VM: "-b----"}  # nothing fenced
