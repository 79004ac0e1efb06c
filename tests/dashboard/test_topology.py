"""The topology SVG, drawn from a catalog with hosts, a cluster, routes and grants."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from blumeops.catalog.model import Lab
from blumeops.server.dashboard.topology import render_svg

SVG = "{http://www.w3.org/2000/svg}"


def test_every_part_of_the_lab_is_drawn(blumeops_lab: Lab) -> None:
    svg = render_svg(blumeops_lab, {"forgejo": "Degraded"})
    root = ET.fromstring(svg)  # well-formed: catalog text is escaped
    links = {a.get("href") for a in root.iter(f"{SVG}a")}
    for name in blumeops_lab.services:
        assert f"/service/{name}" in links, name
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for host in blumeops_lab.hosts:
        assert host in texts
    assert "⎈ minikube" in texts
    assert "grant indri → sifaka (tcp:22)" in texts
    paths = [p.get("class") for p in root.iter(f"{SVG}path")]
    assert "grant" in paths and "edge" in paths
    forgejo = next(a for a in root.iter(f"{SVG}a") if a.get("href") == "/service/forgejo")
    assert "bad" in (forgejo.find(f"{SVG}rect").get("class") or "")  # type: ignore[union-attr]


def test_hostile_names_are_escaped(demo_lab: Lab) -> None:
    lab = demo_lab.model_copy(update={"lab": "x"})
    svg = render_svg(lab, {"web": "<script>alert(1)</script>"})
    assert "<script>" not in svg
    ET.fromstring(svg)
