"""The lab drawn from its catalog: hosts and clusters, services, routes, dependencies and
tailnet grants, as one server-rendered SVG. Pure: catalog in, markup out.

Columns left to right: hosts (clusters under the host that runs them), services, routes.
Grey lines: where a service runs and which route reaches it; dashed: depends_on; purple:
a tailnet grant between hosts. Every service links to its page.
"""

from __future__ import annotations

from html import escape
from typing import Any

ROW = 46
BOX_H = 32
COL_X = (10, 250, 500)
COL_W = (200, 200, 240)
HEALTH_CLASS = {"Healthy": "ok", "Degraded": "bad", "Missing": "bad",
                "Progressing": "busy", "Unknown": "unknown"}


def _box(x: int, y: int, w: int, label: str, cls: str, href: str | None = None,
         sub: str = "") -> str:
    text = escape(label if len(label) <= 28 else label[:27] + "…")
    inner = (f'<rect x="{x}" y="{y}" width="{w}" height="{BOX_H}" rx="6" class="{cls}"/>'
             f'<text x="{x + 10}" y="{y + 20}">{text}</text>')
    if sub:
        inner += f'<text x="{x + w - 8}" y="{y + 20}" class="sub" text-anchor="end">' \
                 f'{escape(sub)}</text>'
    if href:
        return f'<a href="{escape(href)}">{inner}</a>'
    return f"<g>{inner}</g>"


def _line(a: tuple[int, int], b: tuple[int, int], cls: str) -> str:
    (x1, y1), (x2, y2) = a, b
    mid = (x1 + x2) // 2
    return (f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" class="{cls}" '
            'fill="none"/>')


def _grant_hosts(lab: Any, selector: str) -> list[str]:
    """Hosts a grant's src or dst names: a host, `tag:X` or `*`."""
    sel = selector.split(":")[0] if not selector.startswith("tag:") else selector
    out = []
    for name, host in lab.hosts.items():
        if sel in ("*", name) or (sel.startswith("tag:") and sel in
                                  [t if t.startswith("tag:") else f"tag:{t}" for t in host.tags]):
            out.append(name)
    return out


def render_svg(lab: Any, health: dict[str, str]) -> str:
    # lazy: keeps pydantic out of start-up
    from blumeops.catalog.resolve import service_routes, service_url

    left: list[tuple[str, str, str]] = []  # (key, label, kind)
    for name in lab.hosts:
        left.append((f"host:{name}", name, "host"))
        left += [(f"cluster:{c}", f"⎈ {c}", "cluster") for c, cl in lab.clusters.items()
                 if cl.host == name]
    left += [(f"cluster:{c}", f"⎈ {c}", "cluster") for c, cl in lab.clusters.items()
             if cl.host not in lab.hosts]
    services = list(lab.services)
    routes: list[tuple[str, str, str]] = []  # (service, label, url)
    for name in services:
        for r in service_routes(lab, name):
            routes.append((name, r.hostname, service_url(r, lab)))
    rows = max(len(left), len(services), len(routes), 1)
    pos: dict[str, tuple[int, int]] = {}
    parts: list[str] = []
    for i, (key, label, kind) in enumerate(left):
        y = 30 + i * ROW
        pos[key] = (COL_X[0], y)
        parts.append(_box(COL_X[0], y, COL_W[0], label, kind))
    for i, name in enumerate(services):
        y = 30 + i * ROW
        pos[f"svc:{name}"] = (COL_X[1], y)
        word = health.get(name, "Unknown")
        parts.append(_box(COL_X[1], y, COL_W[1], name, f"svc {HEALTH_CLASS.get(word, '')}",
                          f"/service/{name}", word))
    for i, (_svc, label, url) in enumerate(routes):
        y = 30 + i * ROW
        pos[f"route:{i}"] = (COL_X[2], y)
        href = url if url.startswith("http") else None
        parts.append(_box(COL_X[2], y, COL_W[2], label, "route", href))
    mid = BOX_H // 2
    edges: list[str] = []
    for name, cl in lab.clusters.items():
        if f"host:{cl.host}" in pos and f"cluster:{name}" in pos:
            hx, hy = pos[f"host:{cl.host}"]
            cx, cy = pos[f"cluster:{name}"]
            edges.append(f'<path d="M{hx + 12},{hy + BOX_H} L{cx + 12},{cy}" class="edge"/>')
    for name, svc in lab.services.items():
        where = f"host:{svc.native}" if svc.native else f"cluster:{svc.kubernetes}"
        if where in pos:
            x, y = pos[where]
            sx, sy = pos[f"svc:{name}"]
            edges.append(_line((x + COL_W[0], y + mid), (sx, sy + mid), "edge"))
        for dep in svc.depends_on:
            if f"svc:{dep}" in pos:
                ax, ay = pos[f"svc:{name}"]
                bx, by = pos[f"svc:{dep}"]
                x = ax + COL_W[1]
                edges.append(f'<path d="M{x},{ay + mid} C{x + 40},{ay + mid} {x + 40},'
                             f'{by + mid} {x},{by + mid}" class="dep" fill="none" '
                             'marker-end="url(#arrow)"/>')
    for i, (svc_name, _label, _url) in enumerate(routes):
        sx, sy = pos[f"svc:{svc_name}"]
        rx, ry = pos[f"route:{i}"]
        edges.append(_line((sx + COL_W[1], sy + mid), (rx, ry + mid), "edge"))
    grants = lab.tailnet.grants if lab.tailnet is not None else []
    legend_grants: list[str] = []
    for g in grants:
        for src in g.src:
            for dst in g.dst:
                for a in _grant_hosts(lab, src):
                    for b in _grant_hosts(lab, dst):
                        if a != b:
                            ax, ay = pos[f"host:{a}"]
                            bx, by = pos[f"host:{b}"]
                            edges.append(
                                f'<path d="M{ax},{ay + mid} C{ax - 40},{ay + mid} '
                                f'{bx - 40},{by + mid} {bx},{by + mid}" class="grant" '
                                'fill="none" marker-end="url(#arrow)"/>')
                legend_grants.append(f"{src} → {dst} ({', '.join(g.ip or ['app'])})")
    height = 40 + rows * ROW + 18 * len(legend_grants)
    legend = "".join(f'<text x="{COL_X[0]}" y="{30 + rows * ROW + 18 * i}" class="sub">'
                     f"grant {escape(t)}</text>" for i, t in enumerate(legend_grants))
    heads = "".join(f'<text x="{x}" y="18" class="head">{h}</text>'
                    for x, h in zip(COL_X, ("hosts / clusters", "services", "routes"),
                                    strict=True))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" role="img" '
            f'aria-label="lab topology" viewBox="0 0 {COL_X[2] + COL_W[2] + 10} {height}">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
            'markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            'class="arrowhead"/></marker></defs>'
            f"{heads}{''.join(edges)}{''.join(parts)}{legend}</svg>")
