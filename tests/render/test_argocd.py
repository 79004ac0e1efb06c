"""ArgoCD Applications: golden files, paths that match the manifests, when to skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kubernetes import small_lab_data

from blumeops.catalog.model import Lab
from blumeops.catalog.synthetic import synthetic_lab
from blumeops.kubernetes import render as kubernetes
from blumeops.kubernetes.argocd import argocd_notes, render, repo_path
from blumeops.render import RenderContext
from conftest import check_golden_tree


def small_lab() -> Lab:
    return Lab.model_validate(small_lab_data())


def with_cluster(data: dict[str, Any], **changes: Any) -> Lab:
    data["clusters"]["kind"].update(changes)
    if changes.get("repo_url", "") is None:
        del data["clusters"]["kind"]["repo_url"]
    return Lab.model_validate(data)


def test_golden_small_lab() -> None:
    check_golden_tree("argocd", render(small_lab(), RenderContext()))


def test_applications_point_at_rendered_directories(blumeops_lab: Lab) -> None:
    """Every Application's path is a directory the Kubernetes renderer fills, and back."""
    cluster = blumeops_lab.clusters["minikube"]
    manifest_dirs = {str(Path(r.path).parent) for r in kubernetes.render(blumeops_lab,
                                                                         RenderContext())}
    app_dirs = set()
    apps = render(blumeops_lab, RenderContext())
    # k3s is delivered by minikube's ArgoCD: its root sits among minikube's Applications.
    roots = {"blumeops-apps": "argocd/minikube", "blumeops-k3s-apps": "argocd/k3s"}
    for res in apps:
        doc = yaml.safe_load(res.body)
        where = "minikube" if res.name in roots else res.target.partition("@")[2]
        assert (res.target, res.kind) == (f"argocd@{where}", "Application")
        assert res.path == f"argocd/{where}/{res.name}.yaml"
        # A chart's Application has several sources; blumeops' own is the last.
        own = (doc["spec"].get("sources") or [doc["spec"].get("source")])[-1]
        assert own["repoURL"] == cluster.repo_url
        path = own["path"].removeprefix(f"{cluster.path}/")
        if res.name != "blumeops-apps":
            assert doc["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
        if res.name not in roots:
            app_dirs.add(path)
        else:
            assert path == roots[res.name]
        if res.name == "blumeops-apps":
            assert own["directory"] == {"exclude": "blumeops-apps.yaml"}
    assert app_dirs == manifest_dirs
    services = {r.service for r in apps if r.service}
    assert services == {n for n, s in blumeops_lab.services.items() if s.kubernetes}
    grafana = next(r for r in apps if r.name == "grafana")
    assert grafana.depends_on == ("prometheus", "loki")
    assert argocd_notes(blumeops_lab) == []


def test_application_shape() -> None:
    apps = {r.name: yaml.safe_load(r.body) for r in render(small_lab(), RenderContext())}
    worker = apps["worker"]["spec"]
    assert worker["destination"] == {"server": "https://kubernetes.default.svc",
                                     "namespace": "data"}
    assert worker["source"] == {"repoURL": "https://git.example.com/lab.git",
                                "path": "out/kubernetes/kind/worker", "targetRevision": "HEAD"}
    assert worker["syncPolicy"] == {"automated": {"prune": True, "selfHeal": True},
                                    "syncOptions": ["CreateNamespace=true"]}
    assert apps["worker"]["metadata"]["namespace"] == "argocd"


def test_apply_delivery_renders_nothing() -> None:
    lab = with_cluster(small_lab_data(), delivery="apply")
    assert render(lab, RenderContext()) == []
    assert argocd_notes(lab) == []


def test_missing_repo_url_skips_with_a_note() -> None:
    lab = with_cluster(small_lab_data(), repo_url=None)
    assert render(lab, RenderContext()) == []
    (note,) = argocd_notes(lab)
    assert "cluster 'kind'" in note and "repo_url" in note


def test_repo_path_joins_cleanly() -> None:
    lab = with_cluster(small_lab_data(), path="./")
    assert repo_path(lab.clusters["kind"], "argocd", "kind") == "argocd/kind"
    lab = with_cluster(small_lab_data(), path="/deploy/rendered/")
    assert repo_path(lab.clusters["kind"], "x") == "deploy/rendered/x"


def test_name_clash_is_noted() -> None:
    data = small_lab_data()
    data["services"]["small-apps"] = {"kubernetes": "kind", "image": "example/x:1"}
    assert any("small-apps" in n for n in argocd_notes(Lab.model_validate(data)))


@settings(max_examples=10, deadline=None)
@given(services=st.integers(1, 60), hosts=st.integers(1, 5), seed=st.integers(0, 50))
def test_synthetic_unique_and_deterministic(services: int, hosts: int, seed: int) -> None:
    data = synthetic_lab(services, hosts, seed)
    data["clusters"]["k3s"]["repo_url"] = "https://git.example.com/synthetic.git"
    lab = Lab.model_validate(data)
    first = render(lab, RenderContext())
    ids = [r.id for r in first]
    assert len(ids) == len(set(ids))
    assert len({r.path for r in first}) == len(first)
    k8s = sum(1 for s in lab.services.values() if s.kubernetes)
    # one per service, plus the cluster-wide app when secrets exist, plus the root
    assert len(first) - 1 in (k8s, k8s + 1)
    assert [r.body for r in render(lab, RenderContext())] == [r.body for r in first]


def test_image_change_leaves_applications_alone(blumeops_lab: Lab) -> None:
    services = dict(blumeops_lab.services)
    services["grafana"] = services["grafana"].model_copy(update={"image": "grafana/grafana:12"})
    changed = blumeops_lab.model_copy(update={"services": services})
    before = [(r.path, r.body) for r in render(blumeops_lab, RenderContext())]
    assert [(r.path, r.body) for r in render(changed, RenderContext())] == before


def test_helm_and_manifests_sources(tmp_path: Path) -> None:
    """A chart is a Helm source, a manifests directory a git source beside the catalog;
    blumeops' own directory (ingress, secrets, objects) is always the last source."""
    from conftest import load_data

    data = small_lab_data()
    (tmp_path / "k8s" / "frigate").mkdir(parents=True)
    (tmp_path / "k8s" / "frigate" / "kustomization.yaml").write_text("resources: []\n")
    data["services"]["frigate"] = {"kubernetes": "kind", "manifests": "k8s/frigate",
                                   "ports": {"http": 5000}, "routes": {"nvr.ts": "http"},
                                   "health": {"http": "/api/version"}}
    data["controller"] = {"host": "box", "source": "https://git.example.com/lab.git",
                          "lab_path": "lab"}
    result = load_data(tmp_path, data)
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    apps = {r.name: yaml.safe_load(r.body) for r in render(result.lab, RenderContext())}
    chart = apps["chart"]["spec"]
    assert "source" not in chart
    assert chart["sources"][0] == {
        "repoURL": "https://charts.example.com", "chart": "app", "targetRevision": "1.2.3",
        "helm": {"releaseName": "chart", "valuesObject": {"replicaCount": 2}}}
    assert chart["sources"][1]["path"] == "out/kubernetes/kind/chart"
    frigate = apps["frigate"]["spec"]["sources"]
    assert frigate[0] == {"repoURL": "https://git.example.com/lab.git",
                          "path": "lab/k8s/frigate", "targetRevision": "HEAD"}
    assert frigate[1]["path"] == "out/kubernetes/kind/frigate"
    # the derived ingress still comes, pointing at the Service the manifests make
    ingress = next(r for r in kubernetes.render(result.lab, RenderContext())
                   if r.path == "kubernetes/kind/frigate/ingress-frigate.yaml")
    assert "name: frigate" in ingress.body and "number: 5000" in ingress.body


def test_missing_manifests_directory_is_an_error(tmp_path: Path) -> None:
    from conftest import load_data

    data = small_lab_data()
    data["services"]["frigate"] = {"kubernetes": "kind", "manifests": "k8s/frigate",
                                   "health": {"command": ["true"]}}
    result = load_data(tmp_path, data)
    assert result.lab is None
    assert any(d.rule == "missing-manifests" for d in result.errors)
