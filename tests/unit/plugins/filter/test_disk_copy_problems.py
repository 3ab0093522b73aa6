"""colo.ft.disk_copy_problems: the colo_secondary role asks the runtime whether an image can take the resync."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.filter.disk_copy_problems import FilterModule, disk_copy_problems

VM = {"name": "guest0", "disk": "/var/lib/colo-ft/images/guest0.qcow2", "mac": "52:54:00:13:01:10",
      "disk_source": "/srv/guest/disk.qcow2", "ready_port": 7000}
QCOW2 = {"format": "qcow2", "virtual-size": 64 * 2**20}


def test_the_filter_is_the_runtime_rule_with_the_vm_default_format():
    assert FilterModule().filters()["disk_copy_problems"] is disk_copy_problems
    assert disk_copy_problems(QCOW2, None, VM) == []  # no disk_format: VMSpec's default, qcow2
    assert disk_copy_problems(QCOW2, dict(QCOW2), VM) == []
    bigger = dict(QCOW2, **{"virtual-size": 2**30})
    assert "guest0: the secondary's image /var/lib/colo-ft/images/guest0.qcow2 has a virtual size of 1073741824" in \
        disk_copy_problems(QCOW2, bigger, VM)[0]
    assert "disk_format: qcow2" in disk_copy_problems(QCOW2, None, dict(VM, disk_format="raw"))[0]


@pytest.mark.parametrize("args", [("{}", None, VM), (QCOW2, "none", VM), (QCOW2, None, {"name": "x"}),
                                  (QCOW2, None, None)])
def test_wrong_arguments_are_an_error(args):
    with pytest.raises(AnsibleFilterError):
        disk_copy_problems(*args)
