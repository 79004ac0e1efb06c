"""Kubernetes' catalog rules: workloads a pod can really have, passed-through objects
valid for their CRD schemas, secret stores, and clusters delivered by another's ArgoCD."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from blumeops.catalog.diagnostics import Diagnostic, Marks, unknown
from blumeops.catalog.model import DNS_LABEL, K8S_NAME, Lab
from blumeops.catalog.resolve import application_name, argocd_of, kubernetes_name
from blumeops.kubernetes import crds

# Kubernetes-only service fields, and those a chart or manifests directory replaces.
_K8S_FIELDS = ("workload", "sidecars", "init_containers", "resources", "runtime_class",
               "node_selector", "readiness", "liveness", "service_ports", "udp", "helm",
               "manifests", "objects")
_REPLACED_BY_PASSTHROUGH = ("image", "args", "replicas", "environment", "storage", "workload",
                            "sidecars", "init_containers", "resources", "runtime_class",
                            "node_selector", "readiness", "liveness", "udp")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                            r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def kubernetes_workloads(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Workload kinds, containers, probes and ports a pod can really have."""
    for name, svc in lab.services.items():
        at = ("services", name)
        if svc.kubernetes is None:
            for field in _K8S_FIELDS:
                if field in svc.model_fields_set:
                    yield marks.diag((*at, field), "runtime-field",
                                     f"'{field}' is for Kubernetes services; '{name}' is native")
            continue
        if svc.helm is not None and svc.manifests is not None:
            yield marks.diag((*at, "manifests"), "passthrough",
                             f"service '{name}' is installed by 'helm' or by 'manifests', "
                             "not both")
        if svc.passthrough:
            by = "a Helm chart" if svc.helm is not None else "its manifests"
            for field in _REPLACED_BY_PASSTHROUGH:
                if field in svc.model_fields_set:
                    yield marks.diag((*at, field), "passthrough",
                                     f"'{field}' has no effect: service '{name}' is installed "
                                     f"by {by} (set it in the chart's values or manifests)")
            cluster = lab.clusters.get(svc.kubernetes)
            if cluster is not None and cluster.delivery != "argocd":
                yield marks.diag((*at, "helm" if svc.helm else "manifests"), "passthrough",
                                 f"service '{name}' is installed by {by}, which ArgoCD "
                                 f"delivers; cluster '{svc.kubernetes}' uses "
                                 f"'delivery: {cluster.delivery}'")
        per_pod = [v for v, st in svc.storage.items() if st.per_pod]
        if svc.workload == "daemonset":
            if per_pod:
                yield marks.diag((*at, "storage", per_pod[0]), "workload",
                                 "a DaemonSet cannot have per-pod storage (per_pod: true "
                                 "needs a StatefulSet)")
            if "replicas" in svc.model_fields_set:
                yield marks.diag((*at, "replicas"), "workload",
                                 "a DaemonSet runs one pod per node; remove 'replicas'")
        elif svc.workload == "deployment" and per_pod:
            yield marks.diag((*at, "workload"), "workload",
                             f"per-pod storage '{per_pod[0]}' needs a StatefulSet, not a "
                             "Deployment")
        yield from _containers(lab, marks, name)
        yield from _port_options(marks, name, svc)
        if svc.runtime_class is not None and not _DNS_SUBDOMAIN.match(svc.runtime_class):
            yield marks.diag((*at, "runtime_class"), "dns-label",
                             f"runtime_class '{svc.runtime_class}' is not a valid "
                             "RuntimeClass name (a DNS subdomain)")
        for key in svc.node_selector:
            if not _LABEL_KEY.match(key):
                yield marks.diag((*at, "node_selector", key), "dns-label",
                                 f"node_selector key '{key}' is not a Kubernetes label key")


def _containers(lab: Lab, marks: Marks, name: str) -> Iterator[Diagnostic]:
    svc = lab.services[name]
    at = ("services", name)
    seen = {kubernetes_name(name, svc)}
    claimed: dict[str, str] = {}
    for section in ("sidecars", "init_containers"):
        containers = getattr(svc, section)
        for cname, spec in containers.items():
            here = (*at, section, cname)
            if not DNS_LABEL.match(cname):
                yield marks.diag(here, "dns-label",
                                 f"container name '{cname}' is not a valid DNS label")
            elif cname in seen:
                yield marks.diag(here, "duplicate-container",
                                 f"container name '{cname}' is already used in this pod")
            seen.add(cname)
            if section == "init_containers" and spec.ports:
                yield marks.diag((*here, "ports"), "container-port",
                                 "an init container serves no ports; remove 'ports'")
            for port in spec.ports:
                if port not in svc.ports:
                    yield marks.diag((*here, "ports"), "unknown-reference",
                                     unknown("port", port, svc.ports)
                                     + " (declare it in the service's 'ports')")
                elif claimed.setdefault(port, cname) != cname:
                    yield marks.diag((*here, "ports"), "container-port",
                                     f"port '{port}' is already served by container "
                                     f"'{claimed[port]}'")
            for vol in spec.mounts:
                if vol not in svc.storage:
                    yield marks.diag((*here, "mounts", vol), "unknown-reference",
                                     unknown("storage volume", vol, svc.storage))


