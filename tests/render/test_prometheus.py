"""Prometheus scrape config: golden output, promtool's verdict (determinism across
processes: tests/test_render_command.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext, prometheus
from conftest import check_golden
from requires import needs

needs_promtool = needs(shutil.which("promtool"), "promtool (Debian prometheus)")


def body(lab: Lab) -> str:
    [res] = prometheus.render(lab, RenderContext())
    assert (res.target, res.kind, res.name, res.path) == (
        "files@lab", "artifact", "prometheus/prometheus.yml", "prometheus/prometheus.yml")
    return res.body


def test_golden_demo(demo_lab: Lab) -> None:
    check_golden("prometheus/prometheus.yml", body(demo_lab))


@needs_promtool
@pytest.mark.parametrize("lab_name", ["demo_lab", "blumeops_lab"])
def test_promtool_accepts(lab_name: str, request: pytest.FixtureRequest,
                          tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(body(request.getfixturevalue(lab_name)))
    result = subprocess.run(["promtool", "check", "config", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_job_per_metrics_endpoint(blumeops_lab: Lab) -> None:
    data = yaml.safe_load(body(blumeops_lab))
    jobs = {job["job_name"]: job for job in data["scrape_configs"]}
    assert set(jobs) == {n for n, s in blumeops_lab.services.items() if s.metrics}
    # Kubernetes: in-cluster DNS; native: the host's address.
    assert jobs["grafana"]["static_configs"][0]["targets"] == ["grafana.grafana.svc:3000"]
    assert jobs["cloudnative-pg"]["static_configs"][0]["targets"] == [
        "cloudnative-pg.cnpg-system.svc:8080"]
    assert jobs["forgejo"]["static_configs"][0]["targets"] == ["indri.tail8d86e.ts.net:3001"]
    assert jobs["caddy"]["metrics_path"] == "/metrics"
    assert jobs["forgejo"]["static_configs"][0]["labels"] == {
        "service": "forgejo", "runtime": "native", "host": "indri"}


def test_no_metrics_gives_empty_list(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    for svc in data["services"].values():
        svc.pop("metrics", None)
        svc["routes"] = {}
    parsed = yaml.safe_load(body(Lab.model_validate(data)))
    assert parsed["scrape_configs"] == []
