"""ArgoCD Applications: one per Kubernetes service, under one app-of-apps per cluster.

ArgoCD reads the manifests `blumeops render --out` wrote into the cluster's git repo
(`repo_url`, under `path`), so each Application points at one service's directory. With a
`deploy_branch`, blumeops writes them there itself (blumeops.kubernetes.hydrate) and every
Application follows that branch. The
app-of-apps owns the directory of Applications, so removing a service from the catalog
prunes its Application, and the finalizer on each child prunes the service's objects.
A cluster without `repo_url` gets no Applications: `argocd_notes` says why.

A service installed by a Helm chart, or from a directory of manifests (or a
kustomization) kept beside the catalog, gets an Application with several sources: the
chart or that directory, and the directory of what blumeops derives for it (namespace,
ingress, ExternalSecret, passed-through objects).
"""

from __future__ import annotations

from typing import Any

from blumeops.catalog.model import Cluster, Lab, Service
from blumeops.catalog.resolve import application_name
from blumeops.core.resources import Resource
from blumeops.kubernetes.render import (
    CLUSTER_DIR,
    cluster_services,
    dump_yaml,
    labels,
    namespace_of,
)
from blumeops.render import RenderContext

Doc = dict[str, Any]

ARGOCD_NAMESPACE = "argocd"
IN_CLUSTER = "https://kubernetes.default.svc"
FINALIZER = "resources-finalizer.argocd.argoproj.io"


def repo_path(cluster: Cluster, *parts: str) -> str:
    """A path inside the repo, relative to its root: '.' and empty parts drop out."""
    pieces = [p.strip("/") for p in (cluster.path, *parts)]
    return "/".join(p for p in pieces if p and p != ".")


def target_revision(cluster: Cluster) -> str:
    """What ArgoCD follows: the deploy branch blumeops hydrates, else the repo's HEAD
    (output committed by hand with `blumeops render`)."""
    return cluster.deploy_branch or "HEAD"


def root_app_name(lab: Lab, cluster: str | None = None) -> str:
    """The app-of-apps: `LAB-apps`, or `LAB-CLUSTER-apps` for a cluster another cluster's
    ArgoCD delivers (both live in that one ArgoCD, so their names must differ)."""
    if cluster is not None and lab.clusters[cluster].delivered_by is not None:
        return f"{lab.lab}-{cluster}-apps"
    return f"{lab.lab}-apps"


def cluster_app_name(lab: Lab, cluster: str | None = None) -> str:
    if cluster is not None and lab.clusters[cluster].delivered_by is not None:
        return f"{lab.lab}-{cluster}-cluster"
    return f"{lab.lab}-cluster"


def destination_server(cluster: Cluster) -> str:
    """Where an Application's objects go: the cluster's API server as its delivering
    ArgoCD reaches it, or ArgoCD's own cluster."""
    return cluster.server if cluster.delivered_by is not None and cluster.server else IN_CLUSTER


def lab_repo_path(lab: Lab, *parts: str) -> str:
    """A path beside the catalog, relative to the repo root: the lab sits at the
    controller's `lab_path` (the repo root when the lab declares no controller)."""
    base = lab.controller.lab_path if lab.controller is not None else "."
    pieces = [p.strip("/") for p in (base, *parts)]
    return "/".join(p for p in pieces if p and p != ".") or "."


def extra_sources(lab: Lab, cluster: Cluster, name: str, svc: Service) -> list[Doc]:
    """What ArgoCD installs besides blumeops' own manifests: a chart, or a directory."""
    if svc.helm is not None:
        chart = svc.helm
        # The release is the service's name; `names.kubernetes` is the Service the chart
        # makes from it (argo-cd released as 'argocd' serves 'argocd-server').
        helm: Doc = {"releaseName": chart.release or name}
        if chart.values:
            helm["valuesObject"] = chart.values
        return [{"repoURL": chart.repo, "chart": chart.chart, "targetRevision": chart.version,
                 "helm": helm}]
    if svc.manifests is not None:
        # ArgoCD finds a kustomization.yaml itself; otherwise it applies the directory.
        return [{"repoURL": cluster.repo_url, "path": lab_repo_path(lab, svc.manifests),
                 "targetRevision": "HEAD"}]
    return []


def _application(lab: Lab, cluster: Cluster, name: str, owner: str, path: str,
                 namespace: str | None, child: bool, exclude: str | None = None,
                 extra: list[Doc] | None = None, server: str = IN_CLUSTER) -> Doc:
    meta: Doc = {"name": name, "namespace": ARGOCD_NAMESPACE, "labels": labels(lab, owner)}
    if child:
        # Deleting the Application (pruned by the app-of-apps) deletes what it made.
        meta["finalizers"] = [FINALIZER]
    source: Doc = {"repoURL": cluster.repo_url, "path": path,
                   "targetRevision": target_revision(cluster)}
    if exclude is not None:
        source["directory"] = {"exclude": exclude}
    destination: Doc = {"server": server}
    if namespace is not None:
        destination["namespace"] = namespace
    sources: Doc = {"sources": [*extra, source]} if extra else {"source": source}
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": meta,
        "spec": {
            "project": "default",
            **sources,
            "destination": destination,
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            },
        },
    }


