"""Homepage services file: golden output, gethomepage's shape, sorted groups."""

from __future__ import annotations

import yaml

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext, homepage
from conftest import check_golden


def body(lab: Lab) -> str:
    [res] = homepage.render(lab, RenderContext())
    assert (res.target, res.kind, res.path) == ("files@lab", "artifact",
                                                "homepage/services.yaml")
    return res.body


def test_golden_demo(demo_lab: Lab) -> None:
    check_golden("homepage/services.yaml", body(demo_lab))


def test_shape_and_order(blumeops_lab: Lab) -> None:
    groups = yaml.safe_load(body(blumeops_lab))
    names = [next(iter(g)) for g in groups]
    assert names == sorted(names) == ["Apps", "Development", "Infrastructure", "Media",
                                      "Observability"]
    observability = {next(iter(e)): next(iter(e.values())) for e in groups[-1]["Observability"]}
    assert list(observability) == ["grafana", "loki", "prometheus"]
    assert observability["grafana"] == {
        "href": "https://grafana.ops.eblu.me", "description": "Dashboards",
        "icon": "grafana.png", "siteMonitor": "https://grafana.ops.eblu.me/api/health"}
    infra = {next(iter(e)): next(iter(e.values())) for e in groups[2]["Infrastructure"]}
    assert "href" not in infra["borgmatic"]  # no route, no link
    # Services without a homepage entry are not listed.
    listed = {n for g in groups for e in next(iter(g.values())) for n in e}
    assert "postgresql" not in listed and "alloy" not in listed


def test_empty(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    for svc in data["services"].values():
        svc["homepage"] = None
    assert yaml.safe_load(body(Lab.model_validate(data))) == []
