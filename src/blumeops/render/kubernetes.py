"""Kubernetes manifests: one directory of plain YAML per service, ready for ArgoCD.

Each Kubernetes service gets a Namespace, a Deployment (or a StatefulSet when storage
follows the pod), a Service, PVCs, a Tailscale Ingress for its routes and an
ExternalSecret for its secrets; the cluster gets one 1Password ClusterSecretStore.
One manifest per file, so a change to one service touches only that service's files.

YAML is written by a small emitter (`dump_yaml`) rather than `yaml.safe_dump`: PyYAML's
representer costs ~0.15 ms per document even with libyaml, which is most of the render
budget at 1,000 services. The emitter handles exactly the plain data we build (dicts,
lists, str, int, bool, None) in PyYAML's block style, and tests check it round-trips.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import yaml

from blumeops.catalog.model import Cluster, Health, Lab, Service
from blumeops.catalog.resolve import ingress_name, split_route_key
from blumeops.engine.resources import Resource
from blumeops.render import RenderContext

Doc = dict[str, Any]

SECRET_STORE = "onepassword"  # the ClusterSecretStore every ExternalSecret reads
CLUSTER_DIR = "_cluster"  # cluster-scoped resources; '_' cannot clash with a DNS label
INGRESS_CLASS = "tailscale"
SECRET_FILES_VOLUME = "blumeops-secret-files"
# Where the 1Password Connect token lives when the lab does not say: bootstrapped by hand.
CONNECT_SERVICE = "onepassword-connect"
CONNECT_TOKEN_SECRET = "onepassword-connect-token"
ESO_SERVICE = "external-secrets"
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterSecretStore"})


# --- YAML ---------------------------------------------------------------------------

_PLAIN = re.compile(r"^-*[A-Za-z0-9_./][A-Za-z0-9_./@+=,-]*(:[A-Za-z0-9_./@+=,-]+)*$")
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"
# Characters YAML will not read raw (non-printables, and line breaks beyond \n).
_UNSAFE = re.compile("[^\x09\x0a\x0d\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
                     "|[\u2028\u2029\ufeff]")


def _implicit_tag(value: str) -> str:
    """The type a plain scalar reads back as (PyYAML's own YAML 1.1 rules)."""
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag


@lru_cache(maxsize=65536)
def _scalar_str(value: str) -> str:
    """A string as PyYAML would write it: plain if it reads back as the same string."""
    if _PLAIN.match(value) and _implicit_tag(value) == _STR_TAG:
        return value
    if value and value.isprintable() and value == value.strip():
        return "'" + value.replace("'", "''") + "'"
    # JSON's double-quoted form is valid YAML once what YAML may not hold raw is escaped.
    return _UNSAFE.sub(_escape, json.dumps(value, ensure_ascii=False))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _scalar_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _block(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_scalar(key)}:"
            if isinstance(item, dict) and item:
                out.append(head)
                _block(item, indent + 2, out)
            elif isinstance(item, list) and item:
                out.append(head)
                _block(item, indent, out)  # PyYAML does not indent lists under keys
            else:
                out.append(f"{head} {_flow_empty(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                start = len(out)
                _block(item, indent + 2, out)
                out[start] = f"{pad}- {out[start][indent + 2:]}"
            else:
                out.append(f"{pad}- {_flow_empty(item)}")
    else:
        out.append(pad + _scalar(value))


def _flow_empty(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def dump_yaml(doc: Doc) -> str:
    """One YAML document in block style, keys in insertion order, deterministic."""
    out: list[str] = []
    _block(doc, 0, out)
    out.append("")
    return "\n".join(out)


# --- helpers ------------------------------------------------------------------------


def namespace_of(name: str, svc: Service) -> str:
    return svc.namespace or name


def labels(lab: Lab, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/managed-by": "blumeops",
        "blumeops.dev/lab": lab.lab,
    }


def _meta(lab: Lab, service: str, name: str, namespace: str | None) -> Doc:
    meta: Doc = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels(lab, service)
    return meta


def _secret_parts(ref: str) -> tuple[str | None, str, str | None]:
    """op://VAULT/ITEM/FIELD -> (VAULT, ITEM, FIELD); vault:NAME -> (None, NAME, None)."""
    if ref.startswith("op://"):
        vault, item, field = ref[len("op://"):].split("/", 2)
        return vault, item, field
    return None, ref.partition(":")[2], None


def _probe(health: Health, svc: Service) -> Doc | None:
    timeout = max(1, math.ceil(health.timeout))
    action: Doc
    if health.command is not None:
        action = {"exec": {"command": list(health.command)}}
    elif health.tcp is not None:
        if health.tcp not in svc.ports:
            return None
        action = {"tcpSocket": {"port": health.tcp}}
    else:
        port = health.port or next(iter(svc.ports), None)
        if port is None or port not in svc.ports or health.http is None:
            return None
        action = {"httpGet": {"path": health.http, "port": port}}
    return {**action, "periodSeconds": 10, "timeoutSeconds": timeout}


def _http_route_port(lab: Lab, svc: Service) -> str | None:
    """The port the Tailscale ingress serves: the first http route's, if any."""
    for key, route in svc.routes.items():
        if route.protocol == "http" and route.port in svc.ports:
            _, domain = split_route_key(key)
            if domain in lab.domains:
                return route.port
    return None


def _tcp_routed(lab: Lab, svc: Service) -> bool:
    return any(
        r.protocol == "tcp" and r.port in svc.ports and split_route_key(k)[1] in lab.domains
        for k, r in svc.routes.items()
    )


# --- manifests ----------------------------------------------------------------------


def _pod_template(lab: Lab, name: str, svc: Service, secret_name: str) -> Doc:
    container: Doc = {"name": name, "image": svc.image or ""}
    if svc.args:
        container["args"] = list(svc.args)
    if svc.ports:
        container["ports"] = [
            {"name": port_name, "containerPort": port, "protocol": "TCP"}
            for port_name, port in svc.ports.items()
        ]
    env: list[Doc] = [{"name": k, "value": v} for k, v in svc.environment.items()]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": k}}}
        for k, ref in svc.secrets.items()
        if ref.file is None
    ]
    if env:
        container["env"] = env
    if svc.health is not None:
        probe = _probe(svc.health, svc)
        if probe is not None:
            container["readinessProbe"] = probe
            container["livenessProbe"] = {**probe, "failureThreshold": 6}
    mounts: list[Doc] = [{"name": vol, "mountPath": s.mount} for vol, s in svc.storage.items()]
    volumes: list[Doc] = [
        {"name": vol, "persistentVolumeClaim": {"claimName": f"{name}-{vol}"}}
        for vol, s in svc.storage.items()
        if not s.per_pod
    ]
    files = [(k, ref.file) for k, ref in svc.secrets.items() if ref.file is not None]
    if files:
        # Secrets declared as files: one read-only subPath mount each, mode 0600.
        mounts += [
            {"name": SECRET_FILES_VOLUME, "mountPath": path, "subPath": key, "readOnly": True}
            for key, path in files
        ]
        volumes.append({"name": SECRET_FILES_VOLUME, "secret": {
            "secretName": secret_name, "defaultMode": 0o600,
            "items": [{"key": key, "path": key} for key, _ in files],
        }})
    if mounts:
        container["volumeMounts"] = mounts
    pod_meta: Doc = {"labels": labels(lab, name)}
    if svc.metrics is not None and svc.metrics.port in svc.ports:
        pod_meta["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(svc.ports[svc.metrics.port]),
            "prometheus.io/path": svc.metrics.path,
        }
    spec: Doc = {"containers": [container]}
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": pod_meta, "spec": spec}


def _claim_spec(size: str, storage_class: str | None) -> Doc:
    spec: Doc = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return spec


def _workload(lab: Lab, name: str, svc: Service, ns: str, secret_name: str) -> Doc:
    selector = {"matchLabels": {"app.kubernetes.io/name": name}}
    template = _pod_template(lab, name, svc, secret_name)
    per_pod = {vol: s for vol, s in svc.storage.items() if s.per_pod}
    meta = _meta(lab, name, name, ns)
    if per_pod:
        return {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
            "spec": {
                "serviceName": f"{name}-headless",
                "replicas": svc.replicas,
                "selector": selector,
                "template": template,
                "volumeClaimTemplates": [
                    {"metadata": {"name": vol}, "spec": _claim_spec(s.size, s.storage_class)}
                    for vol, s in per_pod.items()
                ],
            },
        }
    spec: Doc = {"replicas": svc.replicas, "selector": selector}
    if svc.storage:
        # A ReadWriteOnce claim cannot be held by old and new pods at once.
        spec["strategy"] = {"type": "Recreate"}
    spec["template"] = template
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def _services(lab: Lab, name: str, svc: Service, ns: str, stateful: bool) -> Iterator[Doc]:
    ports = [
        {"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
        for port_name, port in svc.ports.items()
    ]
    selector = {"app.kubernetes.io/name": name}
    if ports:
        meta = _meta(lab, name, name, ns)
        if _tcp_routed(lab, svc) and _http_route_port(lab, svc) is None:
            # TCP routes: the Tailscale operator exposes the Service itself on the tailnet.
            meta["annotations"] = {
                "tailscale.com/expose": "true",
                "tailscale.com/hostname": ingress_name(name, svc, lab),
            }
        yield {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"type": "ClusterIP", "selector": selector, "ports": ports}}
    if stateful:
        spec: Doc = {"clusterIP": "None", "selector": selector}
        if ports:
            spec["ports"] = ports
        yield {"apiVersion": "v1", "kind": "Service",
               "metadata": _meta(lab, name, f"{name}-headless", ns), "spec": spec}


def _ingress(lab: Lab, name: str, svc: Service, ns: str) -> Doc | None:
    port = _http_route_port(lab, svc)
    if port is None:
        return None
    meta = _meta(lab, name, name, ns)
    # The device's own tag, which the lab's Tailscale policy names it by.
    device = ingress_name(name, svc, lab)
    meta["annotations"] = {"tailscale.com/tags": f"tag:k8s,tag:{device}"}
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "defaultBackend": {"service": {"name": name, "port": {"name": port}}},
            "tls": [{"hosts": [ingress_name(name, svc, lab)]}],
        },
    }


