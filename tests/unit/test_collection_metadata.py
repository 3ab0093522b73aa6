"""The collection's metadata agrees with its content: the changelog lists every module, plugin and role as new in
the release its version_added names, the action group holds every module, and there is a sanity ignore file
for every supported ansible-core. (The built tarball itself: tests/lab/test_package.py.)"""
from __future__ import annotations

import ast
from pathlib import Path

import ansible.release
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1].parent
RELEASES = yaml.safe_load((ROOT / "changelogs/changelog.yaml").read_text())["releases"] or {}
RUNTIME = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())
MODULES = sorted(p.stem for p in (ROOT / "plugins/modules").glob("*.py") if p.stem != "__init__")
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())


def documentation(path: Path) -> dict | None:
    """A plugin's DOCUMENTATION (a .py's constant or a .yml's key), or None for a file without it."""
    if path.suffix == ".yml":
        return yaml.safe_load(path.read_text()).get("DOCUMENTATION")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            return yaml.safe_load(node.value.value)
    return None


def documented() -> list[tuple[str, str, str]]:
    """(changelog section, name, version_added) for every module, filter and test plugin, and role."""
    found = [("modules", name, documentation(ROOT / f"plugins/modules/{name}.py")["version_added"])
             for name in MODULES]
    for kind in ("filter", "test"):
        for path in sorted((ROOT / "plugins" / kind).glob("*.*")):
            doc = documentation(path)
            if doc:
                found.append((f"plugins/{kind}", doc["name"], doc["version_added"]))
    for role in ROLES:
        specs = yaml.safe_load((ROOT / f"roles/{role}/meta/argument_specs.yml").read_text())["argument_specs"]
        found.append(("objects/role", role, specs["main"]["version_added"]))
    return found


def listed_as_new(release: dict, section: str) -> set[str]:
    entries = release
    for key in section.split("/"):
        entries = (entries or {}).get(key) or {}
    return {entry["name"] for entry in entries or []}


@pytest.mark.parametrize(("section", "name", "version_added"), documented(), ids=str)
def test_the_changelog_lists_it_as_new_in_its_version_added(section, name, version_added):
    assert str(version_added) in RELEASES, (
        f"{name} says version_added {version_added}, which the changelog has no release of; after adding plugins "
        "or fragments, rerun the release (scripts/release)")
    assert name in listed_as_new(RELEASES[str(version_added)], section), (
        f"{name} (version_added {version_added}) is not new in {version_added} in changelogs/changelog.yaml; "
        "rerun scripts/release")
    elsewhere = [v for v, release in RELEASES.items() if v != str(version_added) and name in listed_as_new(release, section)]
    assert not elsewhere, f"{name} is also listed as new in {elsewhere}"


def test_the_action_group_holds_every_module():
    assert sorted(RUNTIME["action_groups"]["colo"]) == MODULES


def test_the_qemu_group_holds_the_modules_with_state_root():
    # state_root (and name) come with the doc fragment colo.ft.colo.
    with_state_root = [name for name in MODULES if "colo.ft.colo" in
                       (documentation(ROOT / f"plugins/modules/{name}.py").get("extends_documentation_fragment") or [])]
    assert sorted(RUNTIME["action_groups"]["qemu"]) == with_state_root


def test_a_sanity_ignore_file_per_supported_ansible_core():
    oldest = tuple(int(x) for x in RUNTIME["requires_ansible"].lstrip(">=").split(".")[:2])
    newest = tuple(int(x) for x in ansible.release.__version__.split(".")[:2])
    wanted = {f"ignore-2.{minor}.txt" for minor in range(oldest[1], newest[1] + 1)}
    present = {p.name for p in (ROOT / "tests/sanity").glob("ignore-*.txt")}
    assert wanted <= present, f"missing {sorted(wanted - present)}"
