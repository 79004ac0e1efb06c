"""The lab's Tailscale policy as plain data, derived from the catalog.

Devices are named as in the catalog: hosts by their name, Kubernetes services by their
Tailscale ingress name. Tailscale resolves a bare name only through the policy's `hosts`
(IP addresses), so every device also carries a tag of its own, `tag:NAME`: grants and
tests name a device by its IP alias when its address is an IP, else by that tag. Hosts
advertise it (`tailscale up --advertise-tags=tag:indri`); ingresses get it from their
`tailscale.com/tags` annotation. The lab's own rules may keep using plain names.
"""

from __future__ import annotations

import ipaddress
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


def device_tag(name: str) -> str:
    return f"tag:{name}"


def devices(lab: Lab) -> dict[str, Device]:
    out = {name: Device(name, (device_tag(name), *(f"tag:{t}" for t in host.tags)))
           for name, host in lab.hosts.items()}
    for name, svc in lab.services.items():
        if svc.kubernetes is not None and svc.routes:
            device = ingress_name(name, svc, lab)
            out.setdefault(device, Device(device, (K8S_TAG, device_tag(device))))
    return out


def host_ips(lab: Lab) -> dict[str, str]:
    """Hosts whose declared address is an IP: only those can be `hosts` aliases."""
    out = {}
    for name, host in sorted(lab.hosts.items()):
        try:
            ipaddress.ip_network(host.address or "", strict=False)
        except ValueError:
            continue
        out[name] = host.address or ""
    return out


class _Names:
    """Turns catalog device names into selectors Tailscale resolves."""

    def __init__(self, devs: dict[str, Device], ips: dict[str, str]) -> None:
        self.devs = devs
        self.ips = ips

    def selector(self, name: str) -> str:
        if name in self.devs and name not in self.ips:
            return device_tag(name)
        return name

    def target(self, dst: str) -> str:
        host, sep, port = dst.rpartition(":")
        return f"{self.selector(host)}:{port}" if sep and host in self.devs else dst


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
    names = _Names(devs, host_ips(lab))
    sel = names.selector
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
                _add(policy.grants, [sel(r.proxy_host)], [sel(r.upstream_device)],
                     [f"tcp:{r.upstream_port}"], seen)
        for name, svc in lab.services.items():
            if not svc.audience:
                continue
            for r in by_service.get(name, []):
                if r.proxy == "caddy" and r.proxy_host:
                    port = r.listen if r.protocol == "tcp" else lab.domains[r.domain].listen_port
                    _add(policy.grants, [sel(a) for a in svc.audience], [sel(r.proxy_host)],
                         [f"tcp:{port}"], seen)
                else:
                    _add(policy.grants, [sel(a) for a in svc.audience],
                         [sel(r.upstream_device)], [f"tcp:{r.upstream_port}"], seen)
    for g in tailnet.grants:
        _add(policy.grants, [sel(x) for x in g.src], [sel(x) for x in g.dst], list(g.ip), seen)
    policy.tests = [{"src": sel(t.src), "accept": [names.target(d) for d in t.accept],
                     "deny": [names.target(d) for d in t.deny]} for t in tailnet.tests]
    return policy
