"""The playbooks and roles as written: root where they act on hosts, a failed host stops the pair, and the
one QEMU-version override reaches every module that checks the version."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml"))
# Modules that need no root on the host: the failover probe uses only these (a dead host is expected there).
NO_ROOT = {"ansible.builtin.ping", "ansible.builtin.group_by", "ansible.builtin.set_fact", "ansible.builtin.assert"}
# A failure on one host of these must stop the other (the secondary must be ready before the primary protects).
ALL_OR_NOTHING = {"site.yml", "reprotect.yml"}


def tasks_of(items):
    for task in items or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from tasks_of(task.get(key))


def module_of(task: dict) -> str:
    skip = {"name", "vars", "when", "loop", "loop_control", "register", "changed_when", "failed_when", "check_mode",
            "ignore_unreachable", "ignore_errors", "delegate_to", "become", "tags", "no_log", "block", "rescue",
            "always", "environment", "args", "notify", "until", "retries", "delay", "run_once"}
    keys = [k for k in task if k not in skip]
    return keys[0] if keys else ""


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_plays_on_the_hosts_become_root(path):
    for play in yaml.safe_load(path.read_text()):
        if play["hosts"] == "localhost":
            continue
        modules = {module_of(t) for t in tasks_of(play.get("tasks"))} | ({"role"} if play.get("roles") else set())
        if modules <= NO_ROOT:
            continue
        assert play.get("become") is True, f"{path.name}: play {play['name']!r} runs {sorted(modules)} without become"


@pytest.mark.parametrize("name", sorted(ALL_OR_NOTHING))
def test_a_failed_host_stops_the_pair(name):
    for play in yaml.safe_load((ROOT / "playbooks" / name).read_text()):
        if play["hosts"] != "localhost":
            assert play.get("any_errors_fatal") is True, f"{name}: play {play['name']!r} lacks any_errors_fatal"


def test_the_qemu_override_reaches_every_version_check():
    """colo.ft.vm (starting a VM) and colo.ft.checkpoint both run the QEMU guard: the roles pass the override."""
    checked = 0
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        for task in tasks_of(yaml.safe_load(path.read_text())):
            module = module_of(task)
            args = task.get(module) or {}
            if module == "colo.ft.vm" and args.get("state", "started") != "stopped" or module == "colo.ft.checkpoint":
                checked += 1
                role = path.parts[-3]
                assert args.get("allow_unsupported_qemu") == f"{{{{ {role}_allow_unsupported_qemu | bool }}}}", \
                    f"{path.relative_to(ROOT)}: {task['name']!r} does not pass allow_unsupported_qemu"
    assert checked == 4
    for role in ("colo_primary", "colo_secondary"):
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults/main.yml").read_text())
        assert "colo_host_allow_unsupported_qemu" in defaults[f"{role}_allow_unsupported_qemu"]
