"""Reference docs: host, service, routing, port and architecture pages, always true.

Renders Markdown pages under `docs/` in the style of the lab's hand-written notes (YAML
front matter with title and tags, `[[wikilinks]]` between pages), generated from the
catalog so they cannot drift from it. Pages hold names and secret *references* only,
never values (renderers never see values).

Each page depends on as little as possible, so a change to one service rewrites only
its own page and the pages that list the changed fact (its host, ports, routing), not
every page in the lab: the architecture page shows no ports for that reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from blumeops.catalog import resolve
from blumeops.catalog.model import Lab, Service
from blumeops.catalog.public import public_routes, public_url, public_urls
from blumeops.catalog.reach import collector_hosts, store_service
from blumeops.core.resources import Resource
from blumeops.render import RenderContext
from blumeops.render.borgmatic import backup_target, source_path, sources_by_host

DIAGRAM_NAMES = 8  # list service names in a diagram node up to this many, else count


class Index:
    """What many pages need, computed once per render (routes, the lab's Prometheus), and
    wikilinks to host and service pages, path-qualified where a name is both."""

    def __init__(self, lab: Lab) -> None:
        self.clash = set(lab.hosts) & set(lab.services)
        self.prometheus = store_service(lab, "prometheus")
        self.routes = resolve.routes(lab)
        self.public = public_urls(lab, self.routes)  # (service, route key) -> public URL
        self.by_service: dict[str, list[resolve.ResolvedRoute]] = {}
        for r in self.routes:
            self.by_service.setdefault(r.service, []).append(r)

    def host(self, name: str) -> str:
        return f"[[hosts/{name}|{name}]]" if name in self.clash else f"[[{name}]]"

    def service(self, name: str) -> str:
        return f"[[services/{name}|{name}]]" if name in self.clash else f"[[{name}]]"


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(head: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A Markdown table, followed by a blank line."""
    head = list(head)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def page(ctx: RenderContext, title: str, tags: list[str], body: list[str]) -> str:
    front = ["---", f"title: {title}", "tags:", *[f"  - {t}" for t in tags], "---", ""]
    notice = ctx.header("<!--").splitlines()
    comment = [notice[0], *[line.removeprefix("<!--").lstrip() for line in notice[1:]]]
    return "\n".join([*front, *comment[:-1], comment[-1] + " -->", "", *body]).rstrip() + "\n"


def _artifact(path: str, body: str, service: str | None = None) -> Resource:
    return Resource(target="files@lab", kind="artifact", name=path, body=body, path=path,
                    service=service)


def _where(lab: Lab, name: str, svc: Service, ix: Index) -> str:
    if svc.native is not None:
        manager = resolve.service_manager(lab, svc.native) if svc.native in lab.hosts else None
        return f"native on {ix.host(svc.native)}" + (f" ({manager.value})" if manager else "")
    cluster = lab.clusters.get(svc.kubernetes or "")
    on = f" on {ix.host(cluster.host)}" if cluster else ""
    return f"Kubernetes cluster `{svc.kubernetes}`{on}, namespace `{svc.namespace or name}`"


def _reach(lab: Lab, domain_key: str) -> str:
    domain = lab.domains[domain_key]
    if domain.proxy == "magicdns":
        return "tailnet clients only"
    if domain.listen and domain.listen.startswith(("127.", "localhost", "[::1]")):
        return f"this host only ({domain.listen})"
    return "everywhere that reaches the proxy (tailnet, pods, containers)"


# --- services -------------------------------------------------------------------------


def service_page(lab: Lab, ctx: RenderContext, name: str, ix: Index,
                 dependents: list[str]) -> str:
    svc = lab.services[name]
    body = [f"# {name}", ""]
    if svc.description:
        body += [svc.description, ""]
    facts: list[tuple[str, str]] = [("Runtime", svc.runtime),
                                     ("Where", _where(lab, name, svc, ix))]
    if svc.image:
        facts.append(("Image", f"`{svc.image}`"))
    if svc.command:
        facts.append(("Command", "`" + " ".join(svc.command) + "`"))
    if svc.ports:
        facts.append(("Ports", ", ".join(f"{p} `{n}`" for n, p in svc.ports.items())))
    if svc.schedule is not None:
        when = (f"cron `{svc.schedule.cron}` (host's local time)" if svc.schedule.cron
                else f"every {svc.schedule.every}")
        facts.append(("Schedule", f"a job: {when}"
                      + (f", last success at most {svc.schedule.max_age} old"
                         if svc.schedule.max_age else "")))
    body += table(["", ""], facts)

    routes = ix.by_service.get(name, [])
    body += ["## Routes", ""]
    published = {key: url for (svc_name, key), url in ix.public.items() if svc_name == name}
    if routes and published:  # a column only where there is something to show
        body += table(["URL", "Public URL", "Port", "Upstream", "Reachable from"], [
            (resolve.service_url(r, lab), published.get(r.key, "-"),
             f"{r.port_name} ({r.port})", f"`{r.upstream}`",
             _reach(lab, r.domain) + ("; the internet, through the public proxy on "
                                      f"{ix.host(lab.public.host)}"
                                      if r.key in published and lab.public else ""))
            for r in routes])
    elif routes:
        body += table(["URL", "Port", "Upstream", "Reachable from"], [
            (resolve.service_url(r, lab), f"{r.port_name} ({r.port})", f"`{r.upstream}`",
             _reach(lab, r.domain)) for r in routes])
        if svc.audience:
            body += ["Audience: " + ", ".join(f"`{a}`" for a in svc.audience), ""]
    else:
        body += ["None: reachable only at its own address.", ""]

    body += ["## Health", ""]
    health = svc.health
    if svc.schedule is not None:
        body += ["The result and age of its last run (`blumeops status` shows last run, "
                 "next run and exit code).", ""]
    elif health is None:
        body += ["No probe declared: health is Unknown.", ""]
    elif health.http is not None:
        port = f"port `{health.port}`" if health.port else "the first port"
        body += [f"HTTP GET `{health.http}` on {port}, "
                 f"2xx/3xx within {health.timeout:g} s.", ""]
    elif health.tcp is not None:
        body += [f"TCP connect to port `{health.tcp}` within {health.timeout:g} s.", ""]
    else:
        body += [f"Command `{' '.join(health.command or [])}` exits 0.", ""]

    body += ["## Metrics", ""]
    if svc.metrics is not None:
        prom = ix.prometheus
        by = ix.service(prom) if prom else "Prometheus (none declared in the catalog)"
        body += [f"Scraped by {by} as job `{name}`: port `{svc.metrics.port}`, "
                 f"path `{svc.metrics.path}`.", ""]
    else:
        body += ["None declared.", ""]

    body += ["## Backups", ""]
    if svc.backup and svc.native is not None:
        target = backup_target(lab)
        to = f" to {ix.host(target[0])}" if target else ""
        body += [f"Backed up by borgmatic on {ix.host(svc.native)}{to}:", ""]
        body += [f"- `{source_path(p, svc)}`" for p in svc.backup] + [""]
    elif svc.backup:
        body += ["Declares paths, but only native services are backed up today:", ""]
        body += [f"- `{p}`" for p in svc.backup] + [""]
    else:
        body += ["None declared.", ""]

    body += ["## Depends on", ""]
    body += [", ".join(ix.service(d) for d in svc.depends_on) or "Nothing.", ""]
    body += ["## Needed by", ""]
    body += [", ".join(ix.service(d) for d in dependents) or "Nothing.", ""]

    body += ["## Secrets", ""]
    if svc.secrets:
        body += table(["Name", "Reference", "Delivered as"], [
            (f"`{key}`", f"`{ref.ref}`", f"file `{ref.file}`" if ref.file else "environment")
            for key, ref in sorted(svc.secrets.items())])
        body += ["Values are resolved only when applied; they never appear here.", ""]
    else:
        body += ["None.", ""]
    body += ["## Related", "", "- [[routing]]", "- [[ports]]", "- [[architecture]]"]
    return page(ctx, name, ["reference", "service", svc.runtime], body)


# --- hosts ----------------------------------------------------------------------------


def host_page(lab: Lab, ctx: RenderContext, host: str, ix: Index) -> str:
    spec = lab.hosts[host]
    manager = resolve.service_manager(lab, host)
    body = [f"# {host}", ""]
    facts = [("Role", spec.role.value), ("OS", spec.os.value),
             ("Address", f"`{resolve.host_address(lab, host)}`"),
             ("Service manager", manager.value if manager else "none blumeops can drive")]
    if not spec.managed:
        facts[-1] = ("Service manager", "its own (not managed by blumeops: checked, never "
                                        "applied)")
    if spec.tags:
        facts.append(("Tags", ", ".join(f"`{t}`" for t in spec.tags)))
    body += table(["", ""], facts)

    native = sorted(n for n, s in lab.services.items() if s.native == host)
    body += ["## Native services", ""]
    body += [f"- {ix.service(n)}" + (f": {lab.services[n].description}"
                                         if lab.services[n].description else "")
             for n in native] or ["None."]
    body += [""]
    clusters = sorted(c for c, spec_ in lab.clusters.items() if spec_.host == host)
    for cluster in clusters:
        inside = sorted(n for n, s in lab.services.items() if s.kubernetes == cluster)
        body += [f"## Cluster `{cluster}`", "",
                 f"Context `{lab.clusters[cluster].context}`, "
                 f"delivered by {lab.clusters[cluster].delivery}.", ""]
        body += [f"- {ix.service(n)}" for n in inside] or ["No services."]
        body += [""]
    body += _storage(lab, host)
    proxies = sorted(f"`*.{d.suffix}`" for d in lab.domains.values() if d.host == host)
    if proxies:
        body += ["## Proxy", "", "Runs Caddy for " + ", ".join(proxies) + ". See [[routing]].",
                 ""]
    body += ["## Ports", ""]
    rows = host_ports(lab, host, ix)
    body += table(["Port", "Service", "Name"], rows) if rows else ["None.", ""]
    body += ["## Related", "", "- [[ports]]", "- [[architecture]]"]
    return page(ctx, host, ["reference", "host", spec.role.value], body)


def _storage(lab: Lab, host: str) -> list[str]:
    """The shares a host serves and the ones it mounts (declared or implied)."""
    body: list[str] = []
    shares = lab.hosts[host].shares
    if shares:
        body += ["## Shares", ""]
        body += table(["Share", "Path", "Protocols"], [
            (f"`{host}:{n}`", f"`{s.path}`",
             ", ".join(s.protocols) + (" (read-only)" if s.read_only else ""))
            for n, s in shares.items()])
    mounts = resolve.host_mounts(lab, host)
    if mounts:
        body += ["## Mounts", ""]
        body += table(["Mount point", "Share", "Protocol"], [
            (f"`{point}`", f"`{m.share}`", m.protocol + (" (read-only)" if m.read_only else ""))
            for point, m in mounts.items()])
    return body


def host_ports(lab: Lab, host: str, ix: Index) -> list[tuple[int, str, str]]:
    """(port, owner, port name) listening on a host: native services and its proxies."""
    rows: list[tuple[int, str, str]] = []
    for name, svc in lab.services.items():
        if svc.native == host:
            rows += [(port, ix.service(name), pname) for pname, port in svc.ports.items()]
    for key, domain in lab.domains.items():
        if domain.proxy == "caddy" and domain.host == host:
            rows.append((domain.listen_port, f"proxy `*.{domain.suffix}`", key))
    for r in ix.routes:
        if r.protocol == "tcp" and r.proxy_host == host and r.listen is not None:
            rows.append((r.listen, f"proxy `{r.hostname}` (tcp)", r.key))
    return sorted(set(rows))


# --- routing, ports -------------------------------------------------------------------


def routing_page(lab: Lab, ctx: RenderContext, ix: Index) -> str:
    body = ["# Routing", "", "Every name the lab answers to, and where it goes.", "",
            "## Domains", ""]
    domains = []
    for key, d in sorted(lab.domains.items()):
        mech = (f"Caddy reverse proxy on {ix.host(d.host)}, TLS {d.tls.mode.value}"
                if d.proxy == "caddy" and d.host else "Tailscale MagicDNS")
        domains.append((f"`*.{d.suffix}`", key, mech, _reach(lab, key)))
    body += (table(["Domain", "Key", "Mechanism", "Reachable from"], domains)
             if domains else ["No domains declared.", ""]) + ["## Routes", ""]
    rows = []
    for r in sorted(ix.routes, key=lambda r: (r.domain, r.name, r.service)):
        reach = _reach(lab, r.domain)
        audience = lab.services[r.service].audience
        if audience:
            reach += "; audience " + ", ".join(audience)
        rows.append((f"`{lab.domains[r.domain].suffix}`", f"`{r.hostname}`",
                     ix.service(r.service), f"`{r.upstream}`", reach))
    body += (table(["Domain", "Name", "Service", "Upstream", "Reachable from"], rows)
             if rows else ["No routes declared.", ""])
    body += _public_section(lab, ix)
    body += ["## Related", "", "- [[ports]]", "- [[architecture]]"]
    return page(ctx, "Routing", ["reference", "routing"], body)


def _public_section(lab: Lab, ix: Index) -> list[str]:
    """The names the internet reaches, through the public proxy, and what each serves."""
    if lab.public is None:
        return []
    pub = lab.public
    body = ["## Public names", "",
            f"Served to the internet by nginx on {ix.host(pub.host)} (zone `{pub.domain}`, "
            "`public/nginx.conf` and `public/dns.json`), each as the lab route it fronts.",
            ""]
    rows = [(public_url(lab, p), f"`{p.internal}`", ix.service(p.service),
             f"`{p.upstream}`") for p in public_routes(lab, ix.routes)]
    body += (table(["Public URL", "Lab name", "Service", "nginx proxies to"], rows)
             if rows else ["No route is published.", ""])
    return body


def ports_page(lab: Lab, ctx: RenderContext, ix: Index) -> str:
    body = ["# Port map", "", "What listens where. Kubernetes ports are inside the cluster.",
            ""]
    for host in sorted(lab.hosts):
        rows = host_ports(lab, host, ix)
        if not rows:
            continue
        # Clashes count services only: a proxy's listen port is usually its own service's.
        counts: dict[int, int] = {}
        for port, owner, _ in rows:
            if not owner.startswith("proxy"):
                counts[port] = counts.get(port, 0) + 1
        body += [f"## {ix.host(host)}", ""]
        body += table(["Port", "Service", "Name"], [
            (f"{p} (clash)" if counts.get(p, 0) > 1 else p, owner, pname)
            for p, owner, pname in rows])
    for cluster in sorted(lab.clusters):
        rows_k = sorted((port, ix.service(name), pname, svc.namespace or name)
                        for name, svc in lab.services.items() if svc.kubernetes == cluster
                        for pname, port in svc.ports.items())
        if rows_k:
            body += [f"## Cluster `{cluster}`", ""]
            body += table(["Port", "Service", "Name", "Namespace"], rows_k)
    return page(ctx, "Port map", ["reference", "ports"], body)


# --- architecture ---------------------------------------------------------------------


def _boxes(lines_per_box: list[list[str]], bar: str) -> list[str]:
    """ASCII boxes in a row, each hung from a bar labelled `bar` (the tailnet)."""
    widths = [max(len(t) for t in lines) + 4 for lines in lines_per_box]
    gap = "     "
    rows = [gap.join("┌" + "─" * w + "┐" for w in widths)]
    for i in range(max(len(lines) for lines in lines_per_box)):
        rows.append(gap.join(
            "│" + (lines[i] if i < len(lines) else "").center(w) + "│"
            for lines, w in zip(lines_per_box, widths, strict=True)))
    mids = [(w + 2) // 2 for w in widths]
    rows.append(gap.join("└" + "─" * (m - 1) + "┬" + "─" * (w - m) + "┘"
                         for m, w in zip(mids, widths, strict=True)))
    stem = gap.join(" " * m + "│" + " " * (w + 1 - m) for m, w in zip(mids, widths, strict=True))
    rows.append(stem.rstrip())
    line = gap.join("═" * m + "╧" + "═" * (w + 1 - m) for m, w in zip(mids, widths, strict=True))
    rows.append(line.replace(gap, "═" * len(gap)) + " " + bar)
    return rows


def _names(names: list[str]) -> str:
    if len(names) <= DIAGRAM_NAMES:
        return ", ".join(names)
    return f"{len(names)} services"


def _mid(text: str) -> str:
    """A mermaid node id from any name."""
    return "n_" + "".join(c if c.isalnum() else "_" for c in text)


def architecture_page(lab: Lab, ctx: RenderContext, ix: Index) -> str:
    tailnet = resolve.tailnet_name(lab)
    hosts = sorted(lab.hosts)
    body = ["# Architecture Overview", "",
            f"How the pieces of lab `{lab.lab}` fit together, drawn from the catalog.", "",
            "## Physical Layer", "", "```"]
    for start in range(0, len(hosts), 4):
        chunk = hosts[start:start + 4]
        body += _boxes([[h, lab.hosts[h].role.value, lab.hosts[h].os.value] for h in chunk],
                       f"tailnet {tailnet}" if lab.tailnet else "(no tailnet declared)")
    body += ["```", ""]
    for h in hosts:
        native = sorted(n for n, s in lab.services.items() if s.native == h)
        clusters = sorted(c for c, spec in lab.clusters.items() if spec.host == h)
        what = []
        if native:
            what.append(f"{len(native)} native service{'s' if len(native) != 1 else ''}")
        what += [f"cluster `{c}`" for c in clusters]
        body.append(f"- **{ix.host(h)}** ({lab.hosts[h].role.value}): "
                    + (", ".join(what) or "no services"))
    body += ["", "## Service Routing", "", "```mermaid", "flowchart LR"]
    for key, domain in sorted(lab.domains.items()):
        via = f"Caddy on {domain.host}" if domain.proxy == "caddy" else "MagicDNS"
        body.append(f'  {_mid("d_" + key)}["*.{domain.suffix}<br/>{via}"]')
        groups: dict[str, list[str]] = {}
        for r in ix.routes:
            if r.domain == key:
                svc = lab.services[r.service]
                where = svc.native or f"cluster {svc.kubernetes}"
                groups.setdefault(where, [])
                if r.service not in groups[where]:
                    groups[where].append(r.service)
        for where, names in sorted(groups.items()):
            node = _mid(f"t_{key}_{where}")
            body.append(f'  {_mid("d_" + key)} --> {node}["{where}: {_names(sorted(names))}"]')
    body += ["```", "", "See [[routing]] for every name.", "", "## Data Flow", "",
             "```mermaid", "flowchart LR"]
    body += _data_flow(lab)
    body += ["```", "", "## Related", "", "- [[routing]]", "- [[ports]]"]
    body += [f"- {ix.host(h)}" for h in hosts]
    return page(ctx, "Architecture", ["reference", "architecture"], body)


def _data_flow(lab: Lab) -> list[str]:
    out = []
    for name, cluster in sorted(lab.clusters.items()):
        inside = sorted(n for n, s in lab.services.items() if s.kubernetes == name)
        node = _mid("c_" + name)
        out.append(f'  {node}["cluster {name}: {_names(inside)}"]')
        if cluster.delivery == "argocd":
            out.append(f'  git["git (rendered manifests)"] -->|ArgoCD sync| {node}')
        else:
            out.append(f"  blumeops[blumeops] -->|server-side apply| {node}")
    prom, loki = store_service(lab, "prometheus"), store_service(lab, "loki")
    grafana = store_service(lab, "grafana")
    scraped = sorted(n for n, s in lab.services.items() if s.metrics is not None)
    if prom:
        out.append(f'  {_mid("s_" + prom)}["{prom} (metrics)"]')
        if scraped:
            out.append(f'  scraped["{_names(scraped)}"] -->|scrape| {_mid("s_" + prom)}')
    if loki:
        out.append(f'  {_mid("s_" + loki)}["{loki} (logs)"]')
    for host in collector_hosts(lab):
        node = _mid("a_" + host)
        out.append(f'  {node}["alloy on {host}"]')
        if prom:
            out.append(f"  {node} -->|remote write| {_mid('s_' + prom)}")
        if loki:
            out.append(f"  {node} -->|logs| {_mid('s_' + loki)}")
    if grafana:
        for store in (prom, loki):
            if store:
                out.append(f'  {_mid("s_" + store)} --> {_mid("s_" + grafana)}["{grafana}"]')
    target = backup_target(lab)
    if target:
        for host in sources_by_host(lab):
            out.append(f'  {_mid("h_" + host)}["{host}"] -->|borgmatic| '
                       f'{_mid("h_" + target[0])}["{target[0]}"]')
    providers = sorted({ref.ref.split(":", 1)[0] for s in lab.services.values()
                        for ref in s.secrets.values()})
    for provider in providers:
        users = sorted(n for n, s in lab.services.items()
                       if any(r.ref.startswith(provider + ":") for r in s.secrets.values()))
        out.append(f'  {_mid("p_" + provider)}["secrets: {provider}"] -->|at apply| '
                   f'{_mid("u_" + provider)}["{_names(users)}"]')
    return out or ["  empty[nothing declared]"]


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    ix = Index(lab)
    dependents: dict[str, list[str]] = {}
    for name, svc in lab.services.items():
        for dep in svc.depends_on:
            dependents.setdefault(dep, []).append(name)
    out = [_artifact(f"docs/hosts/{h}.md", host_page(lab, ctx, h, ix))
           for h in sorted(lab.hosts)]
    out += [_artifact(f"docs/services/{n}.md",
                      service_page(lab, ctx, n, ix, sorted(dependents.get(n, []))), n)
            for n in sorted(lab.services)]
    out += [_artifact("docs/routing.md", routing_page(lab, ctx, ix)),
            _artifact("docs/ports.md", ports_page(lab, ctx, ix)),
            _artifact("docs/architecture.md", architecture_page(lab, ctx, ix))]
    return out
