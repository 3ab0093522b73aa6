# Copyright: colo.ft contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja filter: the Debian mirror a host's apt sources use for its release."""

from __future__ import annotations

DOCUMENTATION = r"""
name: apt_mirror
short_description: The mirror that a host's apt sources use for its release
version_added: 0.2.0
description:
  - Reads one-line (C(.list)) and deb822 (C(.sources)) apt source files, as M(ansible.builtin.slurp) returns them,
    and gives the URI of the first enabled binary (C(deb)) source whose suite is O(release), without a trailing
    slash; an empty string when none is. C(colo_host) takes the backports source from there.
author: colo.ft contributors
positional: release
options:
  _input:
    description: M(ansible.builtin.slurp) results, one per file (C(source) the path, C(content) base64).
    type: list
    elements: dict
    required: true
  release:
    description: The release codename, e.g. C(trixie).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The mirror of the host's own release
  ansible.builtin.debug:
    msg: "{{ slurped.results | colo.ft.apt_mirror(ansible_facts['distribution_release']) }}"
"""

RETURN = r"""
_value:
  description: The mirror's URI, or an empty string.
  type: str
"""

import base64

from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.module_utils.colo.apt_sources import mirror


def apt_mirror(slurped, release) -> str:
    try:
        files = {item["source"]: base64.b64decode(item["content"]).decode("utf-8", "replace")
                 for item in slurped if "content" in item}
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"colo.ft.apt_mirror: expects ansible.builtin.slurp results: {exc}") from None
    return mirror(files, str(release)) or ""


class FilterModule:
    def filters(self):
        return {"apt_mirror": apt_mirror}
