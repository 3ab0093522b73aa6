"""The collection as a user gets it: the tarball of `ansible-galaxy collection build`, installed with
`ansible-galaxy collection install` into an empty collections path, holds what a user runs and nothing of the lab,
tests or benchmarks; its links resolve, its EE metadata names the controller's dependencies, and
`ansible-playbook colo.ft.site` run from that install (not from this tree) protects the guest on fresh lab hosts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from colo_lab.config import REPO
from colo_lab.testing import ansible, lab_cmd, recap, vm_info, wait_http

BIN = REPO / ".venv/bin"
# What the tarball ships from the source tree, whole (docs/lab-contract.md describes the lab, which stays here).
SHIPPED_DIRS = ("plugins/", "roles/", "playbooks/", "meta/", "docs/")
SHIPPED_FILES = {"README.md", "LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml", "changelogs/config.yaml"}
NOT_SHIPPED = ("lab/", "molecule/", "tests/", "bench/", "scripts/", ".ci/", "changelogs/fragments/",
               "docs/lab-contract.md")


def run(*argv: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, text=True, capture_output=True, env=env, cwd=cwd, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict:
    """Build the tarball and install it into an empty collections path, as a user would."""
    tmp = tmp_path_factory.mktemp("package")
    (tmp / "ansible.cfg").write_text("[defaults]\n")  # nothing of this repository's ansible.cfg
    # Only the install: not this tree (.ansible/collections, tests/run's PYTHONPATH link), not ~/.ansible.
    env = {"ANSIBLE_CONFIG": str(tmp / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(tmp / "collections"),
           "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false", "ANSIBLE_ROLES_PATH": str(tmp / "roles"), "PYTHONPATH": ""}
    shell_env = {**os.environ, **env}
    run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp), env=shell_env, cwd=REPO)
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    tarball = tmp / f"colo-ft-{version}.tar.gz"
    # --offline: Galaxy is not reachable, and the collection needs nothing from it.
    run(str(BIN / "ansible-galaxy"), "collection", "install", "--offline", str(tarball), "-p", str(tmp / "collections"),
        env=shell_env, cwd=tmp)
    with tarfile.open(tarball) as tar:
        files = {m.name for m in tar.getmembers() if m.isfile()}
    return {"tmp": tmp, "env": env, "shell_env": shell_env, "files": files,
            "root": tmp / "collections/ansible_collections/colo/ft"}


def source_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], text=True, capture_output=True,
                            cwd=REPO, check=True).stdout.split("\n")
    return {f for f in listed if f and (REPO / f).is_file()}


def test_the_tarball_holds_what_a_user_runs_and_nothing_else(package):
    files = package["files"]
    stray = sorted(f for f in files if f.startswith(NOT_SHIPPED))
    assert not stray, f"the tarball ships files of the lab, tests or tooling: {stray[:20]}"
    source = source_files()
    wanted = {f for f in source if f.startswith(SHIPPED_DIRS) and not f.startswith(NOT_SHIPPED)} | SHIPPED_FILES
    assert files == wanted | {"MANIFEST.json", "FILES.json"}, (
        f"missing: {sorted(wanted - files)}; unexpected: {sorted(files - wanted - {'MANIFEST.json', 'FILES.json'})}")
    modules = {Path(f).stem for f in source if re.fullmatch(r"plugins/modules/\w+\.py", f)}
    roles = {f.split("/")[1] for f in source if f.startswith("roles/")}
    assert modules and {f"plugins/modules/{m}.py" for m in modules} <= files
    assert roles and {f"roles/{r}/tasks/main.yml" for r in roles} <= files
    manifest = json.loads((package["root"] / "MANIFEST.json").read_text())["collection_info"]
    assert manifest["dependencies"] == {}, "a dependency would need Galaxy, which a user may not reach"
    metadata = ("repository", "homepage", "issues", "documentation", "authors")
    assert not any("example" in str(manifest.get(key) or "") for key in metadata), "placeholder metadata"


def test_links_in_the_shipped_docs_resolve_in_the_install(package):
    root = package["root"]
    broken = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            path = target.split("#", 1)[0]
            if path and not re.match(r"[a-z]+:", path) and not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(root)} -> {target}")
    assert not broken, f"links to files the tarball does not ship: {broken}"


def test_ansible_builder_finds_the_controller_dependencies(package):
    found = run(str(BIN / "ansible-builder"), "introspect", "--sanitize", str(package["tmp"] / "collections"),
                env=package["shell_env"], cwd=package["tmp"]).stdout
    deps = yaml.safe_load(found)
    assert any(line.startswith("netaddr") for line in deps["python"]), deps
    assert any(line.startswith("openssl") for line in deps["system"]), deps


def test_site_from_the_installed_collection_protects_the_guest(lab, package):
    listed = json.loads(run(str(BIN / "ansible-galaxy"), "collection", "list", "colo.ft", "--format", "json",
                            env=package["shell_env"], cwd=package["tmp"]).stdout)
    assert list(listed) == [str(package["tmp"] / "collections/ansible_collections")], listed
    # Bare hosts, as a user starts: whatever the tests before left on the lab is gone.
    lab_cmd("down")
    lab_cmd("up")
    result = ansible("ansible-playbook", "colo.ft.site", env=package["env"])
    counts = recap(result.stdout)
    assert set(counts) == {"colo-a", "colo-b", "colo-arbiter"} and all(c["failed"] == 0 for c in counts.values()), counts
    wait_http()
    vms = vm_info(sample_seconds=4, env=package["env"])
    assert vms["colo-a"]["guest0"]["mode"] == "primary", vms
    assert vms["colo-b"]["guest0"]["mode"] == "secondary", vms
    assert vms["colo-a"]["guest0"]["replication"] == "attached", vms
    assert vms["colo-a"]["guest0"]["checkpoints"] > 0, "no checkpoint in 4 s"
