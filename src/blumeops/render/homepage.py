"""Homepage (gethomepage): the lab's front page, listing every service that asks for it.

Renders `homepage/services.yaml`: a list of groups, each a list of
`{Name: {href, description, icon, siteMonitor}}`. Groups and entries are sorted by name
so the file does not change when the catalog is reordered. `href` is the first route's
URL; `siteMonitor` (Homepage's up/down dot) is that URL plus the HTTP health path. A
service published to the internet says its public URL in its description (Homepage has
one link per entry, and people at home use the private one).
"""

from __future__ import annotations

from json import dumps as q

from blumeops.catalog import resolve
from blumeops.catalog.model import Lab
from blumeops.catalog.public import public_urls
from blumeops.core.resources import Resource
from blumeops.render import RenderContext

PATH = "homepage/services.yaml"


def entries(lab: Lab) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Group -> sorted (display name, fields) for services with a `homepage` entry."""
    published: dict[str, list[str]] = {}
    for (service, _), url in sorted(public_urls(lab).items()):
        published.setdefault(service, []).append(url)
    groups: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for name, svc in lab.services.items():
        page = svc.homepage
        if page is None:
            continue
        fields: dict[str, str] = {}
        routes = resolve.service_routes(lab, name)
        if routes:
            fields["href"] = resolve.service_url(routes[0], lab)
        description = page.description or svc.description or ""
        if name in published:
            public = "public: " + ", ".join(published[name])
            description = f"{description} ({public})" if description else public
        if description:
            fields["description"] = description
        if page.icon:
            fields["icon"] = page.icon
        health = svc.health
        if routes and routes[0].protocol == "http" and health and health.http:
            fields["siteMonitor"] = fields["href"] + health.http
        groups.setdefault(page.group, []).append((page.name or name, fields))
    return {group: sorted(items, key=lambda item: item[0])
            for group, items in sorted(groups.items())}


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    lines = [ctx.header("#").rstrip("\n")]
    groups = entries(lab)
    if not groups:
        lines.append("[]  # no service declares a homepage entry")
    for group, items in groups.items():
        lines.append(f"- {q(group)}:")
        for display, fields in items:
            lines.append(f"    - {q(display)}:" + ("" if fields else " {}"))
            lines += [f"        {key}: {q(value)}" for key, value in fields.items()]
    body = "\n".join(lines) + "\n"
    return [Resource(target="files@lab", kind="artifact", name=PATH, body=body, path=PATH)]
