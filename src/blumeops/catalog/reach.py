"""Who reaches what by which name: the lab's own URLs, scrape targets and probe addresses.

Pure helpers for the cross-layer rules (lab/rules.py) and the tailnet policy: the
names a lab answers to (routes, hosts on the tailnet, public names) with the scheme and
ports each answers on; where the lab's Prometheus runs and what it scrapes; and the URLs
written into environment values and probe commands.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from blumeops.catalog import resolve
from blumeops.catalog.diagnostics import did_you_mean
from blumeops.catalog.model import Lab, Role, Service, TLSMode
from blumeops.catalog.public import is_loopback, public_routes, public_scheme_port
from blumeops.catalog.resolve import (
    ResolvedRoute,
    cluster_port,
    host_address,
    in_cluster_host,
    ingress_name,
    ingress_scrape,
    routes,
)

URL = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*)://([^\s/?#\"'<>]+)")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
WEB = {"http": "http", "ws": "http", "https": "https", "wss": "https"}


@dataclass
class Name:
    """What one hostname of the lab answers on."""

    what: str  # for messages: "route 'wiki.ops' of service 'wiki'", "host 'indri'"
    web: set[tuple[str, int]] = field(default_factory=set)  # (http|https, port)
    tcp: set[int] = field(default_factory=set)  # tcp route listen ports
    ports: dict[int, str] = field(default_factory=dict)  # a host's ports -> who listens


@dataclass(frozen=True)
class FoundURL:
    text: str
    scheme: str
    host: str
    port: int | None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def find_urls(text: str) -> list[FoundURL]:
    """Every scheme://host[:port] in a value (user info dropped, host lowercased)."""
    out = []
    for match in URL.finditer(text):
        try:
            parts = urlsplit(match.group(0))
            port = parts.port
        except ValueError:
            continue
        host = (parts.hostname or "").rstrip(".")
        if not host:
            continue
        scheme = match.group(1).lower()
        out.append(FoundURL(match.group(0), scheme, host,
                            port if port is not None else DEFAULT_PORTS.get(scheme)))
    return out


def _host_ports(lab: Lab) -> dict[str, dict[int, str]]:
    """Host -> port -> what answers there from other machines."""
    out: dict[str, dict[int, str]] = {h: {} for h in lab.hosts}
    for name, svc in lab.services.items():
        if svc.native in out:
            for port in svc.ports.values():
                out[svc.native].setdefault(port, f"service '{name}'")
    for key, domain in lab.domains.items():
        if domain.proxy == "caddy" and domain.host in out:
            out[domain.host].setdefault(domain.listen_port, f"Caddy (domain '{key}')")
    for r in routes(lab):
        if r.protocol == "tcp" and r.proxy_host in out and r.listen is not None:
            out[r.proxy_host].setdefault(r.listen, f"Caddy (route '{r.key}')")
    if lab.tailnet is not None:
        for host, device in lab.tailnet.devices.items():
            for serve in device.serve:
                if host in out:
                    out[host].setdefault(serve.port, "tailscale serve")
    return out


def lab_names(lab: Lab) -> tuple[dict[str, Name], list[str]]:
    """Every hostname the lab answers to, and the suffixes under which a name must be one
    of them (the lab's domains and tailnet; not the public zone, which holds other names)."""
    names: dict[str, Name] = {}
    suffixes = {d.suffix for d in lab.domains.values()}
    magic = {d.suffix for d in lab.domains.values() if d.proxy == "magicdns"}
    if lab.tailnet is not None:
        magic.add(lab.tailnet.name)
        suffixes.add(lab.tailnet.name)
    for host, ports in _host_ports(lab).items():
        for suffix in magic:
            names[f"{host}.{suffix}"] = Name(f"host '{host}'", ports=ports)
        address = lab.hosts[host].address
        if address and not is_ip(address):  # a declared DNS name is one of the host's
            names[address.lower().rstrip(".")] = Name(f"host '{host}'", ports=ports)
    resolved = routes(lab)
    # Every name of a Caddy domain resolves to its proxy host, where layer-4 listeners
    # answer whatever name was dialled (ssh://forge.ops...:2222 reaches git.ops's).
    layer4: dict[str, set[int]] = {}
    for r in resolved:
        if r.protocol == "tcp" and r.proxy == "caddy" and r.proxy_host and r.listen:
            layer4.setdefault(r.proxy_host, set()).add(r.listen)
    for r in resolved:
        if r.hostname in names and names[r.hostname].ports:
            continue  # a native service's MagicDNS name is its host's name
        name = names.setdefault(r.hostname, Name(f"route '{r.key}' of service '{r.service}'"))
        domain = lab.domains[r.domain]
        if r.proxy == "caddy" and r.proxy_host:
            name.tcp |= layer4.get(r.proxy_host, set())
        if r.protocol == "tcp":
            name.tcp.add(r.listen if r.proxy == "caddy" and r.listen else r.upstream_port)
        elif r.proxy == "magicdns":
            name.web.add(("https", 443))
        else:
            scheme = "http" if domain.tls.mode is TLSMode.off else "https"
            name.web.add((scheme, domain.listen_port))
    if lab.public is not None:
        scheme_port = public_scheme_port(lab)
        for p in public_routes(lab):
            names.setdefault(p.hostname, Name(f"public name of '{p.key}'")).web.add(scheme_port)
    return names, sorted(suffixes, key=len, reverse=True)


