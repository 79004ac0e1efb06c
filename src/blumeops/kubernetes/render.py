"""Kubernetes manifests: one directory of plain YAML per service, ready for ArgoCD.

Each Kubernetes service gets a Namespace, a workload (Deployment; StatefulSet when storage
follows the pod or when asked; DaemonSet when asked) with its sidecars and init
containers, a Service, PVCs, a Tailscale Ingress for its routes, an ExternalSecret for
its secrets and any objects it passes through (custom resources such as a CloudNativePG
`Cluster`). A service installed by a Helm chart or a manifests directory gets only the
derived objects here (namespace, ingress, secrets, objects); ArgoCD installs the rest
(kubernetes/argocd.py). A cluster that declares a secret store gets its ClusterSecretStore.
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

from blumeops.catalog import resolve
from blumeops.catalog.model import (
    OP_REF,
    Cluster,
    Container,
    Health,
    Lab,
    Resources,
    Service,
    Storage,
)
from blumeops.catalog.resolve import ingress_name, split_route_key
from blumeops.core.resources import Resource
from blumeops.core.schedule import as_kubernetes, parse_cron, parse_duration
from blumeops.render import RenderContext
from blumeops.tailnet.policy import ingress_device_tags

Doc = dict[str, Any]

SECRET_STORE = "onepassword"  # the store ExternalSecrets name when none is declared
ESO_API = "external-secrets.io/v1"  # served since External Secrets 0.16; v1beta1 gone in 0.17
CLUSTER_DIR = "_cluster"  # cluster-scoped resources; '_' cannot clash with a DNS label
INGRESS_CLASS = "tailscale"
SECRET_FILES_VOLUME = "blumeops-secret-files"
GPU_RESOURCE = "nvidia.com/gpu"
# Kinds without a namespace (a passed-through object of these keeps none).
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterSecretStore", "ClusterExternalSecret", "ClusterRole",
    "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass", "PersistentVolume",
    "PriorityClass", "RuntimeClass", "IngressClass", "ClusterIssuer", "ClusterImageCatalog",
})


# --- YAML ---------------------------------------------------------------------------

# Words joined by ':' or one space (1Password item names such as "Web (prod)").
# `*` only past the first character (a cron schedule): leading, it would be an alias.
_PLAIN = re.compile(r"^-*[A-Za-z0-9_./][A-Za-z0-9_./@+=,()*-]*([: ][A-Za-z0-9_./@+=,()*-]+)*$")
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
    if _PLAIN.fullmatch(value) and _implicit_tag(value) == _STR_TAG:  # `$` passes "A\n"
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
    return resolve.namespace(name, svc)


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
    """op://VAULT/ITEM/FIELD -> (VAULT, ITEM, FIELD); vault:NAME -> (None, NAME, None).

    Item names keep their spaces and parentheses ("Authentik (prod)"): the 1Password
    provider of External Secrets looks items up by title.
    """
    match = OP_REF.match(ref)
    if match is not None:
        return match["vault"], match["item"], match["field"]
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


def _tcp_routed(lab: Lab, svc: Service) -> bool:
    return any(
        r.protocol == "tcp" and r.port in svc.ports and split_route_key(k)[1] in lab.domains
        for k, r in svc.routes.items()
    )


# --- manifests ----------------------------------------------------------------------


def _resources(res: Resources) -> Doc:
    out: Doc = {}
    limits: dict[str, str] = {str(k): v for k, v in res.limits.items()}
    if res.gpu:
        limits[GPU_RESOURCE] = str(res.gpu)  # extended resources are set as limits
    if limits:
        out["limits"] = limits
    if res.requests:
        out["requests"] = dict(res.requests)
    return out


def _env(environment: dict[str, str]) -> list[Doc]:
    return [{"name": k, "value": v} for k, v in environment.items()]


def _ports(svc: Service, names: list[str]) -> list[Doc]:
    return [{"name": n, "containerPort": svc.ports[n],
             "protocol": "UDP" if n in svc.udp else "TCP"}
            for n in names if n in svc.ports]


def _side_container(svc: Service, name: str, spec: Container) -> Doc:
    container: Doc = {"name": name, "image": spec.image}
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.ports:
        container["ports"] = _ports(svc, spec.ports)
    if spec.environment:
        container["env"] = _env(spec.environment)
    if spec.resources is not None:
        container["resources"] = _resources(spec.resources)
    if spec.mounts:
        container["volumeMounts"] = [{"name": vol, "mountPath": path}
                                     for vol, path in spec.mounts.items()]
    return container


def _probes(svc: Service) -> Doc:
    """Readiness and liveness: each as declared, else both from `health` (liveness waits
    longer before it restarts the pod)."""
    out: Doc = {}
    ready = svc.readiness or svc.health
    if ready is not None:
        probe = _probe(ready, svc)
        if probe is not None:
            out["readinessProbe"] = probe
    if svc.liveness is not None:
        probe = _probe(svc.liveness, svc)
        if probe is not None:
            out["livenessProbe"] = probe
    elif svc.health is not None:
        probe = _probe(svc.health, svc)
        if probe is not None:
            out["livenessProbe"] = {**probe, "failureThreshold": 6}
    return out


def _pod_template(lab: Lab, name: str, svc: Service, secret_name: str) -> Doc:
    k8s_name = resolve.kubernetes_name(name, svc)
    container: Doc = {"name": k8s_name, "image": svc.image or ""}
    if svc.args:
        container["args"] = list(svc.args)
    sidecar_ports = {p for c in svc.sidecars.values() for p in c.ports}
    main_ports = [p for p in svc.ports if p not in sidecar_ports]
    if main_ports:
        container["ports"] = _ports(svc, main_ports)
    env = _env(svc.environment)
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": k}}}
        for k, ref in svc.secrets.items()
        if ref.file is None
    ]
    if env:
        container["env"] = env
    if svc.resources is not None:
        container["resources"] = _resources(svc.resources)
    container.update(_probes(svc))
    mounts: list[Doc] = [_volume_mount(vol, s) for vol, s in svc.storage.items()]
    volumes: list[Doc] = [_volume(lab, k8s_name, vol, s) for vol, s in svc.storage.items()
                          if not s.per_pod]
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
    pod_meta: Doc = {"labels": labels(lab, k8s_name)}
    if svc.metrics is not None and svc.metrics.port in svc.ports:
        pod_meta["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(svc.ports[svc.metrics.port]),
            "prometheus.io/path": svc.metrics.path,
        }
    spec: Doc = {}
    if svc.init_containers:
        spec["initContainers"] = [_side_container(svc, n, c)
                                  for n, c in svc.init_containers.items()]
    spec["containers"] = [container] + [_side_container(svc, n, c)
                                        for n, c in svc.sidecars.items()]
    if svc.runtime_class:
        spec["runtimeClassName"] = svc.runtime_class
    if svc.node_selector:
        spec["nodeSelector"] = dict(svc.node_selector)
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": pod_meta, "spec": spec}


def _volume_mount(vol: str, spec: Storage) -> Doc:
    mount: Doc = {"name": vol, "mountPath": spec.mount}
    if spec.sub_path:
        mount["subPath"] = spec.sub_path
    if spec.read_only:
        mount["readOnly"] = True
    return mount


def _volume(lab: Lab, k8s_name: str, vol: str, spec: Storage) -> Doc:
    """A pod volume: its claim, an NFS share of another host (mounted by the kubelet, no
    PersistentVolume needed), or a directory of the node."""
    if spec.share is not None:
        host, _ = resolve.split_share(spec.share)
        share = resolve.share_of(lab, spec.share)
        nfs: Doc = {"server": resolve.host_address(lab, host),
                    "path": share.path if share is not None else "/"}
        if spec.read_only:
            nfs["readOnly"] = True
        return {"name": vol, "nfs": nfs}
    if spec.host_path is not None:
        return {"name": vol, "hostPath": {"path": spec.host_path, "type": "Directory"}}
    return {"name": vol, "persistentVolumeClaim": {"claimName": f"{k8s_name}-{vol}"}}


def claims(svc: Service) -> dict[str, Storage]:
    """The volumes that are claims (`size`), shared by the pods or per pod."""
    return {vol: s for vol, s in svc.storage.items() if s.size is not None}


def workload_kind(svc: Service) -> str:
    """The workload's kind: as declared, else a StatefulSet when storage follows the pod."""
    if svc.workload is not None:
        return {"deployment": "Deployment", "statefulset": "StatefulSet",
                "daemonset": "DaemonSet"}[svc.workload]
    return "StatefulSet" if any(s.per_pod for s in svc.storage.values()) else "Deployment"


