"""The lab's Tailscale policy as plain data, derived from the catalog.

Devices are named as in the catalog: hosts by their name, Kubernetes services by their
Tailscale ingress name. Tailscale resolves a bare name only through the policy's `hosts`
(IP addresses), so every tagged device also carries a tag of its own, `tag:NAME`: grants
and tests name a device by its IP alias when its address is an IP, else by that tag. Hosts
advertise it (`tailscale up --advertise-tags=tag:indri`); ingresses get it from their
`tailscale.com/tags` annotation. The lab's own rules may keep using plain names.

A host declared with an `owner` (tailnet.devices) is a user's device: it carries no tags,
so `autogroup:self`, `autogroup:member` and its owner's address select it instead.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from blumeops.catalog.model import Lab, Service
from blumeops.catalog.public import published_endpoints
from blumeops.catalog.reach import collector_paths, scrape_paths
from blumeops.catalog.resolve import ResolvedRoute, ingress_name, routes

K8S_TAG = "tag:k8s"
ADMIN = "autogroup:admin"


@dataclass(frozen=True)
class Device:
    name: str
    tags: tuple[str, ...] = ()
    owner: str | None = None  # user-owned devices only (tagged devices have no owner)
    ip: str | None = None
    operator: str | None = None  # cluster whose Tailscale operator applies the tags


@dataclass
class Policy:
    groups: dict[str, list[str]] = field(default_factory=dict)
    tag_owners: dict[str, list[str]] = field(default_factory=dict)
    grants: list[dict[str, Any]] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, Device] = field(default_factory=dict)
    ssh: list[dict[str, Any]] = field(default_factory=list)
    ssh_tests: list[dict[str, Any]] = field(default_factory=list)
    auto_approvers: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # the policy's `hosts` aliases
    admins: tuple[str, ...] = ()  # users with an admin role: autogroup:admin
    members: tuple[str, ...] = ()  # every user of the tailnet: autogroup:member
    operator_tag: str = "tag:k8s-operator"
    # For each grant, its index in the catalog's tailnet.grants (None: derived).
    grant_origin: list[int | None] = field(default_factory=list)


def device_tag(name: str) -> str:
    return f"tag:{name}"


def as_tag(name: str) -> str:
    """Catalog tags may be written bare (`homelab`) or whole (`tag:homelab`)."""
    return name if name.startswith("tag:") else f"tag:{name}"


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def devices(lab: Lab) -> dict[str, Device]:
    """Every tailnet device the catalog implies: hosts, and Kubernetes ingresses."""
    ips = host_ips(lab)
    declared = lab.tailnet.devices if lab.tailnet else {}
    native_tags: dict[str, list[str]] = {}
    for svc in lab.services.values():
        if svc.native is not None:
            native_tags.setdefault(svc.native, []).extend(as_tag(t) for t in svc.tags)
    out: dict[str, Device] = {}
    for name, host in lab.hosts.items():
        owner = declared[name].owner if name in declared else None
        if owner is not None:
            out[name] = Device(name, (), owner=owner, ip=ips.get(name))
            continue
        tags = [device_tag(name), *(as_tag(t) for t in host.tags), *native_tags.get(name, [])]
        out[name] = Device(name, _unique(tags), ip=ips.get(name))
    for name, svc in lab.services.items():
        if svc.kubernetes is not None and svc.routes:
            device = ingress_name(name, svc, lab)
            out.setdefault(device, Device(device, ingress_device_tags(device, svc),
                                          operator=svc.kubernetes))
    return out


def ingress_device_tags(device: str, svc: Service) -> tuple[str, ...]:
    """The tags the operator gives a service's ingress device (its `tailscale.com/tags`):
    the operator's own, the device's, and the service's extra tags."""
    return _unique([K8S_TAG, device_tag(device), *(as_tag(t) for t in svc.tags)])


def ingress_tags(lab: Lab, service: str) -> tuple[str, ...]:
    """The tags a Kubernetes service's ingress must carry (its `tailscale.com/tags`)."""
    device = devices(lab).get(ingress_name(service, lab.services[service], lab))
    return device.tags if device is not None else ()


def _single_ip(value: str) -> bool:
    try:
        return ipaddress.ip_network(value, strict=False).num_addresses == 1
    except ValueError:
        return False


def host_ips(lab: Lab) -> dict[str, str]:
    """Hosts with a tailnet IP: a declared address that is an IP, or a `tailnet.hosts`
    alias of the same name. Only those can be `hosts` aliases."""
    aliases = lab.tailnet.hosts if lab.tailnet else {}
    out = {}
    for name, host in sorted(lab.hosts.items()):
        if host.address and _single_ip(host.address):
            out[name] = host.address
        elif name in aliases and _single_ip(aliases[name]):
            out[name] = aliases[name]
    return out


