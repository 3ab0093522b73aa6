"""colo.ft.listen_ports: the roles' firewall takes the COLO ports from the runtime, not from a copy of its arithmetic."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.filter.listen_ports import FilterModule, listen_ports

ROLE_KEYS = ["disk_source", "ready_host", "ready_port"]
GUEST = {"name": "guest0", "mac": "52:54:00:13:01:10", "disk": "/var/lib/colo-ft/images/guest0.qcow2",
         "disk_source": "/srv/guest/disk.qcow2", "kernel": "/srv/guest/vmlinux", "ready_host": "10.213.1.10",
         "ready_port": 7000}


def ports(entries):
    return [(p["vm"], p["role"], p["purpose"], p["port"]) for p in listen_ports(entries, ROLE_KEYS)]


def test_default_ports_per_role():
    assert ports([GUEST]) == [("guest0", "primary", "mirror", 9003), ("guest0", "primary", "compare", 9004),
                              ("guest0", "secondary", "migration", 9998), ("guest0", "secondary", "NBD", 9999)]
    assert FilterModule().filters()["listen_ports"] is listen_ports


def test_port_base_and_explicit_ports():
    second = {**GUEST, "name": "guest1", "mac": "52:54:00:13:01:11", "disk": "/srv/g1.qcow2", "port_base": 10000,
              "nbd_port": 12000}
    assert ports([GUEST, second])[4:] == [("guest1", "primary", "mirror", 10000), ("guest1", "primary", "compare", 10001),
                                          ("guest1", "secondary", "migration", 10002), ("guest1", "secondary", "NBD", 12000)]


@pytest.mark.parametrize("entries, words", [
    ("guest0", "expected a list"),
    (["guest0"], "entry 1 is not a mapping"),
    ([{**GUEST, "colour": "red"}], "unknown keys colour"),
    ([{**GUEST, "port_base": 65533}], "port_base must be an integer from 1 to 65532"),
])
def test_refuses_what_the_runtime_refuses(entries, words):
    with pytest.raises(AnsibleFilterError, match=words):
        listen_ports(entries, ROLE_KEYS)