def _external_secret(lab: Lab, name: str, svc: Service, ns: str, secret_name: str) -> Doc:
    data = []
    for key, ref in svc.secrets.items():
        _, item, field = _secret_parts(ref.ref)
        remote: Doc = {"key": item}
        if field is not None:
            remote["property"] = field
        data.append({"secretKey": key, "remoteRef": remote})
    meta = _meta(lab, name, name, ns)
    # Before the workload (wave -1), and dry-run must not fail while the CRD is absent.
    meta["annotations"] = {
        "argocd.argoproj.io/sync-wave": "-1",
        "argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true",
    }
    return {
        "apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "metadata": meta,
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": SECRET_STORE},
            "target": {"name": secret_name, "creationPolicy": "Owner"},
            "data": data,
        },
    }


def _secret_store(lab: Lab, cluster: str, services: list[tuple[str, Service]]) -> Doc:
    vaults: dict[str, int] = {}
    for _, svc in services:
        for ref in svc.secrets.values():
            vault, _, _ = _secret_parts(ref.ref)
            if vault is not None and vault not in vaults:
                vaults[vault] = len(vaults) + 1
    by_name = dict(services)
    connect = by_name.get(CONNECT_SERVICE)
    connect_ns = namespace_of(CONNECT_SERVICE, connect) if connect else CONNECT_SERVICE
    connect_port = next(iter(connect.ports.values()), 8080) if connect else 8080
    eso = by_name.get(ESO_SERVICE)
    eso_ns = namespace_of(ESO_SERVICE, eso) if eso else ESO_SERVICE
    meta: Doc = {"name": SECRET_STORE, "labels": labels(lab, SECRET_STORE)}
    meta["annotations"] = {"argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true"}
    return {
        "apiVersion": "external-secrets.io/v1beta1", "kind": "ClusterSecretStore",
        "metadata": meta,
        "spec": {"provider": {"onepassword": {
            "connectHost": f"http://{CONNECT_SERVICE}.{connect_ns}.svc.cluster.local:"
                           f"{connect_port}",
            # vault:NAME references have no vault of their own: they read the lab's.
            "vaults": vaults or {lab.lab: 1},
            "auth": {"secretRef": {"connectTokenSecretRef": {
                "name": CONNECT_TOKEN_SECRET, "namespace": eso_ns, "key": "token",
            }}},
        }}},
    }