def _resource(cluster_name: str, doc: Doc, header: str, service: str | None = None,
              depends_on: tuple[str, ...] = ()) -> Resource:
    name: str = doc["metadata"]["name"]
    return Resource(
        target=f"argocd@{cluster_name}", kind="Application", name=name,
        body=header + dump_yaml(doc), path=f"argocd/{cluster_name}/{name}.yaml",
        service=service, depends_on=depends_on,
    )


def render_cluster(lab: Lab, ctx: RenderContext, cluster_name: str,
                   cluster: Cluster) -> list[Resource]:
    header = ctx.header("#")
    services = cluster_services(lab, cluster_name)
    out: list[Resource] = []
    server = destination_server(cluster)
    for name, svc in services:
        path = repo_path(cluster, "kubernetes", cluster_name, name)
        app = application_name(name, svc)
        doc = _application(lab, cluster, app, name, path, namespace_of(name, svc), child=True,
                           extra=extra_sources(lab, cluster, name, svc), server=server)
        out.append(_resource(cluster_name, doc, header, name, tuple(svc.depends_on)))
    if cluster.secret_store is not None or delivers_others(lab, cluster_name):
        # Cluster-scoped objects (the ClusterSecretStore, the Secrets that let this
        # ArgoCD reach the clusters it delivers) live in their own directory.
        path = repo_path(cluster, "kubernetes", cluster_name, CLUSTER_DIR)
        app = cluster_app_name(lab, cluster_name)
        doc = _application(lab, cluster, app, app, path, None, child=True, server=server)
        out.append(_resource(cluster_name, doc, header))
    root = root_app_name(lab, cluster_name)
    own = cluster.delivered_by is None
    doc = _application(lab, cluster, root, root, repo_path(cluster, "argocd", cluster_name),
                       ARGOCD_NAMESPACE, child=False, exclude=f"{root}.yaml" if own else None)
    if cluster.delivered_by is None:
        # The root is applied once by hand; it does not manage itself.
        out.append(_resource(cluster_name, doc, header))
    else:
        # A delivered cluster's root lives with its ArgoCD's Applications, so that
        # ArgoCD's own root owns it: no second manual step.
        doc["metadata"]["finalizers"] = [FINALIZER]
        out.append(_resource(cluster.delivered_by, doc, header))
    return out


def delivers_others(lab: Lab, cluster_name: str) -> bool:
    """Whether this cluster's ArgoCD delivers another cluster's Applications."""
    return any(c.delivered_by == cluster_name for c in lab.clusters.values())


def renders_applications(lab: Lab, cluster_name: str, cluster: Cluster) -> bool:
    """Whether this cluster gets Applications: ArgoCD delivers it from a repository and
    it has services (engine/targets.py names them without rendering)."""
    return (cluster.delivery == "argocd" and cluster.repo_url is not None
            and bool(cluster_services(lab, cluster_name)))


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    out: list[Resource] = []
    for cluster_name, cluster in lab.clusters.items():
        if renders_applications(lab, cluster_name, cluster):
            out.extend(render_cluster(lab, ctx, cluster_name, cluster))
    return out


def argocd_notes(lab: Lab) -> list[str]:
    """Why a cluster delivered by ArgoCD got no Applications, or what could clash."""
    notes = []
    for cluster_name, cluster in lab.clusters.items():
        if cluster.delivery != "argocd" or not cluster_services(lab, cluster_name):
            continue
        if cluster.repo_url is None:
            notes.append(
                f"cluster '{cluster_name}' is delivered by ArgoCD but has no 'repo_url': no "
                "Applications rendered. Set clusters."
                f"{cluster_name}.repo_url to the git repository holding `blumeops render "
                f"--out` output (under '{cluster.path}'), or use 'delivery: apply'")
            continue
        beside = [n for n, s in cluster_services(lab, cluster_name) if s.manifests is not None]
        if beside and (lab.controller is None or lab.controller.source != cluster.repo_url):
            notes.append(
                f"cluster '{cluster_name}': ArgoCD reads the manifests of "
                f"{', '.join(beside)} from {cluster.repo_url} at "
                f"'{lab_repo_path(lab)}'; keep the lab there (the controller's lab_path)")
        for app in (root_app_name(lab, cluster_name), cluster_app_name(lab, cluster_name)):
            if app in lab.services and lab.services[app].kubernetes == cluster_name:
                notes.append(f"service '{app}' has the name of blumeops' own ArgoCD "
                             f"Application in cluster '{cluster_name}'; rename the service")
    return notes