def url_problem(url: FoundURL, names: dict[str, Name], suffixes: list[str]) -> str | None:
    """Why a URL naming the lab's own services would not reach them, or None."""
    info = names.get(url.host)
    if info is None:
        suffix = next((s for s in suffixes if url.host.endswith("." + s)), None)
        if suffix is None:
            return None

        known = [n for n in names if n.endswith("." + suffix)]
        return (f"{url.text} names '{url.host}', which is no route or host of the lab"
                + did_you_mean(url.host, known))
    web = WEB.get(url.scheme)
    port = url.port
    if web is not None and info.web:
        if (web, port) in info.web:
            return None
        want = ", ".join(f"{s}://{url.host}" + ("" if DEFAULT_PORTS[s] == p else f":{p}")
                         for s, p in sorted(info.web))
        return f"{url.text} does not match {info.what}, served at {want}"
    if port is None:
        return None
    if info.ports:
        if port in info.ports:
            return None
        listed = ", ".join(str(p) for p in sorted(info.ports)) or "none"
        return f"{url.text}: nothing on {info.what} listens on port {port} (ports: {listed})"
    allowed = info.tcp | {p for _, p in info.web}
    if port in allowed:
        return None
    if web is not None and info.tcp:
        return f"{url.text}: {info.what} is a TCP route (port {sorted(info.tcp)[0]}), not HTTP"
    return (f"{url.text}: {info.what} answers on port "
            f"{', '.join(str(p) for p in sorted(allowed))}, not {port}")


# --- scrapes and probes -------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    service: str
    address: str  # host:port Prometheus dials
    host: str | None  # native: the host it runs on
    cluster: str | None  # kubernetes: its cluster (the address is in-cluster DNS)
    port: int


def prometheus_at(lab: Lab) -> tuple[str, str, str | None] | None:
    """(service, host its traffic leaves from, cluster or None) of the lab's Prometheus."""

    name = store_service(lab, "prometheus")
    if name is None:
        return None
    svc = lab.services[name]
    if svc.native is not None:
        return (name, svc.native, None) if svc.native in lab.hosts else None
    cluster = lab.clusters.get(svc.kubernetes or "")
    return (name, cluster.host, svc.kubernetes) if cluster is not None else None


def scrapes(lab: Lab) -> list[Scrape]:
    """What the rendered prometheus.yml scrapes, one per service with metrics."""
    at = prometheus_at(lab)
    home = at[2] if at is not None else None
    out = []
    for name, svc in lab.services.items():
        if svc.metrics is None or svc.metrics.port not in svc.ports:
            continue
        if svc.native is not None:
            port = svc.ports[svc.metrics.port]
            out.append(Scrape(name, f"{host_address(lab, svc.native)}:{port}", svc.native,
                              None, port))
        elif (svc.kubernetes != home and at is not None
              and (via := ingress_scrape(lab, name, svc)) is not None):
            # Another cluster's service, scraped through its tailnet ingress device.
            out.append(Scrape(name, via, ingress_name(name, svc, lab), None, 443))
        else:
            port = cluster_port(svc, svc.metrics.port)
            out.append(Scrape(name, f"{in_cluster_host(name, svc)}:{port}", None,
                              svc.kubernetes, port))
    return out


