"""Caddy: one JSON config (what the driver loads) and one Caddyfile (for people) per host.

Routes come from `catalog.resolve`, so Caddy always points where the tailnet policy and the
docs say it does. The JSON has no `admin` key: the runtime driver owns the admin endpoint.
Every route carries an `@id` (`route:SERVICE:KEY`), so drift in a live config can be
pinned to one catalog route through Caddy's `/id/...` API.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from blumeops.catalog.model import Domain, Lab, TLSMode
from blumeops.catalog.resolve import ResolvedRoute, routes
from blumeops.core.resources import Resource
from blumeops.core.spec import ROUTE_HEADER
from blumeops.render import RenderContext

L4_MODULE = "github.com/mholt/caddy-l4"

# Per DNS provider: the field its Caddy module reads the token from, and the env variable.
# Unknown providers get `api_token` from `{env.PROVIDER_API_TOKEN}`.
DNS_TOKENS: dict[str, tuple[str, str]] = {
    "gandi": ("bearer_token", "GANDI_BEARER_TOKEN"),
    "cloudflare": ("api_token", "CLOUDFLARE_API_TOKEN"),
    "digitalocean": ("auth_token", "DIGITALOCEAN_API_TOKEN"),
}


def dns_token(provider: str) -> tuple[str, str]:
    """(module field, environment variable) holding the DNS provider's API token."""
    env = provider.upper().replace("-", "_") + "_API_TOKEN"
    return DNS_TOKENS.get(provider, ("api_token", env))


def proxy_hosts(lab: Lab) -> list[str]:
    """Hosts that run Caddy for at least one domain, sorted."""
    return sorted({d.host for d in lab.domains.values() if d.proxy == "caddy" and d.host})


def _host_routes(lab: Lab, host: str,
                 resolved: list[ResolvedRoute] | None = None) -> list[ResolvedRoute]:
    """The host's routes, HTTP before TCP, by hostname (route order is stable in diffs)."""
    found = [r for r in (routes(lab) if resolved is None else resolved)
             if r.proxy == "caddy" and r.proxy_host == host]
    return sorted(found, key=lambda r: (r.protocol, r.hostname, r.service))


def _bind(domain: Domain) -> str:
    """The host part of the domain's listen address ('' means all interfaces)."""
    return domain.listen.rsplit(":", 1)[0] if domain.listen else ""


def _listen(domain: Domain) -> str:
    return domain.listen or f":{domain.listen_port}"


def route_id(r: ResolvedRoute) -> str:
    return f"route:{r.service}:{r.key}"


# --- JSON ---------------------------------------------------------------------------------


def _dial(upstream: str) -> str:
    """HOST:PORT as Caddy dials it; an IPv6 address keeps its brackets."""
    url = urlsplit(upstream)
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{url.port or (443 if url.scheme == 'https' else 80)}"


def _reverse_proxy(upstream: str) -> dict[str, Any]:
    url = urlsplit(upstream)
    handler: dict[str, Any] = {"handler": "reverse_proxy", "upstreams": [{"dial": _dial(upstream)}]}
    if url.scheme == "https":
        # The tailnet ingress expects its own name as Host; TLS SNI follows the dial host.
        handler["transport"] = {"protocol": "http", "tls": {}}
        handler["headers"] = {
            "request": {"set": {"Host": ["{http.reverse_proxy.upstream.hostport}"]}}
        }
    return handler


def _http_route(r: ResolvedRoute) -> dict[str, Any]:
    # The route names itself in a response header (set last, over the upstream's), so a
    # probe can tell its answer from Caddy's empty 200 for a Host with no route.
    mark = {"handler": "headers",
            "response": {"set": {ROUTE_HEADER: [r.hostname]}, "deferred": True}}
    return {
        "@id": route_id(r),
        "match": [{"host": [r.hostname]}],
        "handle": [mark, _reverse_proxy(r.upstream)],
        "terminal": True,
    }


