"""Public ingress, derived: which routes the VPS publishes, under which names, and where
its proxy sends each one.

Pure functions of a valid Lab, read by the nginx renderer, the tailnet policy (the VPS
may reach exactly these upstreams) and the rules. A published route keeps its own
hostname upstream: nginx asks Caddy (or the MagicDNS device) for `docs.ops.eblu.me`, so
the lab serves the public name exactly as it serves the private one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from blumeops.catalog.model import Lab, Service, TLSMode
from blumeops.catalog.resolve import ResolvedRoute, host_address, routes, split_route_key


@dataclass(frozen=True)
class PublicRoute:
    service: str
    key: str  # the route as written: NAME.DOMAIN
    hostname: str  # the public name: docs.eblu.me
    internal: str  # the route's own hostname, sent upstream as Host and SNI
    upstream: str  # scheme://HOST:PORT nginx proxies to
    device: str  # tailnet device the VPS must reach
    port: int  # ... on this port

    @property
    def tls(self) -> bool:
        return self.upstream.startswith("https://")


def public_label(svc: Service, key: str) -> str | None:
    """The public name's first label for one route, or None when it is not published."""
    route = svc.routes[key]
    marked = route.public
    if isinstance(marked, str):
        return marked
    if marked or (svc.public and "public" not in route.model_fields_set):
        return split_route_key(key)[0]
    return None  # not published, or `public: false` on a route of a public service


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _upstream(lab: Lab, r: ResolvedRoute, vps: str) -> tuple[str, str, int]:
    """(URL, device, port) nginx on `vps` uses for one route."""
    if r.proxy != "caddy" or not r.proxy_host:
        return r.upstream, r.upstream_device, r.upstream_port
    domain = lab.domains[r.domain]
    scheme = "http" if domain.tls.mode is TLSMode.off else "https"
    port = domain.listen_port
    bind = domain.listen.rsplit(":", 1)[0] if domain.listen else ""
    if r.proxy_host == vps:
        address = bind if bind and bind not in ("0.0.0.0", "[::]") else "127.0.0.1"
    else:
        address = host_address(lab, r.proxy_host)
    return f"{scheme}://{_bracket(address)}:{port}", r.proxy_host, port


def public_routes(lab: Lab, resolved: list[ResolvedRoute] | None = None) -> list[PublicRoute]:
    """Every published HTTP route, by public hostname (TCP routes are never published)."""
    if lab.public is None:
        return []
    vps = lab.public.host
    out = []
    for r in routes(lab) if resolved is None else resolved:
        label = public_label(lab.services[r.service], r.key)
        if label is None or r.protocol != "http":
            continue
        url, device, port = _upstream(lab, r, vps)
        out.append(PublicRoute(r.service, r.key, f"{label}.{lab.public.domain}", r.hostname,
                               url, device, port))
    return sorted(out, key=lambda p: (p.hostname, p.service, p.key))


def published_endpoints(lab: Lab) -> dict[str, set[int]]:
    """Device -> the TCP ports the VPS must reach on it; what the tailnet lets it reach."""
    out: dict[str, set[int]] = {}
    for p in public_routes(lab):
        if lab.public is not None and p.device != lab.public.host:
            out.setdefault(p.device, set()).add(p.port)
    return out


def public_scheme_port(lab: Lab) -> tuple[str, int]:
    """The scheme and port people use for a public name (TLS at the edge: https, 443)."""
    assert lab.public is not None
    if lab.public.tls == "edge":
        return "https", 443
    listen = lab.public.listen
    return "http", listen if isinstance(listen, int) else int(listen.rsplit(":", 1)[1])


def public_url(lab: Lab, p: PublicRoute) -> str:
    """The URL people on the internet use for a published route: https://docs.eblu.me."""
    scheme, port = public_scheme_port(lab)
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{p.hostname}" + ("" if port == default else f":{port}")


def public_urls(lab: Lab, resolved: list[ResolvedRoute] | None = None
                ) -> dict[tuple[str, str], str]:
    """(service, route key) -> its public URL, for every published route: what the docs,
    Homepage and `blumeops show` put beside the route's private URL."""
    return {(p.service, p.key): public_url(lab, p) for p in public_routes(lab, resolved)}