def scrape_paths(lab: Lab) -> list[tuple[str, str, int]]:
    """(Prometheus's host, native target host, port) for each native scrape target."""
    at = prometheus_at(lab)
    if at is None:
        return []
    return [(at[1], s.host, s.port) for s in scrapes(lab) if s.host is not None]


def loopback_urls(words: list[str]) -> list[FoundURL]:
    """URLs on loopback in a probe command: they reach the machine running the probe."""
    return [u for w in words for u in find_urls(w) if is_loopback(u.host)]


def _url_endpoint(lab: Lab, url: str, by_name: dict[str, ResolvedRoute]
                  ) -> tuple[str, int] | None:
    """(tailnet device, port) a URL the lab renders reaches, when it is the lab's own."""
    parts = urlsplit(url)
    name = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    r = by_name.get(name)
    if r is not None:
        if r.proxy == "caddy" and r.proxy_host:
            return r.proxy_host, lab.domains[r.domain].listen_port
        return r.upstream_device, r.upstream_port
    for host in lab.hosts:
        if host_address(lab, host) == name and port is not None:
            return host, port
    return None


def collector_paths(lab: Lab) -> list[tuple[str, str, str, int, str]]:
    """(host running Alloy, kind, device, port, URL) for each place Alloy sends to."""

    stores = [(kind, name) for kind in ("prometheus", "loki")
              if (name := store_service(lab, kind)) is not None]
    if not stores:
        return []
    by_name = {r.hostname: r for r in reversed(routes(lab)) if r.protocol == "http"}
    out = []
    for kind, name in stores:
        for host in collector_hosts(lab):
            url = store_url(lab, name, host=host)
            end = _url_endpoint(lab, url, by_name) if url else None
            if url and end is not None and end[0] != host:
                out.append((host, kind, end[0], end[1], url))
    return out


def store_service(lab: Lab, kind: str) -> str | None:
    """The service that is the lab's `kind` ("prometheus", "loki", "grafana"), if any.

    A service named after it wins; otherwise the first whose image is `.../KIND:TAG`.
    """
    if kind in lab.services:
        return kind
    for name, svc in lab.services.items():
        if svc.image and svc.image.rsplit("/", 1)[-1].split(":", 1)[0].split("@")[0] == kind:
            return name
    return None


def http_port(svc: Service) -> int | None:
    """The port a service speaks HTTP on: its first http route's, else `http`, else first."""
    for route in svc.routes.values():
        if route.protocol == "http" and route.port in svc.ports:
            return svc.ports[route.port]
    if "http" in svc.ports:
        return svc.ports["http"]
    return next(iter(svc.ports.values()), None)


def store_url(lab: Lab, name: str, *, cluster: str | None = None,
              host: str | None = None) -> str | None:
    """The base URL of service `name` as seen from a client in `cluster` or on `host`.

    Same cluster: in-cluster DNS; same host: loopback; otherwise its first HTTP route's
    URL, or a native service's host address. None when nothing outside can reach it.
    """
    svc = lab.services[name]
    port = http_port(svc)
    if port is not None and svc.kubernetes is not None and svc.kubernetes == cluster:
        port_name = next(n for n, p in svc.ports.items() if p == port)
        return f"http://{resolve.in_cluster_host(name, svc)}:{resolve.cluster_port(svc, port_name)}"
    if port is not None and svc.native is not None and svc.native == host:
        return f"http://127.0.0.1:{port}"
    for route in resolve.service_routes(lab, name):
        if route.protocol == "http":
            return resolve.service_url(route, lab)
    if port is not None and svc.native is not None:
        return f"http://{resolve.host_address(lab, svc.native)}:{port}"
    return None


COLLECTOR_ROLES = (Role.compute, Role.gpu)


def collector_hosts(lab: Lab) -> dict[str, list[str]]:
    """Host -> its native services (sorted), for hosts that get an Alloy config."""
    out: dict[str, list[str]] = {}
    for name, svc in sorted(lab.services.items()):
        host = svc.native
        if host is not None and host in lab.hosts and lab.hosts[host].role in COLLECTOR_ROLES \
                and lab.hosts[host].managed:  # an appliance runs no collector of ours
            out.setdefault(host, []).append(name)
    return dict(sorted(out.items()))
