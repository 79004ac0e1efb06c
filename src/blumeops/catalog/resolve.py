"""Values the catalog derives so users never write them: hostnames, upstreams, devices.

Pure functions of a valid Lab. Renderers, rules and `blumeops show` all read these, so
every layer agrees on where a route goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from blumeops.catalog.model import Lab, Mount, Service, ServiceManager, Share


@dataclass(frozen=True)
class ResolvedRoute:
    service: str
    key: str  # as written: NAME.DOMAIN
    name: str
    domain: str
    hostname: str
    port_name: str
    port: int
    protocol: Literal["http", "tcp"]
    listen: int | None  # tcp routes: where the proxy listens
    proxy: Literal["caddy", "magicdns"]
    proxy_host: str | None
    upstream: str  # URL for http, host:port for tcp
    upstream_device: str  # tailnet device the proxy must reach
    upstream_port: int


def split_route_key(key: str) -> tuple[str, str]:
    """'forge.ops' -> ('forge', 'ops'); a key without a dot has no domain ('')."""
    name, _, domain = key.partition(".")
    return name, domain


def tailnet_name(lab: Lab) -> str:
    return lab.tailnet.name if lab.tailnet else "tailnet.invalid"


def host_address(lab: Lab, host: str) -> str:
    """How other machines reach a host: its declared address or HOST.TAILNET."""
    declared = lab.hosts[host].address if host in lab.hosts else None
    return declared or f"{host}.{tailnet_name(lab)}"


def ingress_name(name: str, service: Service, lab: Lab) -> str:
    """The tailnet device name of a Kubernetes service's Tailscale ingress."""
    for key in service.routes:
        route_name, domain = split_route_key(key)
        if domain in lab.domains and lab.domains[domain].proxy == "magicdns":
            return route_name
    return name


def http_route_port(lab: Lab, svc: Service) -> str | None:
    """The port a Kubernetes service's Tailscale ingress serves: the first http route's."""
    for key, route in svc.routes.items():
        if route.protocol == "http" and route.port in svc.ports:
            _, domain = split_route_key(key)
            if domain in lab.domains:
                return route.port
    return None


def ingress_scrape(lab: Lab, name: str, svc: Service) -> str | None:
    """DEVICE.TAILNET:443 when a Kubernetes service's metrics are served by its tailnet
    ingress: how a Prometheus outside its cluster reaches them (in-cluster names resolve
    only inside)."""
    if svc.kubernetes is None or svc.metrics is None:
        return None
    if http_route_port(lab, svc) != svc.metrics.port:
        return None
    return f"{ingress_name(name, svc, lab)}.{tailnet_name(lab)}:443"


def kubernetes_name(name: str, service: Service) -> str:
    """The name of a Kubernetes service's workload, Service and Ingress: declared or its own."""
    return service.names.kubernetes or name


def launchd_label(name: str, service: Service) -> str:
    """A native service's launchd Label: declared (`names.launchd`), else me.blumeops.NAME."""
    return service.names.launchd or f"me.blumeops.{name}"


def systemd_unit(name: str, service: Service | None = None) -> str:
    """A native service's systemd unit: declared (`names.systemd`), else
    blumeops-NAME.service."""
    declared = service.names.systemd if service is not None else None
    return declared or f"blumeops-{name}.service"


def namespace(name: str, service: Service) -> str:
    """The namespace a Kubernetes service lives in: declared, or the service's name."""
    return service.namespace or name


def cluster_port(service: Service, port_name: str) -> int:
    """The port a Kubernetes Service offers for a named port (its container port unless
    `service_ports` says otherwise)."""
    return service.service_ports.get(port_name) or service.ports[port_name]


def in_cluster_host(name: str, service: Service) -> str:
    """The in-cluster DNS name of a Kubernetes service: SERVICE.NAMESPACE.svc."""
    return f"{kubernetes_name(name, service)}.{namespace(name, service)}.svc"


def service_manager(lab: Lab, host: str) -> ServiceManager | None:
    """The host's service manager: declared, or the usual one for its OS."""
    spec = lab.hosts[host]
    if spec.service_manager is not None:
        return spec.service_manager
    return {"linux": ServiceManager.systemd, "macos": ServiceManager.launchd,
            "nixos": ServiceManager.nixos}.get(spec.os.value)


def split_share(ref: str) -> tuple[str, str]:
    """'sifaka:media' -> ('sifaka', 'media'); without a ':' the host is ''."""
    host, sep, share = ref.partition(":")
    return (host, share) if sep else ("", ref)


def share_of(lab: Lab, ref: str) -> Share | None:
    """The share a HOST:SHARE reference names, if that host declares it."""
    host, name = split_share(ref)
    spec = lab.hosts.get(host)
    return spec.shares.get(name) if spec is not None else None


def share_source(lab: Lab, ref: str, protocol: str, sub_path: str | None = None) -> str:
    """What a client mounts: `ADDRESS:/path` for NFS, `//ADDRESS/SHARE` for SMB."""
    host, name = split_share(ref)
    share = share_of(lab, ref)
    address = host_address(lab, host)
    if protocol == "smb":
        return f"//{address}/{name}" + (f"/{sub_path}" if sub_path else "")
    path = share.path if share is not None else f"/{name}"
    return f"{address}:{path}" + (f"/{sub_path}" if sub_path else "")


