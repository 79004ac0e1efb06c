"""`blumeops cluster health` is the cluster part of `blumeops status`: the same sessions,
the same words and details, for both deliveries, against the stand-in API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from deliverylab import bare_origin
from k8s_standin import KubeStandIn, kube_stand_in, kubeconfig
from test_kube_pure import COMPLETE_DEPLOYMENT
from test_targets_standin import _application, _argocd_repo, _lab, _write

from blumeops.cli import cli

TOKEN = "health-token"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    with kube_stand_in(TOKEN) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", api.url,
                                                        TOKEN, "kind-test")))
        yield api


def _cli(lab: Path, state: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, str(lab), "--state-dir", str(state)],
                              catch_exceptions=False)


def _both(lab: Path, state: Path) -> tuple[Result, dict[str, Any], dict[str, Any]]:
    health = _cli(lab, state, "cluster", "health", "-o", "json")
    status = json.loads(_cli(lab, state, "status", "-o", "json").stdout)
    return health, json.loads(health.stdout), status


def test_cluster_health_says_what_status_says_for_applied_clusters(
        tmp_path: Path, cluster: KubeStandIn) -> None:
    lab, state = _write(tmp_path / "lab", _lab()), tmp_path / "state"
    assert _cli(lab, state, "apply", "--yes").exit_code == 0
    done = yaml.safe_load(COMPLETE_DEPLOYMENT)
    cluster.set_status("apps/v1", "Deployment", "api", "api", done["status"], generation=2)
    result, health, status = _both(lab, state)
    assert result.exit_code == 1  # web has no status yet
    assert set(health) == {"kind"}
    assert health["kind"] == {s["service"]: {"health": s["health"], "detail": s["detail"]}
                              for s in status["services"]}
    assert health["kind"]["api"]["health"] == "Healthy"
    assert health["kind"]["web"]["health"] == "Progressing"
    cluster.set_status("apps/v1", "Deployment", "web", "web", done["status"], generation=2)
    table = _cli(lab, state, "cluster", "health")
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == ["CLUSTER", "NAME", "HEALTH", "DETAIL"]


def test_cluster_health_has_the_app_of_apps_row_and_an_unreachable_cluster_is_unknown(
        tmp_path: Path, cluster: KubeStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _argocd_repo(tmp_path, bare_origin(tmp_path / "deploy.git"))
    lab, state = repo / "lab.yaml", tmp_path / "state"
    for app in (_application("api", "Healthy"), _application("web", "Degraded"),
                _application("t-apps", "Healthy")):
        cluster.put(app)
    result, health, status = _both(lab, state)
    assert result.exit_code == 1
    rows = {s["service"]: {"health": s["health"], "detail": s["detail"]}
            for s in status["services"]}
    rows.update({t["name"]: {"health": t["health"], "detail": t["detail"]}
                 for t in status["targets"]})
    assert health == {"kind": rows}
    assert health["kind"]["t-apps"] == {"health": "Healthy",
                                        "detail": "Synced at 4773b9f1f0cd, Healthy"}
    assert health["kind"]["web"]["detail"].startswith("Application web: Synced at")

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    gone = _cli(lab, state, "cluster", "health", "-o", "json")
    assert gone.exit_code == 1
    unknown = json.loads(gone.stdout)["kind"]
    assert {v["health"] for v in unknown.values()} == {"Unknown"}
    assert "kubeconfig context 'kind-test'" in unknown["api"]["detail"]


def test_cluster_health_without_a_cluster_is_a_clear_error(tmp_path: Path) -> None:
    data = _lab()
    del data["clusters"]
    data["services"] = {}
    lab = _write(tmp_path / "lab", data)
    r = _cli(lab, tmp_path / "state", "cluster", "health")
    assert r.exit_code == 1 and "no cluster" in r.output
