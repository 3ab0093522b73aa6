"""The mirror of a machine's apt sources (pure logic; the lab's test_bad_input runs it on a host)."""
from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.colo.ft.plugins.filter.apt_mirror import apt_mirror
from ansible_collections.colo.ft.plugins.module_utils.colo.apt_sources import entries, mirror, read

DEB822 = """Types: deb deb-src
URIs: http://mirror.example/debian/
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: trixie-security
Components: main
"""


def test_one_line_sources_with_options_and_comments():
    text = ("# deb http://old.example/debian trixie main\n"
            "deb-src http://src.example/debian trixie main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian trixie main  # the main one\n"
            "deb [trusted=yes] file:/srv/colo-lab/apt ./\n"
            "deb [arch=amd64 http://broken.example/debian trixie main\n")
    assert entries("/etc/apt/sources.list", text) == [("http://mirror.example/debian", "trixie"),
                                                      ("file:/srv/colo-lab/apt", "./")]


def test_deb822_stanzas_and_disabled_ones():
    assert entries("/etc/apt/sources.list.d/debian.sources", DEB822) == [
        ("http://mirror.example/debian/", "trixie"), ("http://mirror.example/debian/", "trixie-updates"),
        ("http://security.example/debian-security", "trixie-security")]
    assert entries("x.sources", "Enabled: no\n" + DEB822.split("\n\n", maxsplit=1)[0]) == []


def test_the_release_picks_the_mirror_and_no_source_gives_none():
    files = {"/etc/apt/sources.list": "deb [trusted=yes] file:/srv/colo-lab/apt ./\n",
             "/etc/apt/sources.list.d/debian.sources": DEB822}
    assert mirror(files, "trixie") == "http://mirror.example/debian"
    assert mirror(files, "bookworm") is None


def test_read_finds_the_three_kinds_of_files(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://a.example/debian trixie main\n")
    (tmp_path / "sources.list.d/b.list").write_text("")
    (tmp_path / "sources.list.d/c.sources").write_text(DEB822)
    (tmp_path / "sources.list.d/d.list.disabled").write_text("deb http://d.example/debian trixie main\n")
    assert [p.rsplit("/", 1)[1] for p in read(str(tmp_path))] == ["sources.list", "b.list", "c.sources"]


def test_the_filter_reads_slurp_results():
    slurped = [{"source": "/etc/apt/sources.list.d/debian.sources", "content": base64.b64encode(DEB822.encode())},
               {"skipped": True}]
    assert apt_mirror(slurped, "trixie") == "http://mirror.example/debian"
    assert apt_mirror(slurped, "sid") == ""
    with pytest.raises(AnsibleFilterError, match="slurp"):
        apt_mirror([{"content": "x"}], "trixie")