def _port_options(marks: Marks, name: str, svc: Any) -> Iterator[Diagnostic]:
    at = ("services", name)
    for field in ("service_ports", "udp"):
        for port in getattr(svc, field):
            if port not in svc.ports:
                path: tuple[str | int, ...] = ((*at, field, port) if field == "service_ports"
                                               else (*at, field))
                yield marks.diag(path, "unknown-reference", unknown("port", port, svc.ports))
    udp = set(svc.udp)
    uses: list[tuple[tuple[str | int, ...], str | None, str]] = [
        ((*at, "routes", key), r.port, f"route '{key}' ({r.protocol} over TCP)")
        for key, r in svc.routes.items()]
    for probe_field in ("health", "readiness", "liveness"):
        probe = getattr(svc, probe_field)
        if probe is not None:
            port = probe.tcp or (probe.port or next(iter(svc.ports), None)
                                 if probe.http else None)
            uses.append(((*at, probe_field), port, f"the {probe_field} probe"))
    if svc.metrics is not None:
        uses.append(((*at, "metrics"), svc.metrics.port, "the metrics scrape"))
    for path, port, what in uses:
        if port in udp:
            yield marks.diag(path, "udp-port",
                             f"port '{port}' is UDP; {what} needs a TCP port")


def passthrough_objects(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Objects passed through are Kubernetes objects, valid against their CRD when known."""
    for name, svc in lab.services.items():
        if not svc.objects:
            continue

        seen: set[tuple[str, str]] = set()
        for i, obj in enumerate(svc.objects):
            at = ("services", name, "objects", i)
            meta = obj.get("metadata")
            obj_name = meta.get("name") if isinstance(meta, dict) else None
            kind, api = obj.get("kind"), obj.get("apiVersion")
            if not (isinstance(api, str) and isinstance(kind, str) and isinstance(obj_name, str)):
                yield marks.diag(at, "k8s-object",
                                 "a passed-through object needs 'apiVersion', 'kind' and "
                                 "'metadata.name'")
                continue
            if not _DNS_SUBDOMAIN.match(obj_name):
                yield marks.diag((*at, "metadata", "name"), "dns-label",
                                 f"object name '{obj_name}' is not a valid Kubernetes name")
            if (kind, obj_name) in seen:
                yield marks.diag((*at, "metadata", "name"), "k8s-object",
                                 f"{kind} '{obj_name}' is passed through twice")
            seen.add((kind, obj_name))
            for problem in crds.problems(obj):
                yield marks.diag(at, "crd-schema", f"{kind} '{obj_name}': {problem}")


def secret_stores(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """A cluster's secret store is declared and reachable; secrets in a cluster need one."""
    for cluster_name, cluster in lab.clusters.items():
        store = cluster.secret_store
        services = [(n, s) for n, s in lab.services.items() if s.kubernetes == cluster_name]
        if store is None:
            for name, svc in services:
                if svc.secrets:
                    yield marks.diag(("services", name, "secrets"), "no-secret-store",
                                     f"cluster '{cluster_name}' declares no 'secret_store', so "
                                     f"nothing delivers the secrets of '{name}'; add clusters."
                                     f"{cluster_name}.secret_store: {{kind: onepassword, "
                                     "connect: SERVICE}", "warning")
                    break
            continue
        at = ("clusters", cluster_name, "secret_store")
        if not K8S_NAME.match(store.name):
            yield marks.diag((*at, "name"), "dns-label",
                             f"secret store name '{store.name}' is not a valid Kubernetes name")
        for field in ("token_secret", "token_namespace"):
            if not _DNS_SUBDOMAIN.match(getattr(store, field)):
                yield marks.diag((*at, field), "dns-label",
                                 f"{field} '{getattr(store, field)}' is not a valid "
                                 "Kubernetes name")
        if store.connect is not None and store.connect not in dict(services):
            yield marks.diag((*at, "connect"), "unknown-reference",
                             unknown("service", store.connect, dict(services))
                             + f" (1Password Connect must run in cluster '{cluster_name}')")


def cluster_delivery(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """A cluster another cluster's ArgoCD delivers: that ArgoCD exists, and knows how to
    reach this cluster (its server and credentials, by reference)."""
    for name, cluster in lab.clusters.items():
        at = ("clusters", name)
        by = cluster.delivered_by
        if by is None:
            for field in ("server", "credentials"):
                if field in cluster.model_fields_set:
                    yield marks.diag((*at, field), "cluster-delivery",
                                     f"'{field}' tells another cluster's ArgoCD how to reach "
                                     f"cluster '{name}'; add 'delivered_by: CLUSTER' or "
                                     "remove it")
            continue
        if by not in lab.clusters:
            yield marks.diag((*at, "delivered_by"), "unknown-reference",
                             unknown("cluster", by, lab.clusters))
            continue
        if by == name:
            yield marks.diag((*at, "delivered_by"), "cluster-delivery",
                             f"cluster '{name}' cannot be delivered by itself; remove "
                             "'delivered_by' (its own ArgoCD is the default)")
            continue
        other = lab.clusters[by]
        if other.delivery != "argocd" or other.delivered_by is not None:
            yield marks.diag((*at, "delivered_by"), "cluster-delivery",
                             f"cluster '{by}' runs no ArgoCD of its own that could deliver "
                             f"'{name}' (it is 'delivery: {other.delivery}'"
                             + (f", delivered by '{other.delivered_by}'"
                                if other.delivered_by else "") + ")")
        if cluster.delivery != "argocd":
            yield marks.diag((*at, "delivered_by"), "cluster-delivery",
                             f"cluster '{name}' is 'delivery: {cluster.delivery}'; an ArgoCD "
                             "delivers only clusters with 'delivery: argocd'")
        for field in ("server", "credentials"):
            if getattr(cluster, field) is None:
                yield marks.diag((*at, "delivered_by"), "cluster-delivery",
                                 f"cluster '{name}' is delivered by the ArgoCD of '{by}', "
                                 f"which needs its '{field}' to reach it")
        if cluster.credentials is not None and other.secret_store is None:
            yield marks.diag((*at, "credentials"), "no-secret-store",
                             f"the credentials of cluster '{name}' reach ArgoCD in '{by}' "
                             f"through an ExternalSecret; cluster '{by}' declares no "
                             "'secret_store'")


def _generated_apps(lab: Lab, cluster: str) -> list[str]:
    """The Applications blumeops names itself for a cluster (kubernetes/argocd.py)."""
    if lab.clusters[cluster].delivered_by is None:
        return [f"{lab.lab}-apps", f"{lab.lab}-cluster"]
    return [f"{lab.lab}-{cluster}-apps", f"{lab.lab}-{cluster}-cluster"]


def argocd_app_names(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Application names are unique within each ArgoCD, across every cluster it delivers:
    two Applications of one name are one object, and the second silently replaces the
    first's destination."""
    taken: dict[tuple[str, str], str] = {}
    for cluster in lab.clusters:
        argocd = argocd_of(lab, cluster)
        if argocd not in lab.clusters:
            continue  # an unknown delivered_by is reported on its own
        for app in _generated_apps(lab, cluster):
            taken.setdefault((argocd, app), f"blumeops' own Application of cluster '{cluster}'")
    for name, svc in lab.services.items():
        at = ("services", name)
        declared = svc.names.argocd
        if declared is not None:
            if not _DNS_SUBDOMAIN.match(declared):
                yield marks.diag((*at, "names", "argocd"), "bad-name",
                                 f"'{declared}' is not an ArgoCD Application name (a DNS "
                                 "subdomain: lowercase letters, digits, '-' and '.')")
                continue
            if svc.kubernetes is None:
                yield marks.diag((*at, "names", "argocd"), "bad-name",
                                 f"names.argocd has no effect: service '{name}' runs on "
                                 f"'{svc.native}'")
                continue
        if svc.kubernetes is None or svc.kubernetes not in lab.clusters:
            continue
        argocd = argocd_of(lab, svc.kubernetes)
        if argocd not in lab.clusters:
            continue
        app = application_name(name, svc)
        owner = taken.setdefault((argocd, app), f"service '{name}' (cluster "
                                                f"'{svc.kubernetes}')")
        if not owner.startswith(f"service '{name}' "):
            path = (*at, "names", "argocd") if declared else at
            yield marks.diag(path, "argocd-app-name",
                             f"ArgoCD Application '{app}' of service '{name}' (cluster "
                             f"'{svc.kubernetes}') collides with {owner} in the ArgoCD of "
                             f"cluster '{argocd}'; set names.argocd or rename the service")
