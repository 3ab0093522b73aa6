"""site.yml without protection boots the test guest in colo-a; the client reaches its services."""

from __future__ import annotations

import time

import pytest
from colo_lab.config import GUEST_ADDR
from colo_lab.ledger import LedgerClient
from colo_lab.testing import ansible, client_netns, http_get, recap, vm_info, wait_http

PLAIN = ["playbooks/site.yml", "--limit", "colo-a", "-e", "colo_primary_protect=false"]


@pytest.fixture(scope="module")
def plain_guest(lab):
    ansible("ansible-playbook", *PLAIN)
    wait_http()
    yield
    ansible("ansible", "colo-a", "-m", "colo.ft.vm", "-a", "name=guest0 state=stopped")


def test_guest_answers_http(plain_guest):
    assert "colo.ft test guest" in http_get("/")
    first = http_get("/cgi-bin/uptime")
    time.sleep(1.1)
    assert http_get("/cgi-bin/uptime") != first


def test_thousand_ledger_records_are_all_read_back(plain_guest):
    texts = [f"unprotected-{i:04d}" for i in range(1000)]
    with client_netns(), LedgerClient(GUEST_ADDR, timeout=30) as ledger:
        before = ledger.get()
        seqs = ledger.put_many(texts)
        after = ledger.get()
    assert len(seqs) == 1000 and seqs == sorted(seqs) and len(set(seqs)) == 1000
    assert after[: len(before)] == before
    assert [text for _seq, text in after[len(before):]] == texts
    assert [seq for seq, _text in after[len(before):]] == seqs


def test_guest_runs_in_colo_a_only_and_unprotected(plain_guest):
    vms = vm_info()
    assert vms["colo-a"]["guest0"]["running"] and vms["colo-a"]["guest0"]["recorded_role"] == "plain"
    assert vms["colo-a"]["guest0"]["mode"] == "none"
    assert "guest0" not in vms["colo-b"]


def test_rerun_changes_nothing(plain_guest):
    result = ansible("ansible-playbook", *PLAIN)
    assert recap(result.stdout)["colo-a"]["changed"] == 0, result.stdout[-3000:]
