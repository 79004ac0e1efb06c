"""Kubernetes manifests: golden files, strict schema checks, properties, locality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes_validate.utils import all_versions

from blumeops.catalog.model import Lab
from blumeops.catalog.synthetic import synthetic_lab
from blumeops.core.resources import Resource
from blumeops.kubernetes import crds
from blumeops.kubernetes.render import dump_yaml, kubernetes_notes, render
from blumeops.render import RenderContext
from conftest import check_golden_tree, load_data

# Kinds kubernetes_validate has schemas for; CRDs (ExternalSecret, ...) are checked by golden.
CORE_KINDS = {"Namespace", "Deployment", "StatefulSet", "DaemonSet", "Service",
              "PersistentVolumeClaim", "Ingress", "CronJob"}


def schema_version(version: str) -> str:
    """Catalog '1.31' -> '1.31.0': the schema set kubernetes_validate ships for it."""
    major_minor = ".".join(version.removeprefix("v").split(".")[:2])
    shipped = f"{major_minor}.0"
    assert shipped in all_versions(), f"kubernetes_validate has no schemas for {version}"
    return shipped


def small_lab_data() -> dict[str, Any]:
    """Kubernetes services touching every feature: the golden-file lab."""
    return {
        "lab": "small",
        "tailnet": {"name": "tail1234.ts.net"},
        "domains": {
            "ops": {"suffix": "ops.example.com", "proxy": "caddy", "host": "box"},
            "ts": {"suffix": "tail1234.ts.net", "proxy": "magicdns"},
        },
        "hosts": {"box": {"role": "compute", "os": "linux"}},
        "clusters": {"kind": {"host": "box", "context": "kind-box", "kubernetes_version": "1.31",
                              "repo_url": "https://git.example.com/lab.git", "path": "out",
                              "secret_store": {
                                  "kind": "onepassword",
                                  "connect_url": "http://connect.op.svc.cluster.local:8080",
                                  "vaults": ["infra"]}}},
        "services": {
            "web": {
                "kubernetes": "kind",
                "image": "example/web:2.0",
                "args": ["--listen=:8080", "*.conf"],
                "ports": {"http": 8080, "metrics": 9100},
                "routes": {"www.ops": "http", "web.ts": "http"},
                "health": {"http": "/healthz", "timeout": 2.5},
                "metrics": {"port": "metrics"},
                "environment": {"LOG_LEVEL": "info", "WORKERS": 4, "DEBUG": False},
                "secrets": {
                    "API_TOKEN": "op://homelab/Web (prod)/api token",
                    "SESSION_KEY": "vault:web/session-key",
                    "TLS_KEY": {"ref": "op://infra/web-tls/private-key",
                                "file": "/etc/web/tls.key"},
                },
                "storage": {"uploads": {"size": "2Gi", "mount": "/srv/uploads",
                                        "storage_class": "standard"}},
                "depends_on": ["db"],
                "service_ports": {"http": 80},
                "readiness": {"http": "/ready"},
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                              "limits": {"memory": "1Gi"}, "gpu": 1},
                "runtime_class": "nvidia",
                "node_selector": {"example.com/gpu": "true"},
                "init_containers": {"migrate": {"image": "example/web:2.0",
                                                "args": ["migrate"],
                                                "mounts": {"uploads": "/srv/uploads"}}},
            },
            "db": {
                "kubernetes": "kind",
                "namespace": "data",
                "image": "postgres:16",
                "ports": {"pg": 5432, "exporter": 9187},
                "routes": {"db.ops": {"port": "pg", "protocol": "tcp", "listen": 5432}},
                "health": {"tcp": "pg"},
                "metrics": {"port": "pg", "path": "/stats"},
                "secrets": {"POSTGRES_PASSWORD": "vault:db/password"},
                "storage": {"pgdata": {"size": "10Gi", "mount": "/var/lib/postgresql/data",
                                       "per_pod": True}},
                "names": {"kubernetes": "postgres"},
                "sidecars": {"exporter": {
                    "image": "quay.io/prometheuscommunity/postgres-exporter:v0.16.0",
                    "ports": ["exporter"], "environment": {"DATA_SOURCE_USER": "postgres"},
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}},
            },
            "dns": {
                "kubernetes": "kind",
                "image": "example/dns:1.0",
                "workload": "daemonset",
                "ports": {"dns": 53, "web": 8053},
                "udp": ["dns"],
                "liveness": {"tcp": "web"},
                "readiness": {"http": "/ready", "port": "web"},
            },
            "chart": {
                "kubernetes": "kind",
                "helm": {"repo": "https://charts.example.com", "chart": "app",
                         "version": "1.2.3", "values": {"replicaCount": 2}},
                "ports": {"http": 8080},
                "service_ports": {"http": 80},
                "routes": {"chart.ts": "http"},
                "secrets": {"TOKEN": "op://homelab/Chart (prod)/token"},
                "objects": [{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                             "metadata": {"name": "chart-db"},
                             "spec": {"instances": 1, "storage": {"size": "1Gi"}}}],
            },
            "worker": {
                "kubernetes": "kind",
                "namespace": "data",
                "image": "example/worker:1.0",
                "replicas": 2,
                "health": {"command": ["worker", "--check"]},
                "depends_on": ["db"],
            },
        },
    }


@pytest.fixture
def small_lab(tmp_path: Path) -> Lab:
    result = load_data(tmp_path, small_lab_data())
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    return result.lab


def docs(resources: list[Resource]) -> list[tuple[Resource, dict[str, Any]]]:
    return [(r, yaml.safe_load(r.body)) for r in resources]


def assert_strictly_valid(lab: Lab, resources: list[Resource]) -> int:
    """Every core manifest passes kubernetes_validate's strict schema; returns how many."""
    checked = 0
    for res, doc in docs(resources):
        if res.kind not in CORE_KINDS:
            continue
        cluster = res.target.partition("@")[2]
        version = schema_version(lab.clusters[cluster].kubernetes_version)
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{res.path}: {path}: {exc.message}")
        checked += 1
    return checked


