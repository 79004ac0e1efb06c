"""The lab's Tailscale policy as plain data, derived from the catalog.

Devices are named as in the catalog: hosts by their name, Kubernetes services by their
Tailscale ingress name (tagged `tag:k8s`, as the Tailscale operator tags them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blumeops.catalog.model import Lab
from blumeops.catalog.resolve import ResolvedRoute, ingress_name, routes

K8S_TAG = "tag:k8s"


@dataclass(frozen=True)
class Device:
    name: str
    tags: tuple[str, ...] = ()


@dataclass
class Policy:
    groups: dict[str, list[str]] = field(default_factory=dict)
    tag_owners: dict[str, list[str]] = field(default_factory=dict)
    grants: list[dict[str, list[str]]] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, Device] = field(default_factory=dict)


def devices(lab: Lab) -> dict[str, Device]:
    out = {name: Device(name, tuple(f"tag:{t}" for t in host.tags))
           for name, host in lab.hosts.items()}
    for name, svc in lab.services.items():
        if svc.kubernetes is not None and svc.routes:
            device = ingress_name(name, svc, lab)
            out.setdefault(device, Device(device, (K8S_TAG,)))
    return out


def _add(grants: list[dict[str, list[str]]], src: list[str], dst: list[str], ports: list[str],
         seen: set[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]) -> None:
    key = (tuple(src), tuple(dst), tuple(ports))
    if key not in seen:
        seen.add(key)
        grants.append({"src": src, "dst": dst, "ip": ports})


def derive_policy(lab: Lab) -> Policy:
    """Groups, tag owners, grants and tests for the lab's tailnet."""
    tailnet = lab.tailnet
    devs = devices(lab)
    policy = Policy(devices=devs)
    if tailnet is None:
        return policy
    policy.groups = {f"group:{g}": list(members) for g, members in tailnet.groups.items()}
    tags = sorted({t for d in devs.values() for t in d.tags})
    owners = {k if k.startswith("tag:") else f"tag:{k}": v for k, v in tailnet.tag_owners.items()}
    policy.tag_owners = {t: owners.get(t, ["autogroup:admin"]) for t in tags}
    for t, o in owners.items():
        policy.tag_owners.setdefault(t, o)
    seen: set[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = set()
    if tailnet.derive_grants:
        resolved = routes(lab)  # resolve once; catalog order, so grouping keeps it
        by_service: dict[str, list[ResolvedRoute]] = {}
        for r in resolved:
            by_service.setdefault(r.service, []).append(r)
        for r in resolved:
            if r.proxy == "caddy" and r.proxy_host and r.upstream_device != r.proxy_host:
                dst = K8S_TAG if lab.services[r.service].kubernetes else r.upstream_device
                _add(policy.grants, [r.proxy_host], [dst], [f"tcp:{r.upstream_port}"], seen)
        for name, svc in lab.services.items():
            if not svc.audience:
                continue
            for r in by_service.get(name, []):
                if r.proxy == "caddy" and r.proxy_host:
                    port = r.listen if r.protocol == "tcp" else lab.domains[r.domain].listen_port
                    _add(policy.grants, list(svc.audience), [r.proxy_host], [f"tcp:{port}"], seen)
                else:
                    _add(policy.grants, list(svc.audience), [r.upstream_device],
                         [f"tcp:{r.upstream_port}"], seen)
    for g in tailnet.grants:
        _add(policy.grants, list(g.src), list(g.dst), list(g.ip), seen)
    policy.tests = [t.model_dump(exclude_defaults=False) for t in tailnet.tests]
    return policy
