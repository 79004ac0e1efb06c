"""Public ingress: the VPS's nginx config and the DNS records its public names need.

Renders two render-only artifacts when the catalog has a `public:` section:

- `public/nginx.conf`: a whole nginx.conf (`nginx -t -c` accepts it). One server per
  public name, proxying to the route's upstream with the route's own hostname as Host
  and TLS SNI; every other name gets no answer (444). Upstream names are resolved per
  request through `public.resolver` (MagicDNS), so nginx starts even before the
  tailnet is up.
- `public/dns.json`: the records, `{"zone", "records": [{"name", "fqdn", "type",
  "value", "ttl"}]}`: an A/AAAA record per public name and VPS address, or a CNAME to
  the VPS's own name (e.g. `blumeops-proxy.fly.dev`). `name` is relative to the zone.

Every catalog value written here was checked at `validate` to be a DNS name, an IP
address or a port; `_word` refuses anything else, so a value that slipped past would
stop the render rather than change the config's structure.
"""

from __future__ import annotations

import ipaddress
import json
import re

from blumeops.catalog.model import Lab, TLSMode
from blumeops.catalog.public import PublicRoute, public_routes
from blumeops.core.resources import Resource
from blumeops.render import RenderContext

NGINX_PATH = "public/nginx.conf"
DNS_PATH = "public/dns.json"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's ca-certificates
_SAFE = re.compile(r"^[A-Za-z0-9._:\[\]/-]+$")


def _word(value: str) -> str:
    """A value written bare into nginx syntax: names, addresses, ports, URLs of those."""
    if not _SAFE.match(value):
        raise ValueError(f"refusing to write {value!r} into nginx.conf")
    return value


def listen_directive(lab: Lab) -> str:
    assert lab.public is not None
    return _word(str(lab.public.listen))


def _verify(lab: Lab, p: PublicRoute) -> list[str]:
    """TLS to the upstream: SNI is the route's name; verified unless it is Caddy's own CA."""
    if not p.tls:
        return []
    lines = ["proxy_ssl_server_name on;", f"proxy_ssl_name {_word(p.internal)};"]
    domain = lab.domains.get(p.key.partition(".")[2])
    internal_ca = domain is not None and domain.proxy == "caddy" \
        and domain.tls.mode is TLSMode.internal
    if internal_ca:
        lines.append("proxy_ssl_verify off;  # Caddy's internal CA: not in any trust store")
    else:
        lines += ["proxy_ssl_verify on;", f"proxy_ssl_trusted_certificate {CA_BUNDLE};"]
    return lines


def _server(lab: Lab, p: PublicRoute, listen: str) -> list[str]:
    assert lab.public is not None
    proto = "https" if lab.public.tls == "edge" else "$scheme"
    location = [
        f"set $blumeops_upstream {_word(p.upstream)};",
        "proxy_pass $blumeops_upstream;",
        f"proxy_set_header Host {_word(p.internal)};",
        *_verify(lab, p),
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Host $host;",
        f"proxy_set_header X-Forwarded-Proto {proto};",
        "proxy_set_header X-Real-IP $remote_addr;",
    ]
    return [
        f"    # {p.service}: {p.key} ({p.internal}) via {p.device}:{p.port}",
        "    server {",
        f"        listen {listen};",
        f"        server_name {_word(p.hostname)};",
        "        location / {",
        *(f"            {line}" for line in location),
        "        }",
        "    }",
    ]


def nginx_conf(lab: Lab, ctx: RenderContext, published: list[PublicRoute] | None = None
               ) -> str:
    """The whole nginx.conf of the public proxy."""
    assert lab.public is not None
    published = public_routes(lab) if published is None else published
    listen = listen_directive(lab)
    resolver = _word(lab.public.resolver)
    if ":" in resolver and not resolver.startswith("["):
        resolver = f"[{resolver}]"  # nginx reads a bare IPv6 address as HOST:PORT
    lines = [
        ctx.header("#").rstrip("\n"),
        f"# Public ingress on {lab.public.host}: these names, and nothing else.",
        "worker_processes auto;",
        "",
        "events {",
        "    worker_connections 1024;",
        "}",
        "",
        "http {",
        "    server_tokens off;",
        "    # Tailnet names resolve per request, so nginx starts before the tailnet is up.",
        f"    resolver {resolver} valid=30s;",
        "    resolver_timeout 5s;",
        "",
        "    map $http_upgrade $connection_upgrade {",
        '        default "";',
        "        websocket upgrade;",
        "    }",
        "",
        "    # A name that is not published gets no answer.",
        "    server {",
        f"        listen {listen} default_server;",
        "        server_name _;",
        "        return 444;",
        "    }",
    ]
    for p in published:
        lines += ["", *_server(lab, p, listen)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def dns_records(lab: Lab, published: list[PublicRoute] | None = None) -> dict[str, object]:
    """The records the public zone needs, as plain data."""
    assert lab.public is not None
    public = lab.public
    published = public_routes(lab) if published is None else published
    records = []
    for name in sorted({p.hostname for p in published}):
        relative = name.removesuffix("." + public.domain)
        for address in public.address:
            try:
                kind = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
                value = address
            except ValueError:
                kind, value = "CNAME", address.rstrip(".") + "."
            records.append({"name": relative, "fqdn": name + ".", "type": kind,
                            "value": value, "ttl": public.ttl})
    return {"zone": public.domain, "records": records}


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    if lab.public is None:
        return []
    published = public_routes(lab)
    dns = json.dumps(dns_records(lab, published), indent=2) + "\n"
    return [
        Resource("files@lab", "artifact", NGINX_PATH, nginx_conf(lab, ctx, published),
                 NGINX_PATH),
        Resource("files@lab", "artifact", DNS_PATH, dns, DNS_PATH),
    ]