def assert_unique(resources: list[Resource]) -> None:
    ids = [r.id for r in resources]
    paths = [r.path for r in resources]
    assert len(ids) == len(set(ids)), "duplicate resource ids"
    assert len(paths) == len(set(paths)), "duplicate paths"


# --- golden -------------------------------------------------------------------------


def test_golden_small_lab(small_lab: Lab) -> None:
    check_golden_tree("kubernetes", render(small_lab, RenderContext()))


def test_small_lab_shape(small_lab: Lab) -> None:
    by_path = {r.path: (r, doc) for r, doc in docs(render(small_lab, RenderContext()))}
    base = "kubernetes/kind/"
    # web: Deployment (shared claim -> Recreate), Ingress on the MagicDNS name, secrets.
    _, web = by_path[base + "web/deployment-web.yaml"]
    assert web["spec"]["strategy"] == {"type": "Recreate"}
    container = web["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["WORKERS"]["value"] == "4" and env["DEBUG"]["value"] == "false"
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "web", "key": "API_TOKEN"}
    assert "TLS_KEY" not in env  # delivered as a file instead
    assert {"name": "blumeops-secret-files", "mountPath": "/etc/web/tls.key",
            "subPath": "TLS_KEY", "readOnly": True} in container["volumeMounts"]
    assert web["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    _, ingress = by_path[base + "web/ingress-web.yaml"]
    assert ingress["spec"]["tls"] == [{"hosts": ["web"]}]
    assert ingress["spec"]["defaultBackend"]["service"] == {"name": "web", "port": {"name": "http"}}
    res, secret = by_path[base + "web/externalsecret-web.yaml"]
    assert res.name == "web/web" and secret["spec"]["target"]["name"] == "web"
    remote = {d["secretKey"]: d["remoteRef"] for d in secret["spec"]["data"]}
    assert remote == {"API_TOKEN": {"key": "Web (prod)", "property": "api token"},
                      "SESSION_KEY": {"key": "web/session-key"},
                      "TLS_KEY": {"key": "web-tls", "property": "private-key"}}
    # db: per-pod storage -> StatefulSet with a headless Service; tcp route -> exposed Service.
    _, db = by_path[base + "db/statefulset-postgres.yaml"]  # names.kubernetes: postgres
    assert db["spec"]["serviceName"] == "postgres-headless"
    assert db["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "pgdata"
    probe = db["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["tcpSocket"] == {"port": "pg"}
    assert by_path[base + "db/service-postgres-headless.yaml"][1]["spec"]["clusterIP"] == "None"
    svc = by_path[base + "db/service-postgres.yaml"][1]
    assert svc["metadata"]["annotations"]["tailscale.com/expose"] == "true"
    assert base + "db/ingress-db.yaml" not in by_path
    # worker shares db's namespace: the Namespace belongs to db alone.
    assert base + "db/namespace-data.yaml" in by_path
    assert not any(p.startswith(base + "worker/namespace") for p in by_path)
    assert base + "worker/service-worker.yaml" not in by_path  # no ports, no Service
    store_res, store = by_path[base + "_cluster/clustersecretstore-onepassword.yaml"]
    assert store_res.name == "onepassword" and store_res.service is None
    # declared vaults first, then those the references name
    assert store["spec"]["provider"]["onepassword"]["vaults"] == {"infra": 1, "homelab": 2}
    # resources carry the catalog's service and dependencies
    res = by_path[base + "web/deployment-web.yaml"][0]
    assert (res.target, res.kind, res.name) == ("k8s@kind", "Deployment", "web/web")
    assert res.service == "web" and res.depends_on == ("db",)


def test_notes(small_lab: Lab) -> None:
    assert kubernetes_notes(small_lab) == []
    data = small_lab_data()
    data["services"]["web"]["replicas"] = 3
    lab = Lab.model_validate(data)
    assert any("3 replicas" in n for n in kubernetes_notes(lab))


# --- strict schemas -----------------------------------------------------------------


def test_small_lab_strictly_valid(small_lab: Lab) -> None:
    assert assert_strictly_valid(small_lab, render(small_lab, RenderContext())) == 15


def test_example_lab_strictly_valid(blumeops_lab: Lab) -> None:
    resources = render(blumeops_lab, RenderContext())
    assert_unique(resources)
    kinds = {r.kind for r in resources}
    assert kinds >= CORE_KINDS
    assert assert_strictly_valid(blumeops_lab, resources) >= 30  # operators come as charts


def test_strict_validation_catches_unknown_fields(blumeops_lab: Lab) -> None:
    """Guards the guard: strict mode really rejects a field Kubernetes does not know."""
    res = next(r for r in render(blumeops_lab, RenderContext()) if r.kind == "Deployment")
    doc = yaml.safe_load(res.body)
    doc["spec"]["template"]["spec"]["containers"][0]["healthcheck"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, schema_version("1.31"), strict=True)


def test_schema_version_mapping() -> None:
    assert schema_version("1.31") == "1.31.0"
    assert schema_version("v1.30.4") == "1.30.0"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(services=st.integers(1, 24), hosts=st.integers(1, 5), seed=st.integers(0, 50))
def test_synthetic_labs_valid_and_unique(services: int, hosts: int, seed: int) -> None:
    lab = Lab.model_validate(synthetic_lab(services, hosts, seed))
    resources = render(lab, RenderContext())
    assert_unique(resources)
    k8s = [n for n, s in lab.services.items() if s.kubernetes]
    assert assert_strictly_valid(lab, resources) >= 4 * len(k8s)


# --- locality and determinism -------------------------------------------------------


def test_image_change_touches_only_that_service(blumeops_lab: Lab) -> None:
    before = {r.path: r.body for r in render(blumeops_lab, RenderContext())}
    services = dict(blumeops_lab.services)
    services["miniflux"] = services["miniflux"].model_copy(update={"image": "miniflux:2.2.5"})
    changed_lab = blumeops_lab.model_copy(update={"services": services})
    after = {r.path: r.body for r in render(changed_lab, RenderContext())}
    assert before.keys() == after.keys()
    changed = [p for p in before if before[p] != after[p]]
    assert changed == ["kubernetes/minikube/miniflux/deployment-miniflux.yaml"]


def test_deterministic(blumeops_lab: Lab) -> None:
    first = render(blumeops_lab, RenderContext())
    second = render(Lab.model_validate(blumeops_lab.model_dump()), RenderContext())
    assert [(r.id, r.path, r.body) for r in first] == [(r.id, r.path, r.body) for r in second]


# --- YAML emitter -------------------------------------------------------------------


def test_dump_yaml_matches_pyyaml(blumeops_lab: Lab, small_lab: Lab) -> None:
    """The fast emitter writes what yaml.safe_dump (no line wrapping) would."""
    for lab in (blumeops_lab, small_lab):
        for res, doc in docs(render(lab, RenderContext())):
            body = res.body.split("\n", 2)[2]  # drop the two header lines
            assert body == yaml.safe_dump(doc, sort_keys=False, width=float("inf")), res.path


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
))
@settings(max_examples=150, deadline=None)
def test_dump_yaml_round_trips(value: Any) -> None:
    doc = {"value": value}
    assert yaml.safe_load(dump_yaml(doc)) == doc


def test_dump_yaml_quotes_a_string_ending_in_a_line_break() -> None:
    """Found by the round trip above: a plain-looking key with a trailing newline was
    written raw (the pattern's `$` matched before the newline)."""
    for doc in ({"A\n": None}, {"k": "A\n"}, {"": None, "x": ["b\n"]}):
        assert yaml.safe_load(dump_yaml(doc)) == doc


# --- beyond one Deployment ----------------------------------------------------------


def test_workload_kinds_containers_and_ports(small_lab: Lab) -> None:
    by_path = {r.path: doc for r, doc in docs(render(small_lab, RenderContext()))}
    base = "kubernetes/kind/"
    web = by_path[base + "web/deployment-web.yaml"]["spec"]["template"]["spec"]
    (init,) = web["initContainers"]
    assert init["name"] == "migrate" and init["volumeMounts"] == [
        {"name": "uploads", "mountPath": "/srv/uploads"}]
    main = web["containers"][0]
    assert main["resources"] == {"limits": {"memory": "1Gi", "nvidia.com/gpu": "1"},
                                 "requests": {"cpu": "250m", "memory": "256Mi"}}
    assert web["runtimeClassName"] == "nvidia"
    assert web["nodeSelector"] == {"example.com/gpu": "true"}
    # readiness as declared; liveness from `health`, slower to give up
    assert main["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["livenessProbe"]["failureThreshold"] == 6
    service = by_path[base + "web/service-web.yaml"]["spec"]["ports"]
    assert {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"} in service
    # the sidecar serves its own port; the main container does not list it
    db = by_path[base + "db/statefulset-postgres.yaml"]["spec"]["template"]["spec"]
    assert [c["name"] for c in db["containers"]] == ["postgres", "exporter"]
    assert [p["name"] for p in db["containers"][0]["ports"]] == ["pg"]
    assert [p["name"] for p in db["containers"][1]["ports"]] == ["exporter"]
    dns = by_path[base + "dns/daemonset-dns.yaml"]
    assert "replicas" not in dns["spec"]
    ports = {p["name"]: p["protocol"] for p in dns["spec"]["template"]["spec"]["containers"][0]
             ["ports"]}
    assert ports == {"dns": "UDP", "web": "TCP"}
    probe = dns["spec"]["template"]["spec"]["containers"][0]
    assert probe["livenessProbe"]["tcpSocket"] == {"port": "web"}
    assert "failureThreshold" not in probe["livenessProbe"]


def test_passthrough_service_gets_derived_objects_only(small_lab: Lab) -> None:
    paths = {r.path for r in render(small_lab, RenderContext()) if "/chart/" in r.path}
    assert paths == {f"kubernetes/kind/chart/{f}.yaml" for f in (
        "namespace-chart", "externalsecret-chart", "cluster-chart-db", "ingress-chart")}
    by_path = {r.path: doc for r, doc in docs(render(small_lab, RenderContext()))}
    ingress = by_path["kubernetes/kind/chart/ingress-chart.yaml"]
    # the chart's Service is reached by its port number (service_ports), not a name
    assert ingress["spec"]["defaultBackend"]["service"] == {"name": "chart",
                                                            "port": {"number": 80}}
    cluster = by_path["kubernetes/kind/chart/cluster-chart-db.yaml"]
    assert cluster["metadata"]["namespace"] == "chart"
    assert cluster["spec"] == {"instances": 1, "storage": {"size": "1Gi"}}


def test_custom_resources_match_crd_schemas(blumeops_lab: Lab, small_lab: Lab) -> None:
    """Every custom resource blumeops renders passes its CRD's schema (kubernetes/crds.py)."""
    from blumeops.kubernetes import argocd

    seen: set[str] = set()
    for lab in (blumeops_lab, small_lab):
        resources = render(lab, RenderContext()) + argocd.render(lab, RenderContext())
        for res, doc in docs(resources):
            if res.kind in CORE_KINDS:
                continue
            assert crds.known(doc), f"{res.path}: no schema for {doc['apiVersion']}"
            assert crds.problems(doc) == [], res.path
            seen.add(res.kind)
    assert seen == {"ExternalSecret", "ClusterSecretStore", "Cluster", "Application"}


def test_crd_schemas_refuse_mistakes(small_lab: Lab) -> None:
    """Guards the guard: the vendored schemas reject what the operators would."""
    by_path = {r.path: doc for r, doc in docs(render(small_lab, RenderContext()))}
    secret = by_path["kubernetes/kind/web/externalsecret-web.yaml"]
    bad = {**secret, "spec": {**secret["spec"], "data": [{"secretKey": "A",
                                                          "remoteRef": {"keyy": "x"}}]}}
    assert any("'key' is a required property" in p for p in crds.problems(bad))
    old = {**secret, "apiVersion": "external-secrets.io/v1beta1"}
    assert "no longer served" in crds.problems(old)[0]
    store = by_path["kubernetes/kind/_cluster/clustersecretstore-onepassword.yaml"]
    assert crds.problems({**store, "metadata": {**store["metadata"], "namespace": "x"}})
    app = yaml.safe_load(next(r for r in argocd_render(small_lab) if r.name == "chart").body)
    both = {**app, "spec": {**app["spec"], "source": app["spec"]["sources"][0]}}
    assert crds.problems(both)


def argocd_render(lab: Lab) -> list[Resource]:
    from blumeops.kubernetes import argocd

    return argocd.render(lab, RenderContext())


def test_store_is_declared_not_guessed(small_lab: Lab) -> None:
    """A service named like 1Password Connect does not make a store; a declared one does."""
    data = small_lab_data()
    del data["clusters"]["kind"]["secret_store"]
    data["services"]["onepassword-connect"] = {"kubernetes": "kind", "image": "x/connect:1",
                                               "ports": {"http": 8080}}
    lab = Lab.model_validate(data)
    assert not [r for r in render(lab, RenderContext()) if r.kind == "ClusterSecretStore"]
    data["clusters"]["kind"]["secret_store"] = {"kind": "onepassword",
                                                "connect": "onepassword-connect",
                                                "name": "vault-one"}
    lab = Lab.model_validate(data)
    (store,) = [yaml.safe_load(r.body) for r in render(lab, RenderContext())
                if r.kind == "ClusterSecretStore"]
    assert store["metadata"]["name"] == "vault-one"
    assert store["spec"]["provider"]["onepassword"]["connectHost"] == (
        "http://onepassword-connect.onepassword-connect.svc.cluster.local:8080")
    secret = next(yaml.safe_load(r.body) for r in render(lab, RenderContext())
                  if r.kind == "ExternalSecret")
    assert secret["spec"]["secretStoreRef"]["name"] == "vault-one"


def test_passthrough_keeps_every_derived_layer(blumeops_lab: Lab) -> None:
    """argocd is a pinned Helm chart, yet keeps its ingress and tailnet tag, its scrape
    job, its docs page and its Homepage entry."""
    from blumeops.render import render_lab

    assert blumeops_lab.services["argocd"].helm is not None
    out = {r.path: r.body for r in render_lab(blumeops_lab)}
    ingress = yaml.safe_load(out["kubernetes/minikube/argocd/ingress-argocd-server.yaml"])
    assert ingress["metadata"]["annotations"]["tailscale.com/tags"] == "tag:k8s,tag:argocd"
    assert ingress["spec"]["defaultBackend"]["service"] == {"name": "argocd-server",
                                                            "port": {"number": 80}}
    assert not any(p.startswith("kubernetes/minikube/argocd/deployment") for p in out)
    prometheus = yaml.safe_load(out["prometheus/prometheus.yml"])
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "argocd"]
    assert job["static_configs"][0]["targets"] == ["argocd-server.argocd.svc:8083"]
    assert "argocd" in out["docs/services/argocd.md"]
    assert "argocd.ops.eblu.me" in out["homepage/services.yaml"]
    assert "tag:argocd" in out["tailscale/policy.hujson"]


def test_daemonset_with_shared_storage_is_noted() -> None:
    data = small_lab_data()
    data["services"]["dns"]["storage"] = {"cache": {"size": "1Gi", "mount": "/cache"}}
    notes = kubernetes_notes(Lab.model_validate(data))
    assert any("'dns' is a DaemonSet sharing ReadWriteOnce storage cache" in n for n in notes)


def test_tcp_route_reaches_the_service_port() -> None:
    """The Tailscale operator exposes the Service, so a tcp route's upstream is its port."""
    from blumeops.catalog.resolve import service_routes

    data = small_lab_data()
    data["services"]["db"]["service_ports"] = {"pg": 15432}
    lab = Lab.model_validate(data)
    (route,) = service_routes(lab, "db")
    assert (route.upstream, route.upstream_port) == ("db.tail1234.ts.net:15432", 15432)


def test_secrets_without_a_store_warn(tmp_path: Path) -> None:
    data = small_lab_data()
    del data["clusters"]["kind"]["secret_store"]
    result = load_data(tmp_path, data)
    assert result.lab is not None
    (warning,) = [d for d in result.diagnostics if d.rule == "no-secret-store"]
    assert warning.severity == "warning" and "clusters.kind.secret_store" in warning.message
    assert not [r for r in render(result.lab, RenderContext()) if r.kind == "ClusterSecretStore"]


def test_ingress_carries_the_tags_the_policy_names_it_by(blumeops_lab: Lab) -> None:
    """A service's extra tags reach its ingress device, as the derived policy assumes."""
    from blumeops.tailnet.policy import ingress_tags

    name = next(n for n, s in blumeops_lab.services.items()
                if s.kubernetes and s.routes and not s.passthrough)
    services = dict(blumeops_lab.services)
    services[name] = services[name].model_copy(update={"tags": ["dashboards"]})
    lab = blumeops_lab.model_copy(update={"services": services})
    [ingress] = [yaml.safe_load(r.body) for r in render(lab, RenderContext())
                 if r.kind == "Ingress" and r.service == name]
    tags = ingress["metadata"]["annotations"]["tailscale.com/tags"].split(",")
    assert "tag:dashboards" in tags
    assert tuple(tags) == ingress_tags(lab, name)
