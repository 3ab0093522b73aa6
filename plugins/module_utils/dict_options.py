# -*- coding: utf-8 -*-
# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module options handed over as one dict (an inventory variable), checked like the module's own.

Roles pass such dicts as one option instead of templating the whole task arguments, which
ansible-core warns about ("Using a template for task args is unsafe").
"""
from __future__ import annotations

from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec


def validated_subset(data: dict[str, Any], spec: dict[str, dict[str, Any]], label: str) -> dict[str, Any]:
    """data checked against the entries of spec it names (types converted, choices checked).

    InvalidSpec, naming label, on a key spec does not have or a bad value.
    """
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise InvalidSpec(f"{label} has unknown keys {', '.join(unknown)}; it takes {', '.join(sorted(spec))}")
    result = ArgumentSpecValidator({k: spec[k] for k in data}).validate(data)
    if result.error_messages:
        raise InvalidSpec(f"{label}: " + "; ".join(result.error_messages))
    return result.validated_parameters