class _Names:
    """Turns catalog device names into selectors Tailscale resolves."""

    def __init__(self, devs: dict[str, Device], ips: dict[str, str]) -> None:
        self.devs = devs
        self.ips = ips

    def selector(self, name: str) -> str:
        device = self.devs.get(name)
        if device is not None and name not in self.ips and device.tags:
            return device_tag(name)
        return name

    def selectors(self, names: list[str]) -> list[str]:
        return [self.selector(n) for n in names]

    def target(self, dst: str) -> str:
        host, sep, port = dst.rpartition(":")
        return f"{self.selector(host)}:{port}" if sep and host in self.devs else dst


Seen = set[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]


def _add(policy: Policy, src: list[str], dst: list[str], ports: list[str], seen: Seen,
         origin: int | None = None) -> None:
    key = (tuple(src), tuple(dst), tuple(ports))
    if key not in seen:
        seen.add(key)
        policy.grants.append({"src": src, "dst": dst, "ip": ports})
        policy.grant_origin.append(origin)


def placement(lab: Lab, service: str) -> tuple[str, str] | None:
    """(host the service's traffic leaves from, its cluster or '' when native)."""
    svc = lab.services[service]
    if svc.native is not None:
        return svc.native, ""
    cluster = lab.clusters.get(svc.kubernetes or "")
    return (cluster.host, svc.kubernetes or "") if cluster is not None else None


def endpoints(lab: Lab, service: str, resolved: list[ResolvedRoute] | None = None
              ) -> list[tuple[str, int]]:
    """Where a service is reached on the tailnet, most usual first: through its routes
    (the proxy, then the upstream), then its host's ports."""
    svc = lab.services[service]
    out = []
    for r in resolved if resolved is not None else routes(lab):
        if r.service != service:
            continue
        if r.proxy == "caddy" and r.proxy_host:
            port = r.listen if r.protocol == "tcp" else lab.domains[r.domain].listen_port
            out.append((r.proxy_host, port or 443))
        out.append((r.upstream_device, r.upstream_port))
    if svc.native is not None:
        out.extend((svc.native, p) for p in svc.ports.values())
    return list(dict.fromkeys(out))


CrossDependency = tuple[str, int, str, tuple[str, str], list[tuple[str, int]]]


def cross_dependencies(lab: Lab, devs: dict[str, Device],
                       resolved: list[ResolvedRoute] | None = None) -> list[CrossDependency]:
    """Each `depends_on` that crosses hosts or clusters, so goes over the tailnet:
    (service, index, dependency, (host, cluster), the dependency's endpoints)."""
    resolved = routes(lab) if resolved is None else resolved
    out = []
    for name, svc in lab.services.items():
        here = placement(lab, name)
        if here is None or here[0] not in devs:
            continue
        for i, dep in enumerate(svc.depends_on):
            there = placement(lab, dep) if dep in lab.services else None
            if there is None or there[0] == here[0] or (here[1] and here[1] == there[1]):
                continue  # same host or same cluster: not over the tailnet
            ends = [(d, p) for d, p in endpoints(lab, dep, resolved) if d in devs]
            out.append((name, i, dep, here, ends))
    return out


def _tag_owners(lab: Lab, devs: dict[str, Device], operator_tag: str) -> dict[str, list[str]]:
    """Declared owners win; else admins own host tags and the operator owns what it applies.

    The Tailscale operator can only put a tag on a device if it owns the tag, so tags of
    ingresses default to the operator's own tag (its docs: `"tag:k8s": ["tag:k8s-operator"]`).
    """
    assert lab.tailnet is not None
    declared = {as_tag(k): list(v) for k, v in lab.tailnet.tag_owners.items()}
    derived: dict[str, list[str]] = {}
    for device in devs.values():
        owner = operator_tag if device.operator else ADMIN
        for tag in device.tags:
            owners = derived.setdefault(tag, [])
            if owner not in owners:
                owners.append(owner)
    if any(d.operator for d in devs.values()):
        derived.setdefault(operator_tag, [ADMIN])
    out = {t: declared.get(t, derived[t]) for t in sorted(derived)}
    for tag, owners in declared.items():
        out.setdefault(tag, owners)
    return out


