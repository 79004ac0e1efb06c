"""The tailnet's cross-layer rules fire on the bad corpus and go quiet once it is fixed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from blumeops.catalog.model import Serve
from blumeops.lab.loader import load_lab
from conftest import EXAMPLES, write_lab

BAD = Path(__file__).parent.parent / "catalog" / "bad"


def rules_after(tmp_path: Path, case: str, old: str, new: str) -> list[str]:
    """Load a bad case with one edit; the rules of the errors left."""
    text = (BAD / case).read_text()
    assert old in text
    result = load_lab(write_lab(tmp_path, text.replace(old, new)))
    return [d.rule for d in result.errors]


def test_unused_tag_fixed_by_carrying_it(tmp_path: Path) -> None:
    assert rules_after(tmp_path, "tailnet-unused-tag.yaml", "tags: [nas]", "tags: [backup]") == []


def test_operator_tag_fixed_by_letting_the_operator_own_it(tmp_path: Path) -> None:
    assert rules_after(tmp_path, "tailnet-operator-tag.yaml", "media: [autogroup:admin]",
                       "media: [tag:k8s-operator]") == []


def test_unreachable_dependency_fixed_by_a_grant(tmp_path: Path) -> None:
    fixed = ("groups: {admin: [a@example.com]}\n"
             "  grants: [{src: [tag:beta], dst: [tag:alpha], ip: [\"tcp:443\"]}]")
    assert rules_after(tmp_path, "tailnet-unreachable-dependency.yaml",
                       "groups: {admin: [a@example.com]}", fixed) == []
    # A grant to the wrong port does not count.
    wrong = fixed.replace("tcp:443", "tcp:22")
    assert rules_after(tmp_path, "tailnet-unreachable-dependency.yaml",
                       "groups: {admin: [a@example.com]}", wrong) == ["unreachable-dependency"]


def test_same_host_dependency_needs_no_grant(tmp_path: Path) -> None:
    assert rules_after(tmp_path, "tailnet-unreachable-dependency.yaml",
                       "k: {host: beta, context: k}", "k: {host: alpha, context: k}") == []


def test_example_is_clean() -> None:
    result = load_lab(EXAMPLES / "blumeops")
    assert result.lab is not None and not result.errors


def test_derived_grants_cover_cross_host_dependencies(tmp_path: Path) -> None:
    from blumeops.tailnet.policy import derive_policy

    text = (BAD / "tailnet-unreachable-dependency.yaml").read_text()
    result = load_lab(write_lab(tmp_path, text.replace("derive_grants: false", "")))
    assert result.lab is not None and not result.errors
    # The runner's node reaches the forge where its URL points: Caddy on alpha.
    grants = derive_policy(result.lab).grants
    assert {"src": ["tag:beta"], "dst": ["tag:alpha"], "ip": ["tcp:443"]} in grants


@pytest.mark.parametrize(("entry", "message"), [
    ({"port": 2222, "target": "http://127.0.0.1:22", "protocol": "tcp"}, "tcp://HOST:PORT"),
    ({"port": 443, "target": "127.0.0.1:3000"}, "proxies to http(s)://HOST:PORT"),
    ({"port": 443, "target": "tcp://127.0.0.1:22", "protocol": "tcp", "path": "/x"},
     "'path' is only for http"),
    ({"port": 443, "target": "http://127.0.0.1:3000", "path": "x"}, "must start with '/'"),
])
def test_serve_entries_are_ones_tailscale_takes(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Serve.model_validate(entry)
    Serve.model_validate({"port": 443, "target": "text:hello"})