def host_mounts(lab: Lab, host: str) -> dict[str, Mount]:
    """Every mount of a host: those it declares, and the shares its native services mount
    (storage with `share:`) at their mount points. Declared ones win; the rules report a
    mount point two of them disagree on."""
    spec = lab.hosts[host]
    out = dict(spec.mounts)
    for svc in lab.services.values():
        if svc.native != host:
            continue
        for vol in svc.storage.values():
            if vol.share is not None and vol.mount not in out:
                out[vol.mount] = Mount(share=vol.share, read_only=vol.read_only)
    return dict(sorted(out.items()))


def applied_host(lab: Lab, host: str) -> bool:
    """blumeops applies this host itself: local or over SSH, managed, not NixOS (whose
    services are a module the host's own `nixos-rebuild` applies)."""
    spec = lab.hosts[host]
    return (spec.local or spec.ssh is not None) and spec.managed \
        and service_manager(lab, host) is not ServiceManager.nixos


def argocd_of(lab: Lab, cluster: str) -> str:
    """The cluster whose ArgoCD holds this cluster's Applications (itself by default)."""
    spec = lab.clusters[cluster]
    return spec.delivered_by or cluster


def application_name(name: str, service: Service) -> str:
    """A Kubernetes service's ArgoCD Application: declared (`names.argocd`) or its own."""
    return service.names.argocd or name


def _route(lab: Lab, svc_name: str, svc: Service, key: str) -> ResolvedRoute | None:
    route = svc.routes[key]
    name, domain_key = split_route_key(key)
    domain = lab.domains.get(domain_key)
    port = svc.ports.get(route.port)
    if domain is None or port is None:
        return None
    hostname = f"{name}.{domain.suffix}"
    if svc.native is not None:
        device = svc.native
        same_host = domain.proxy == "caddy" and domain.host == svc.native
        address = "127.0.0.1" if same_host else host_address(lab, svc.native)
        upstream_port = port
        host_part = f"[{address}]" if ":" in address else address  # an IPv6 literal
        scheme_host = f"{host_part}:{port}"
        upstream = f"http://{scheme_host}" if route.protocol == "http" else scheme_host
    else:
        device = ingress_name(svc_name, svc, lab)
        address = f"{device}.{tailnet_name(lab)}"
        upstream_port = 443
        upstream = f"https://{address}" if route.protocol == "http" else f"{address}:{port}"
        if route.protocol == "tcp":
            # The Tailscale operator exposes the Service, so its port is what answers.
            upstream_port = cluster_port(svc, route.port)
            upstream = f"{address}:{upstream_port}"
    return ResolvedRoute(
        service=svc_name, key=key, name=name, domain=domain_key, hostname=hostname,
        port_name=route.port, port=port, protocol=route.protocol, listen=route.listen,
        proxy=domain.proxy, proxy_host=domain.host, upstream=upstream,
        upstream_device=device, upstream_port=upstream_port,
    )


def service_routes(lab: Lab, service: str) -> list[ResolvedRoute]:
    """One service's routes, resolved; routes with unknown domains or ports are skipped."""
    svc = lab.services[service]
    resolved = (_route(lab, service, svc, key) for key in svc.routes)
    return [r for r in resolved if r is not None]


def routes(lab: Lab) -> list[ResolvedRoute]:
    """Every route of the lab with its hostname and upstream, in catalog order."""
    return [r for name in lab.services for r in service_routes(lab, name)]


def service_url(route: ResolvedRoute, lab: Lab) -> str:
    """The URL a person types to reach a route."""
    if route.protocol == "tcp":
        return f"tcp://{route.hostname}:{route.listen}"
    domain = lab.domains[route.domain]
    if domain.proxy == "magicdns":
        return f"https://{route.hostname}"
    scheme = "http" if domain.tls.mode.value == "off" else "https"
    port = domain.listen_port
    default = 80 if scheme == "http" else 443
    return f"{scheme}://{route.hostname}" + ("" if port == default else f":{port}")


def resolved_view(lab: Lab) -> dict[str, Any]:
    """The catalog with every derived value filled in, as plain data (`blumeops show`)."""
    data = lab.model_dump(mode="json", exclude={"include"})
    for name, svc in lab.services.items():
        out = data["services"][name]
        out["runtime"] = svc.runtime
        out["runs_on"] = svc.native or svc.kubernetes
        if svc.native is not None:
            manager = service_manager(lab, svc.native)
            out["service_manager"] = manager.value if manager else None
        else:
            out["namespace"] = namespace(name, svc)
            out["kubernetes_name"] = kubernetes_name(name, svc)
            out["ingress"] = f"{ingress_name(name, svc, lab)}.{tailnet_name(lab)}"
        out["routes"] = {
            r.key: {
                "hostname": r.hostname, "url": service_url(r, lab), "port": r.port,
                "port_name": r.port_name, "protocol": r.protocol, "listen": r.listen,
                "proxy": r.proxy, "proxy_host": r.proxy_host, "upstream": r.upstream,
            }
            for r in service_routes(lab, name)
        }
    for name in lab.hosts:
        data["hosts"][name]["address"] = host_address(lab, name)
        data["hosts"][name]["mounts"] = {  # declared, and those its services' shares imply
            point: {**m.model_dump(mode="json"),
                    "source": share_source(lab, m.share, m.protocol)}
            for point, m in host_mounts(lab, name).items()}
        manager = service_manager(lab, name)
        data["hosts"][name]["service_manager"] = manager.value if manager else None
    return data