def _issuer(domain: Domain) -> dict[str, Any]:
    tls = domain.tls
    if tls.mode is TLSMode.internal:
        return {"module": "internal"}
    issuer: dict[str, Any] = {"module": "acme"}
    if tls.email:
        issuer["email"] = tls.email
    if tls.mode is TLSMode.acme_dns and tls.provider:
        field, env = dns_token(tls.provider)
        issuer["challenges"] = {
            "dns": {"provider": {"name": tls.provider, field: f"{{env.{env}}}"}}
        }
    return issuer


def caddy_config(lab: Lab, host: str,
                 resolved: list[ResolvedRoute] | None = None) -> dict[str, Any]:
    """The JSON config for the Caddy on `host`, as plain data (no `admin`)."""
    domains = {k: d for k, d in lab.domains.items() if d.proxy == "caddy" and d.host == host}
    host_routes = _host_routes(lab, host, resolved)
    servers: dict[str, dict[str, Any]] = {}
    listeners: dict[str, list[str]] = {}  # listen address -> domain keys
    for key, domain in domains.items():
        listeners.setdefault(_listen(domain), []).append(key)
    for listen, keys in sorted(listeners.items()):
        server_routes = [_http_route(r) for r in host_routes
                         if r.protocol == "http" and r.domain in keys]
        if not server_routes:
            continue
        server: dict[str, Any] = {"listen": [listen], "routes": server_routes}
        if all(domains[k].tls.mode is TLSMode.off for k in keys):
            server["automatic_https"] = {"disable": True}
        servers["+".join(sorted(keys))] = server

    apps: dict[str, Any] = {}
    if servers:
        apps["http"] = {"servers": servers}

    policies = []
    for key, domain in sorted(domains.items()):
        if domain.tls.mode is TLSMode.off:
            continue
        subjects = sorted(r.hostname for r in host_routes
                          if r.protocol == "http" and r.domain == key)
        if subjects:
            policies.append({"subjects": subjects, "issuers": [_issuer(domain)]})
    if policies:
        apps["tls"] = {"automation": {"policies": policies}}
    if any(d.tls.mode is TLSMode.internal for d in domains.values()):
        # Never try to write the local CA into the system trust store (it wants sudo).
        apps["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}

    l4: dict[str, Any] = {}
    for r in host_routes:
        if r.protocol != "tcp" or r.listen is None:
            continue
        bind = _bind(domains[r.domain])
        l4[f"tcp-{r.listen}"] = {
            "listen": [f"{bind}:{r.listen}"],
            "routes": [{
                "@id": route_id(r),
                "handle": [{"handler": "proxy", "upstreams": [{"dial": [r.upstream]}]}],
            }],
        }
    if l4:
        apps["layer4"] = {"servers": l4}
    return {"apps": apps}


# --- Caddyfile ----------------------------------------------------------------------------


def _tls_directive(domain: Domain) -> list[str]:
    tls = domain.tls
    if tls.mode is TLSMode.internal:
        return ["tls internal"]
    if tls.mode is TLSMode.acme_dns and tls.provider:
        _, env = dns_token(tls.provider)
        email = f" {tls.email}" if tls.email else ""
        return [f"tls{email} {{", f"\tdns {tls.provider} {{env.{env}}}", "}"]
    if tls.mode is TLSMode.acme and tls.email:
        return [f"tls {tls.email}"]
    return []


def _site(r: ResolvedRoute, domain: Domain) -> list[str]:
    scheme = "http://" if domain.tls.mode is TLSMode.off else ""
    port = domain.listen_port
    default = 80 if domain.tls.mode is TLSMode.off else 443
    address = f"{scheme}{r.hostname}" + ("" if port == default else f":{port}")
    body: list[str] = [f"# {r.service}: {r.key} -> {r.upstream}"]
    if _bind(domain):
        body.append(f"bind {_bind(domain)}")
    body.extend(_tls_directive(domain))
    body.append(f"header >{ROUTE_HEADER} {r.hostname}")
    if r.upstream.startswith("https://"):
        body += [f"reverse_proxy {r.upstream} {{", "\theader_up Host {upstream_hostport}", "}"]
    else:
        body.append(f"reverse_proxy {r.upstream.removeprefix('http://')}")
    return [f"{address} {{", *(f"\t{line}" for line in body), "}"]


def caddyfile(lab: Lab, host: str, ctx: RenderContext,
              resolved: list[ResolvedRoute] | None = None) -> str:
    """A readable Caddyfile equivalent to the JSON config (the JSON is what is applied)."""
    domains = {k: d for k, d in lab.domains.items() if d.proxy == "caddy" and d.host == host}
    host_routes = _host_routes(lab, host, resolved)
    lines = [ctx.header("#").rstrip("\n")]
    for need in caddy_requirements(lab, host, host_routes):
        lines.append(f"# needs a custom build: {need}")
    glob: list[str] = []
    if domains and all(d.tls.mode is TLSMode.off for d in domains.values()):
        glob.append("auto_https off")
    if any(d.tls.mode is TLSMode.internal for d in domains.values()):
        glob.append("skip_install_trust")  # pki.ca.local.install_trust = false
    tcp = [r for r in host_routes if r.protocol == "tcp" and r.listen is not None]
    if tcp:
        glob.append("layer4 {")
        for r in tcp:
            glob += [f"\t{_bind(domains[r.domain])}:{r.listen} {{",
                     f"\t\t# {r.service}: {r.key}",
                     "\t\troute {", f"\t\t\tproxy {r.upstream}", "\t\t}", "\t}"]
        glob.append("}")
    if glob:
        lines += ["{", *(f"\t{line}" for line in glob), "}"]  # caddy fmt: no blank line
    for r in host_routes:
        if r.protocol == "http":
            lines += ["", *_site(r, domains[r.domain])]
    return "\n".join(lines) + "\n"


# --- requirements -------------------------------------------------------------------------


def caddy_requirements(lab: Lab, host: str | None = None,
                       resolved: list[ResolvedRoute] | None = None) -> list[str]:
    """Plain sentences naming what stock Caddy cannot do for this lab, and the module.

    Stock Caddy has neither the layer4 app (TCP routes) nor DNS provider modules
    (tls acme-dns); either needs a Caddy built with `xcaddy build --with MODULE`.
    """
    out: list[str] = []
    hosts = [host] if host else proxy_hosts(lab)
    resolved = routes(lab) if resolved is None else resolved
    for h in hosts:
        for key, d in sorted(lab.domains.items()):
            if d.proxy == "caddy" and d.host == h and d.tls.mode is TLSMode.acme_dns:
                out.append(f"caddy@{h}: domain '{key}' (tls acme-dns) needs module "
                           f"dns.providers.{d.tls.provider}: build Caddy with "
                           f"github.com/caddy-dns/{d.tls.provider}")
        for r in _host_routes(lab, h, resolved):
            if r.protocol == "tcp":
                out.append(f"caddy@{h}: tcp route '{r.key}' of service '{r.service}' "
                           f"(listen {r.listen}) needs the layer4 app: build Caddy with "
                           f"{L4_MODULE}")
    return out


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    out: list[Resource] = []
    resolved = routes(lab)  # once: resolving is the costly part for big labs
    for host in proxy_hosts(lab):
        target = f"caddy@{host}"
        config = caddy_config(lab, host, resolved)
        body = json.dumps(config, indent=2, sort_keys=True) + "\n"
        out.append(Resource(target, "config", host, body, f"caddy/{host}.json"))
        out.append(Resource(target, "caddyfile", host, caddyfile(lab, host, ctx, resolved),
                            f"caddy/{host}.Caddyfile"))
    return out