def _resource(cluster: str, directory: str, doc: Doc, header: str,
              service: str | None = None, depends_on: tuple[str, ...] = ()) -> Resource:
    kind: str = doc["kind"]
    meta = doc["metadata"]
    name = meta["name"] if kind in CLUSTER_SCOPED else f"{meta['namespace']}/{meta['name']}"
    return Resource(
        target=f"k8s@{cluster}", kind=kind, name=name,
        body=header + dump_yaml(doc),
        path=f"kubernetes/{cluster}/{directory}/{kind.lower()}-{meta['name']}.yaml",
        service=service, depends_on=depends_on,
    )


def manifests(lab: Lab, name: str, svc: Service, own_namespace: bool) -> list[Doc]:
    """Every manifest of one service, in apply order. `own_namespace`: emit the Namespace."""
    ns = namespace_of(name, svc)
    docs: list[Doc] = []
    if own_namespace:
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": labels(lab, name)}})
    secret_name = name
    if svc.secrets:
        docs.append(_external_secret(lab, name, svc, ns, secret_name))
    for vol, s in svc.storage.items():
        if not s.per_pod:
            docs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "metadata": _meta(lab, name, f"{name}-{vol}", ns),
                         "spec": _claim_spec(s.size, s.storage_class)})
    workload = _workload(lab, name, svc, ns, secret_name)
    docs.append(workload)
    docs.extend(_services(lab, name, svc, ns, workload["kind"] == "StatefulSet"))
    ingress = _ingress(lab, name, svc, ns)
    if ingress is not None:
        docs.append(ingress)
    return docs


