# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of colo.ft.source_build: argument spec, overrides merged in, the BuildSpec they make."""
from __future__ import annotations

from ansible.module_utils.common.validation import (
    check_mutually_exclusive,
    check_required_by,
    check_required_one_of,
)

from ansible_collections.colo.ft.plugins.module_utils.colo.build_spec import BuildSpec, Source
from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec
from ansible_collections.colo.ft.plugins.module_utils.dict_options import validated_subset

ARGUMENT_SPEC = {
    "component": {"type": "str", "required": True},
    "git": {"type": "str"},
    "ref": {"type": "str"},
    "git_depth": {"type": "int", "default": 1},
    "tarball": {"type": "str"},
    "tarball_sha256": {"type": "str"},
    "apt_package": {"type": "str"},
    "apt_version": {"type": "str", "default": ""},
    "apt_sources": {"type": "list", "elements": "str", "default": []},
    "patches": {"type": "list", "elements": "path", "default": []},
    "configure_command": {"type": "str", "default": './configure --prefix="$PREFIX"'},
    "configure_flags": {"type": "list", "elements": "str", "default": []},
    "build_command": {"type": "str", "default": 'make -j"$JOBS"'},
    "install_command": {"type": "str", "default": "make install"},
    "prefix": {"type": "path", "default": "/usr/local"},
    "subdir": {"type": "str", "default": ""},
    "build_env": {"type": "dict", "default": {}},
    "build_user": {"type": "str", "default": "colo-build"},
    "work_dir": {"type": "path", "default": "/var/tmp/colo-ft-build"},
    "stamp_dir": {"type": "path"},
    "log_file": {"type": "path"},
    "creates": {"type": "list", "elements": "str", "default": []},
    "force": {"type": "bool", "default": False},
    "timeout": {"type": "int", "default": 14400},
    "overrides": {"type": "dict", "default": {}},
}
SOURCES = ("git", "tarball", "apt_package")
# A source given in overrides replaces these (they describe the source given directly).
SOURCE_OPTIONS = ("git", "ref", "git_depth", "tarball", "tarball_sha256", "apt_package", "apt_version", "apt_sources")
MUTUALLY_EXCLUSIVE = [SOURCES]
REQUIRED_ONE_OF = [SOURCES]
REQUIRED_BY = {"git": ("ref",), "tarball_sha256": ("tarball",)}


def apply_overrides(params: dict) -> None:
    """Merge params["overrides"] into params, then check the rules between options (after the merge,
    as a source may come from either side). InvalidSpec on a bad key, value or combination."""
    spec = {k: v for k, v in ARGUMENT_SPEC.items() if k != "overrides"}
    over = validated_subset(params.get("overrides") or {}, spec, "overrides")
    if any(over.get(k) for k in SOURCES):
        for key in SOURCE_OPTIONS:
            params[key] = ARGUMENT_SPEC[key].get("default")
    params.update(over)
    given = {k: v for k, v in params.items() if v is not None and v != ""}
    try:
        check_mutually_exclusive(MUTUALLY_EXCLUSIVE, given)
        check_required_one_of(REQUIRED_ONE_OF, given)
        check_required_by(REQUIRED_BY, given)
    except TypeError as exc:
        raise InvalidSpec(str(exc)) from None


def spec_from_params(p: dict) -> BuildSpec:
    source = Source(
        git=p["git"] or "", ref=p["ref"] or "", git_depth=p["git_depth"],
        tarball=p["tarball"] or "", tarball_sha256=p["tarball_sha256"] or "",
        apt_package=p["apt_package"] or "", apt_version=p["apt_version"] or "",
        apt_sources=tuple(p["apt_sources"] or ()),
    )
    return BuildSpec(
        component=p["component"], source=source, prefix=p["prefix"], patches=tuple(p["patches"] or ()),
        configure_command=p["configure_command"] or "", configure_flags=tuple(p["configure_flags"] or ()),
        build_command=p["build_command"] or "", install_command=p["install_command"] or "",
        environment={str(k): str(v) for k, v in (p["build_env"] or {}).items()}, subdir=p["subdir"] or "",
        build_user=p["build_user"], work_dir=p["work_dir"], stamp_dir=p["stamp_dir"] or "",
        log_file=p["log_file"] or "", creates=tuple(p["creates"] or ()), timeout=float(p["timeout"]),
    )
