"""colo.ft.source_build's overrides option: a dict of options merged over the direct ones."""
from __future__ import annotations

import pytest

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import InvalidSpec
from ansible_collections.colo.ft.plugins.module_utils.source_build_params import ARGUMENT_SPEC, apply_overrides


def params(**kw):
    """Parameters as AnsibleModule fills them: every option present, defaults applied."""
    p = {k: v.get("default") for k, v in ARGUMENT_SPEC.items()}
    p.update(component="iptables", git="https://example.org/iptables.git", ref="master")
    p.update(kw)
    return p


def test_no_overrides_keeps_the_direct_options():
    p = params()
    apply_overrides(p)
    assert (p["git"], p["ref"], p["prefix"]) == ("https://example.org/iptables.git", "master", "/usr/local")


def test_override_wins_and_is_converted():
    p = params(overrides={"prefix": "/opt/colo", "timeout": "60", "configure_flags": ["--disable-nftables"]})
    apply_overrides(p)
    assert (p["prefix"], p["timeout"], p["configure_flags"]) == ("/opt/colo", 60, ["--disable-nftables"])
    assert p["git"] == "https://example.org/iptables.git"


def test_a_source_in_overrides_replaces_the_direct_source():
    p = params(git_depth=0, overrides={"apt_package": "iptables", "apt_sources": ["deb-src http://x bookworm main"]})
    apply_overrides(p)
    assert p["apt_package"] == "iptables" and p["apt_sources"] == ["deb-src http://x bookworm main"]
    assert p["git"] is None and p["ref"] is None and p["git_depth"] == 1


@pytest.mark.parametrize("kw, match", [
    ({"overrides": {"gti": "x"}}, "overrides has unknown keys gti; it takes apt_package"),
    ({"overrides": {"timeout": "soon"}}, "overrides: .*timeout"),
    ({"tarball": "http://x/y.tar.gz"}, "mutually exclusive: git|tarball|apt_package"),
    ({"git": None, "ref": None}, "one of the following is required: git, tarball, apt_package"),
    ({"ref": ""}, "missing parameter.*ref"),
    ({"overrides": {"tarball_sha256": "0" * 64}}, "missing parameter.*tarball"),
])
def test_bad_combinations_are_refused(kw, match):
    with pytest.raises(InvalidSpec, match=match):
        apply_overrides(params(**kw))
