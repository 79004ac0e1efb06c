"""Reference docs: golden pages, front matter, links, and change locality."""

from __future__ import annotations

import re

import yaml

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext, alloy, borgmatic, docs, grafana, homepage, prometheus
from conftest import check_golden

MINE = (prometheus, alloy, grafana, borgmatic, homepage, docs)


def pages(lab: Lab) -> dict[str, str]:
    out = {}
    for res in docs.render(lab, RenderContext()):
        assert (res.target, res.kind, res.name) == ("files@lab", "artifact", res.path)
        out[res.path] = res.body
    return out


def artifacts(lab: Lab) -> dict[str, str]:
    return {r.path: r.body for mod in MINE for r in mod.render(lab, RenderContext())}


def test_golden_demo(demo_lab: Lab) -> None:
    out = pages(demo_lab)
    assert sorted(out) == [
        "docs/architecture.md", "docs/hosts/box.md", "docs/ports.md", "docs/routing.md",
        "docs/services/api.md", "docs/services/echo.md", "docs/services/notes.md",
        "docs/services/web.md"]
    for path, text in out.items():
        check_golden(path, text)


def test_front_matter_and_links(blumeops_lab: Lab) -> None:
    out = pages(blumeops_lab)
    targets = {p.rsplit("/", 1)[-1].removesuffix(".md") for p in out}
    for path, text in out.items():
        _, front, _ = text.split("---\n", 2)
        meta = yaml.safe_load(front)
        assert meta["title"] and "reference" in meta["tags"], path
        for link in re.findall(r"\[\[([^\]|]+)", text):
            assert link.rsplit("/", 1)[-1] in targets, f"{path}: dangling [[{link}]]"


def test_service_page_contents(blumeops_lab: Lab) -> None:
    text = pages(blumeops_lab)["docs/services/forgejo.md"]
    assert "native on [[indri]] (launchd)" in text
    assert "https://forge.ops.eblu.me" in text and "tcp://git.ops.eblu.me:2222" in text
    assert "`op://blumeops/forgejo/secret-key`" in text  # references are fine
    assert "Backed up by borgmatic on [[indri]] to [[sifaka]]" in text
    grafana_page = pages(blumeops_lab)["docs/services/grafana.md"]
    assert "[[prometheus]], [[loki]]" in grafana_page  # depends on


def test_routing_and_ports(blumeops_lab: Lab) -> None:
    out = pages(blumeops_lab)
    assert "| `ops.eblu.me` | `forge.ops.eblu.me` | [[forgejo]] | `http://127.0.0.1:3001` |" \
        in out["docs/routing.md"]
    assert "| 3001 | [[forgejo]] | http |" in out["docs/ports.md"]
    assert "| 2222 | proxy `git.ops.eblu.me` (tcp) | git.ops |" in out["docs/ports.md"]
    assert "(clash)" not in out["docs/ports.md"]
    arch = out["docs/architecture.md"]
    assert "tailnet tail8d86e.ts.net" in arch and "```mermaid" in arch
    assert '-->|borgmatic| n_h_sifaka["sifaka"]' in arch


def test_name_shared_by_host_and_service(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["services"]["box"] = {"native": "box", "command": ["true"]}
    text = pages(Lab.model_validate(data))["docs/hosts/box.md"]
    assert "[[services/box|box]]" in text


def test_one_port_change_stays_local(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["services"]["api"]["ports"]["http"] = 18112
    before, after = artifacts(demo_lab), artifacts(Lab.model_validate(data))
    assert set(before) == set(after)
    changed = {p for p in before if before[p] != after[p]}
    assert changed == {"docs/services/api.md", "docs/hosts/box.md", "docs/ports.md",
                       "docs/routing.md", "prometheus/prometheus.yml"}


def test_adding_a_service_leaves_other_service_pages(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["services"]["extra"] = {"native": "box", "command": ["true"],
                                 "ports": {"http": 18199}}
    before, after = pages(demo_lab), pages(Lab.model_validate(data))
    for name in demo_lab.services:
        path = f"docs/services/{name}.md"
        assert before[path] == after[path], path