def _claim_spec(size: str | None, storage_class: str | None) -> Doc:
    spec: Doc = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return spec


def _workload(lab: Lab, name: str, svc: Service, ns: str, secret_name: str) -> Doc:
    k8s_name = resolve.kubernetes_name(name, svc)
    selector = {"matchLabels": {"app.kubernetes.io/name": k8s_name}}
    template = _pod_template(lab, name, svc, secret_name)
    per_pod = {vol: s for vol, s in svc.storage.items() if s.per_pod}
    meta = _meta(lab, k8s_name, k8s_name, ns)
    kind = workload_kind(svc)
    if kind == "StatefulSet":
        spec: Doc = {
            "serviceName": f"{k8s_name}-headless",
            "replicas": svc.replicas,
            "selector": selector,
            "template": template,
        }
        if per_pod:
            spec["volumeClaimTemplates"] = [
                {"metadata": {"name": vol}, "spec": _claim_spec(s.size, s.storage_class)}
                for vol, s in per_pod.items()
            ]
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}
    if kind == "DaemonSet":
        # One pod per node: no replica count; the rules refuse per-pod storage here.
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
                "spec": {"selector": selector, "template": template}}
    spec = {"replicas": svc.replicas, "selector": selector}
    if claims(svc):
        # A ReadWriteOnce claim cannot be held by old and new pods at once.
        spec["strategy"] = {"type": "Recreate"}
    spec["template"] = template
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def _cron_job(lab: Lab, name: str, svc: Service, ns: str, secret_name: str) -> Doc:
    """A scheduled service: a CronJob whose pods run to completion, one run at a time."""
    assert svc.schedule is not None
    k8s_name = resolve.kubernetes_name(name, svc)
    timeout = parse_duration(svc.schedule.timeout) if svc.schedule.timeout else None
    every = svc.schedule.every_seconds
    cron = svc.schedule.cron or ""
    # The field sets written plainly (Kubernetes reads weekdays 0-6 only, no 7): the
    # cluster runs the job at exactly the times every other target does.
    schedule = ((as_kubernetes(every) or "") if every is not None
                else parse_cron(cron).standard())
    template = _pod_template(lab, name, svc, secret_name)
    template["spec"]["restartPolicy"] = "OnFailure"
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": _meta(lab, k8s_name, k8s_name, ns),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",  # a run still going skips the next, as blumeops' does
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": template,
                                     **({"activeDeadlineSeconds": timeout}
                                        if timeout is not None else {})}},
        },
    }


