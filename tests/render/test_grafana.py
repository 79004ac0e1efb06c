"""Grafana datasources: in-cluster URLs beside the stores, empty without them."""

from __future__ import annotations

import yaml

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext, grafana
from conftest import check_golden


def body(lab: Lab) -> str:
    [res] = grafana.render(lab, RenderContext())
    assert (res.target, res.kind, res.path) == ("files@lab", "artifact",
                                                "grafana/datasources.yaml")
    return res.body


def test_golden_demo(demo_lab: Lab) -> None:
    text = body(demo_lab)
    check_golden("grafana/datasources.yaml", text)
    assert yaml.safe_load(text) == {"apiVersion": 1, "datasources": []}


def test_blumeops_in_cluster(blumeops_lab: Lab) -> None:
    data = yaml.safe_load(body(blumeops_lab))
    assert data["apiVersion"] == 1
    urls = {d["type"]: d["url"] for d in data["datasources"]}
    assert urls == {"prometheus": "http://prometheus.prometheus.svc:9090",
                    "loki": "http://loki.loki.svc:3100"}
    assert [d["isDefault"] for d in data["datasources"]] == [True, False]


def test_routed_when_grafana_is_elsewhere(blumeops_lab: Lab) -> None:
    data = blumeops_lab.model_dump(mode="json")
    del data["services"]["grafana"]
    urls = {d["type"]: d["url"]
            for d in yaml.safe_load(body(Lab.model_validate(data)))["datasources"]}
    assert urls == {"prometheus": "https://prometheus.ops.eblu.me",
                    "loki": "https://loki.ops.eblu.me"}


def test_found_by_image(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["services"]["metrics-store"] = {
        "native": "box", "command": ["prometheus"], "image": "prom/prometheus:v3.1.0",
        "ports": {"web": 19090}}
    [source] = yaml.safe_load(body(Lab.model_validate(data)))["datasources"]
    assert source["url"] == "http://127.0.0.1:19090"
