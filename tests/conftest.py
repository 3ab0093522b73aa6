"""Make `ansible_collections.colo.ft` importable when pytest runs from a plain checkout.

ansible-test sets this up itself; plain `pytest` (CI, lab hosts) does not, so we
point a throw-away ansible_collections/colo/ft symlink at the repository root.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

_REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def _ensure_collection_importable() -> None:
    try:
        if importlib.util.find_spec("ansible_collections.colo.ft.plugins.module_utils.colo") is not None:
            return
    except ModuleNotFoundError:
        pass
    root = os.path.join(tempfile.gettempdir(), f"colo-ft-collections-{os.getuid()}")
    link = os.path.join(root, "ansible_collections", "colo", "ft")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.realpath(link) != _REPO:
        tmp = f"{link}.{os.getpid()}"
        os.symlink(_REPO, tmp)
        os.replace(tmp, link)
    sys.path.insert(0, root)
    for mod in [m for m in sys.modules if m == "ansible_collections" or m.startswith("ansible_collections.")]:
        del sys.modules[mod]


_ensure_collection_importable()