def _services(lab: Lab, name: str, svc: Service, ns: str, stateful: bool) -> Iterator[Doc]:
    k8s_name = resolve.kubernetes_name(name, svc)
    ports = [
        {"name": port_name, "port": resolve.cluster_port(svc, port_name),
         "targetPort": port_name, "protocol": "UDP" if port_name in svc.udp else "TCP"}
        for port_name in svc.ports
    ]
    selector = {"app.kubernetes.io/name": k8s_name}
    if ports:
        meta = _meta(lab, k8s_name, k8s_name, ns)
        if _tcp_routed(lab, svc) and resolve.http_route_port(lab, svc) is None:
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
               "metadata": _meta(lab, k8s_name, f"{k8s_name}-headless", ns), "spec": spec}


def _ingress(lab: Lab, name: str, svc: Service, ns: str) -> Doc | None:
    port = resolve.http_route_port(lab, svc)
    if port is None:
        return None
    k8s_name = resolve.kubernetes_name(name, svc)
    meta = _meta(lab, k8s_name, k8s_name, ns)
    # The tags the lab's Tailscale policy names the device by (its own, the service's).
    device = ingress_name(name, svc, lab)
    meta["annotations"] = {"tailscale.com/tags": ",".join(ingress_device_tags(device, svc))}
    # A chart's Service names its ports as it likes; its port number is what we know.
    backend_port: Doc = ({"number": resolve.cluster_port(svc, port)} if svc.passthrough
                         else {"name": port})
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "defaultBackend": {"service": {"name": k8s_name, "port": backend_port}},
            "tls": [{"hosts": [device]}],
        },
    }


