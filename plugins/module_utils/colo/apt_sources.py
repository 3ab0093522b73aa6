"""The Debian mirror a machine's apt sources already use: colo.ft takes its backports (and the lab its images)
from there instead of a hard-coded address.

Pure standard library, no Ansible: the lab tool (lab/colo_lab/image.py) loads this file by its path too.
"""
from __future__ import annotations

import glob
import os

SOURCES = ("sources.list", "sources.list.d/*.list", "sources.list.d/*.sources")


def read(etc_apt: str = "/etc/apt") -> dict[str, str]:
    """The text of every apt source file under etc_apt, by path (one-line .list files and deb822 .sources)."""
    out = {}
    for pattern in SOURCES:
        for path in sorted(glob.glob(os.path.join(etc_apt, pattern))):
            with open(path, encoding="utf-8", errors="replace") as f:
                out[path] = f.read()
    return out


def entries(path: str, text: str) -> list[tuple[str, str]]:
    """(URI, suite) of each enabled binary source ("deb") in one file."""
    if path.endswith(".sources"):
        return _deb822(text)
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] != ["deb"]:
            continue
        if len(words) > 1 and words[1].startswith("["):  # options: [arch=amd64 signed-by=...]
            close = next((i for i, word in enumerate(words) if word.endswith("]")), None)
            if close is None:
                continue  # options never closed: apt refuses the line too
            words = words[:1] + words[close + 1:]
        if len(words) >= 3:
            out.append((words[1], words[2]))
    return out


def _deb822(text: str) -> list[tuple[str, str]]:
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:  # a folded field goes on
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        out += [(uri, suite) for uri in fields.get("uris", "").split() for suite in fields.get("suites", "").split()]
    return out


def mirror(files: dict[str, str], release: str) -> str | None:
    """The URI of the first binary source for `release` (a codename such as trixie; its -security or -updates
    suites live on other mirrors or come second), without a trailing slash; None when no source serves it."""
    for path, text in files.items():
        for uri, suite in entries(path, text):
            if suite == release:
                return uri.rstrip("/")
    return None