def derive_policy(lab: Lab) -> Policy:
    """Groups, tag owners, grants, SSH rules and tests for the lab's tailnet."""
    tailnet = lab.tailnet
    devs = devices(lab)
    names = _Names(devs, host_ips(lab))
    sel, sels = names.selector, names.selectors
    policy = Policy(devices=devs)
    if tailnet is None:
        return policy
    policy.operator_tag = as_tag(tailnet.operator_tag)
    policy.groups = {f"group:{g}": list(members) for g, members in tailnet.groups.items()}
    policy.hosts = {**host_ips(lab), **tailnet.hosts}
    policy.admins = _unique(list(tailnet.admins))
    members = [*tailnet.admins, *tailnet.users,
               *(m for ms in tailnet.groups.values() for m in ms),
               *(d.owner for d in devs.values() if d.owner)]
    policy.members = _unique([m for m in members if "@" in m])
    policy.tag_owners = _tag_owners(lab, devs, policy.operator_tag)
    seen: Seen = set()
    if tailnet.derive_grants:
        resolved = routes(lab)  # resolve once; catalog order, so grouping keeps it
        by_service: dict[str, list[ResolvedRoute]] = {}
        for r in resolved:
            by_service.setdefault(r.service, []).append(r)
        for r in resolved:
            if r.proxy == "caddy" and r.proxy_host and r.upstream_device != r.proxy_host:
                _add(policy, [sel(r.proxy_host)], [sel(r.upstream_device)],
                     [f"tcp:{r.upstream_port}"], seen)
        for name, svc in lab.services.items():
            if not svc.audience:
                continue
            for r in by_service.get(name, []):
                if r.proxy == "caddy" and r.proxy_host:
                    port = r.listen if r.protocol == "tcp" else lab.domains[r.domain].listen_port
                    _add(policy, sels(svc.audience), [sel(r.proxy_host)],
                         [f"tcp:{port}"], seen)
                else:
                    _add(policy, sels(svc.audience),
                         [sel(r.upstream_device)], [f"tcp:{r.upstream_port}"], seen)
        # A dependency on another host or cluster: its most usual endpoint.
        for _, _, _, (host, _), ends in cross_dependencies(lab, devs, resolved):
            if ends:
                _add(policy, [sel(host)], [sel(ends[0][0])], [f"tcp:{ends[0][1]}"], seen)
        # The public proxy reaches what it publishes, and nothing more.
        for device, ports in sorted(published_endpoints(lab).items()):
            if lab.public is not None and lab.public.host in devs and device in devs:
                _add(policy, [sel(lab.public.host)], [sel(device)],
                     [f"tcp:{p}" for p in sorted(ports)], seen)
        # Prometheus reaches the native services it scrapes on other hosts; each host's
        # Alloy reaches the Prometheus and Loki it sends to.
        paths = [*scrape_paths(lab), *((h, d, p) for h, _, d, p, _ in collector_paths(lab))]
        for host, device, port in paths:
            if host != device and host in devs and device in devs:
                _add(policy, [sel(host)], [sel(device)], [f"tcp:{port}"], seen)
    for i, g in enumerate(tailnet.grants):
        if g.app is None:
            _add(policy, sels(g.src), sels(g.dst), g.ports, seen, i)
        else:  # app capabilities pass through untouched
            grant: dict[str, Any] = {"src": sels(g.src), "dst": sels(g.dst)}
            if g.ip is not None:
                grant["ip"] = list(g.ip)
            grant["app"] = g.app
            policy.grants.append(grant)
            policy.grant_origin.append(i)
    for t in tailnet.tests:
        test: dict[str, Any] = {"src": sel(t.src)}
        if t.proto is not None:
            test["proto"] = t.proto
        test["accept"] = [names.target(d) for d in t.accept]
        test["deny"] = [names.target(d) for d in t.deny]
        policy.tests.append(test)
    for s in tailnet.ssh:
        rule: dict[str, Any] = {"action": s.action, "src": sels(s.src), "dst": sels(s.dst),
                                "users": list(s.users)}
        if s.check_period is not None:
            rule["checkPeriod"] = s.check_period
        if s.accept_env:
            rule["acceptEnv"] = list(s.accept_env)
        policy.ssh.append(rule)
    policy.ssh_tests = [{"src": sel(t.src), "dst": sels(t.dst), "accept": list(t.accept),
                         "check": list(t.check), "deny": list(t.deny)}
                        for t in tailnet.ssh_tests]
    approvers = tailnet.auto_approvers
    if approvers is not None:
        if approvers.routes:
            policy.auto_approvers["routes"] = {cidr: sels(who)
                                               for cidr, who in approvers.routes.items()}
        if approvers.exit_node:
            policy.auto_approvers["exitNode"] = sels(approvers.exit_node)
    return policy