def _external_secret(lab: Lab, name: str, svc: Service, ns: str, secret_name: str,
                     store: str) -> Doc:
    data = []
    for key, ref in svc.secrets.items():
        _, item, field = _secret_parts(ref.ref)
        remote: Doc = {"key": item}
        if field is not None:
            remote["property"] = field
        data.append({"secretKey": key, "remoteRef": remote})
    k8s_name = resolve.kubernetes_name(name, svc)
    meta = _meta(lab, k8s_name, k8s_name, ns)
    # Before the workload (wave -1), and dry-run must not fail while the CRD is absent.
    meta["annotations"] = {
        "argocd.argoproj.io/sync-wave": "-1",
        "argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true",
    }
    return {
        "apiVersion": ESO_API, "kind": "ExternalSecret", "metadata": meta,
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
            "target": {"name": secret_name, "creationPolicy": "Owner"},
            "data": data,
        },
    }


def store_name(cluster: Cluster | None) -> str:
    store = cluster.secret_store if cluster else None
    return store.name if store is not None else SECRET_STORE


def connect_url(lab: Lab, cluster: Cluster) -> str | None:
    """The 1Password Connect URL of a cluster's declared store (None without one)."""
    store = cluster.secret_store
    if store is None:
        return None
    if store.connect_url is not None:
        return store.connect_url
    svc = lab.services.get(store.connect or "")
    if svc is None or store.connect is None:
        return None
    port = (resolve.cluster_port(svc, next(iter(svc.ports))) if svc.ports else 8080)
    return f"http://{resolve.in_cluster_host(store.connect, svc)}.cluster.local:{port}"


def _secret_store(lab: Lab, cluster: Cluster, services: list[tuple[str, Service]]) -> Doc | None:
    store = cluster.secret_store
    url = connect_url(lab, cluster)
    if store is None or url is None:
        return None
    vaults: dict[str, int] = {}
    named = [_secret_parts(ref.ref)[0] for _, svc in services for ref in svc.secrets.values()]
    for vault in [*store.vaults, *named]:
        if vault is not None:
            vaults.setdefault(vault, len(vaults) + 1)
    meta: Doc = {"name": store.name, "labels": labels(lab, store.name)}
    meta["annotations"] = {"argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true"}
    return {
        "apiVersion": ESO_API, "kind": "ClusterSecretStore",
        "metadata": meta,
        "spec": {"provider": {"onepassword": {
            "connectHost": url,
            # vault:NAME references have no vault of their own: they read the lab's.
            "vaults": vaults or {lab.lab: 1},
            "auth": {"secretRef": {"connectTokenSecretRef": {
                "name": store.token_secret, "namespace": store.token_namespace,
                "key": store.token_key,
            }}},
        }}},
    }


def _object(lab: Lab, name: str, obj: dict[str, Any], ns: str) -> Doc:
    """A passed-through object: as written, with the service's namespace and labels added
    where it does not say otherwise."""
    doc = dict(obj)
    meta = dict(doc.get("metadata") or {})
    if doc.get("kind") not in CLUSTER_SCOPED:
        meta.setdefault("namespace", ns)
    meta["labels"] = {**labels(lab, name), **(meta.get("labels") or {})}
    doc["metadata"] = meta
    return doc


def _resource(cluster: str, directory: str, doc: Doc, header: str,
              service: str | None = None, depends_on: tuple[str, ...] = ()) -> Resource:
    kind: str = doc["kind"]
    meta = doc["metadata"]
    name: str = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
    return Resource(
        target=f"k8s@{cluster}", kind=kind, name=name,
        body=header + dump_yaml(doc),
        path=f"kubernetes/{cluster}/{directory}/{kind.lower()}-{meta['name']}.yaml",
        service=service, depends_on=depends_on,
    )


def manifests(lab: Lab, name: str, svc: Service, own_namespace: bool) -> list[Doc]:
    """Every manifest of one service, in apply order. `own_namespace`: emit the Namespace."""
    ns = namespace_of(name, svc)
    k8s_name = resolve.kubernetes_name(name, svc)
    docs: list[Doc] = []
    if own_namespace:
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": labels(lab, k8s_name)}})
    secret_name = k8s_name
    if svc.secrets:
        store = store_name(lab.clusters.get(svc.kubernetes or ""))
        docs.append(_external_secret(lab, name, svc, ns, secret_name, store))
    if not svc.passthrough:
        for vol, s in claims(svc).items():
            if not s.per_pod:
                docs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "metadata": _meta(lab, k8s_name, f"{k8s_name}-{vol}", ns),
                             "spec": _claim_spec(s.size, s.storage_class)})
        if svc.image and svc.schedule is not None:
            docs.append(_cron_job(lab, name, svc, ns, secret_name))
        elif svc.image:
            workload = _workload(lab, name, svc, ns, secret_name)
            docs.append(workload)
            docs.extend(_services(lab, name, svc, ns, workload["kind"] == "StatefulSet"))
    docs.extend(_object(lab, k8s_name, obj, ns) for obj in svc.objects)
    ingress = _ingress(lab, name, svc, ns)
    if ingress is not None:
        docs.append(ingress)
    return docs


