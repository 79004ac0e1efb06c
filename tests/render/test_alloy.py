"""Alloy per host: golden output, well-formed structure, the lab's stores as sinks."""

from __future__ import annotations

import re

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext, alloy
from conftest import check_golden

DEFINES = re.compile(r'^([a-z_]+(?:\.[a-z_]+)+) "([A-Za-z_][A-Za-z0-9_]*)" \{', re.M)
COMPONENTS = ("prometheus.exporter.unix", "prometheus.scrape", "prometheus.remote_write",
              "local.file_match", "loki.source.file", "loki.write")
REFERENCE = re.compile(r"\b(" + "|".join(re.escape(c) for c in COMPONENTS)
                       + r")\.([A-Za-z_][A-Za-z0-9_]*)\.[a-z_]+")


def bodies(lab: Lab) -> dict[str, str]:
    out = {}
    for res in alloy.render(lab, RenderContext()):
        assert (res.target, res.kind, res.name) == ("files@lab", "artifact", res.path)
        out[res.path] = res.body
    return out


def check_structure(text: str) -> None:
    # Blank out strings first (they may hold braces or "//"), then drop comments.
    stripped = re.sub(r"//[^\n]*", "", re.sub(r'"(?:[^"\\]|\\.)*"', '""', text))
    depth = 0
    for char in stripped:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0, "unbalanced braces"
    assert depth == 0, "unbalanced braces"
    defined = set(DEFINES.findall(text))
    referenced = set(REFERENCE.findall(stripped))
    assert referenced <= defined, f"undefined components: {referenced - defined}"


def test_golden_demo(demo_lab: Lab) -> None:
    out = bodies(demo_lab)
    assert list(out) == ["alloy/box.alloy"]
    check_golden("alloy/box.alloy", out["alloy/box.alloy"])


def test_demo_has_no_sinks(demo_lab: Lab) -> None:
    text = bodies(demo_lab)["alloy/box.alloy"]
    check_structure(text)
    assert "No Prometheus is declared" in text and "No Loki is declared" in text
    assert "remote_write" not in text.replace("// No", "")
    for service in demo_lab.services:
        assert f'"/logs/{service}.log"' in text


def test_blumeops_forwards_to_routed_stores(blumeops_lab: Lab) -> None:
    out = bodies(blumeops_lab)
    # indri and ringtail run native services; sifaka (an appliance) and gilbert get nothing.
    assert list(out) == ["alloy/indri.alloy", "alloy/ringtail.alloy"]
    text = out["alloy/indri.alloy"]
    check_structure(text)
    assert 'url = "https://prometheus.ops.eblu.me/api/v1/write"' in text
    assert 'url = "https://loki.ops.eblu.me/loki/api/v1/push"' in text
    assert "forward_to = [prometheus.remote_write.lab.receiver]" in text
    assert "forward_to = [loki.write.lab.receiver]" in text
    assert "grafana" not in text  # Kubernetes services are not this collector's job


def test_structure_checker_catches_mistakes() -> None:
    bad = 'loki.source.file "x" {\n  forward_to = [loki.write.lab.receiver]\n}\n'
    try:
        check_structure(bad)
    except AssertionError:
        pass
    else:
        raise AssertionError("an undefined loki.write was not caught")