def cluster_services(lab: Lab, cluster: str) -> list[tuple[str, Service]]:
    return [(n, s) for n, s in lab.services.items() if s.kubernetes == cluster]


def render_cluster(lab: Lab, ctx: RenderContext, cluster: str, _spec: Cluster) -> list[Resource]:
    header = ctx.header("#")
    services = cluster_services(lab, cluster)
    out: list[Resource] = []
    namespaces: set[str] = set()
    for name, svc in services:
        ns = namespace_of(name, svc)
        own = ns not in namespaces  # a shared namespace belongs to its first service
        namespaces.add(ns)
        deps = tuple(svc.depends_on)
        out.extend(_resource(cluster, name, doc, header, name, deps)
                   for doc in manifests(lab, name, svc, own))
    if any(svc.secrets for _, svc in services):
        out.append(_resource(cluster, CLUSTER_DIR, _secret_store(lab, cluster, services), header))
    return out


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    out: list[Resource] = []
    for cluster, spec in lab.clusters.items():
        out.extend(render_cluster(lab, ctx, cluster, spec))
    return out


def kubernetes_notes(lab: Lab) -> list[str]:
    """What the manifests cannot express, said plainly rather than rendered wrong."""
    notes = []
    for name, svc in lab.services.items():
        if svc.kubernetes is None:
            continue
        if _tcp_routed(lab, svc) and _http_route_port(lab, svc) is not None:
            notes.append(
                f"service '{name}' has http and tcp routes: its Tailscale Ingress serves "
                "only http(s), so its tcp routes are not exposed on the tailnet")
        shared = [v for v, s in svc.storage.items() if not s.per_pod]
        if shared and svc.replicas > 1:
            notes.append(
                f"service '{name}' has {svc.replicas} replicas sharing ReadWriteOnce "
                f"storage {', '.join(shared)}: pods on other nodes cannot mount it "
                "(use per_pod: true)")
    return notes