def cluster_services(lab: Lab, cluster: str) -> list[tuple[str, Service]]:
    return [(n, s) for n, s in lab.services.items() if s.kubernetes == cluster]


def render_cluster(lab: Lab, ctx: RenderContext, cluster: str, spec: Cluster) -> list[Resource]:
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
    store = _secret_store(lab, spec, services)
    if store is not None:
        out.append(_resource(cluster, CLUSTER_DIR, store, header))
    for name, other in lab.clusters.items():
        if other.delivered_by == cluster and other.credentials is not None and other.server:
            out.append(_resource(cluster, CLUSTER_DIR,
                                 argocd_cluster_secret(lab, name, other, store_name(spec)),
                                 header))
    return out


ARGOCD_NAMESPACE = "argocd"
_CLUSTER_CONFIG_KEYS = (("bearer_token", "bearerToken"), ("ca_data", "caData"))


def argocd_cluster_secret(lab: Lab, name: str, cluster: Cluster, store: str) -> Doc:
    """The Secret that tells a delivering ArgoCD about another cluster, as an
    ExternalSecret in that ArgoCD's namespace: its token and CA are read from the store
    and templated into ArgoCD's cluster `config`, so they never reach git."""
    creds = cluster.credentials
    assert creds is not None and cluster.server is not None
    data: list[Doc] = []
    tls: Doc = {"insecure": creds.insecure}
    config: Doc = {"bearerToken": "{{ .bearerToken }}", "tlsClientConfig": tls}
    for field, key in _CLUSTER_CONFIG_KEYS:
        ref = getattr(creds, field)
        if ref is None:
            continue
        _, item, prop = _secret_parts(ref)
        remote: Doc = {"key": item}
        if prop is not None:
            remote["property"] = prop
        data.append({"secretKey": key, "remoteRef": remote})
        if key == "caData":
            tls["caData"] = "{{ .caData }}"
    secret = f"cluster-{name}"
    meta = _meta(lab, secret, secret, ARGOCD_NAMESPACE)
    meta["annotations"] = {"argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true"}
    return {
        "apiVersion": ESO_API, "kind": "ExternalSecret", "metadata": meta,
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
            "target": {"name": secret, "creationPolicy": "Owner", "template": {
                "engineVersion": "v2",
                "metadata": {"labels": {"argocd.argoproj.io/secret-type": "cluster",
                                        **labels(lab, secret)}},
                "data": {"name": name, "server": cluster.server,
                         "config": json.dumps(config, sort_keys=True)},
            }},
            "data": data,
        },
    }


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
        if _tcp_routed(lab, svc) and resolve.http_route_port(lab, svc) is not None:
            notes.append(
                f"service '{name}' has http and tcp routes: its Tailscale Ingress serves "
                "only http(s), so its tcp routes are not exposed on the tailnet")
        if svc.passthrough and _tcp_routed(lab, svc):
            notes.append(
                f"service '{name}' is installed by a chart or manifests: blumeops cannot "
                "annotate its Service, so its tcp routes are not exposed on the tailnet "
                "(add tailscale.com/expose to the chart's Service)")
        shared = [v for v, s in claims(svc).items() if not s.per_pod]
        if shared and workload_kind(svc) == "DaemonSet" and not svc.passthrough:
            notes.append(
                f"service '{name}' is a DaemonSet sharing ReadWriteOnce storage "
                f"{', '.join(shared)}: pods on other nodes cannot mount it")
        elif shared and svc.replicas > 1:
            notes.append(
                f"service '{name}' has {svc.replicas} replicas sharing ReadWriteOnce "
                f"storage {', '.join(shared)}: pods on other nodes cannot mount it "
                "(use per_pod: true)")
    return notes
