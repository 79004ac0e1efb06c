"""Grafana: datasources for the lab's Prometheus and Loki, provisioned, never clicked.

Renders `grafana/datasources.yaml` (provisioning `apiVersion: 1`). URLs are the ones
Grafana itself can reach: in-cluster DNS when Grafana runs in the same cluster as the
store, loopback on the same host, otherwise the store's routed URL. A lab without a
Prometheus or Loki gets an empty list, so the file is always valid.
"""

from __future__ import annotations

from json import dumps as q

from blumeops.catalog.model import Lab
from blumeops.catalog.reach import store_service, store_url
from blumeops.core.resources import Resource
from blumeops.render import RenderContext

PATH = "grafana/datasources.yaml"
# (catalog kind, datasource name, Grafana type, default?)
KINDS = (("prometheus", "Prometheus", "prometheus", True), ("loki", "Loki", "loki", False))


def datasource_urls(lab: Lab) -> list[tuple[str, str, str, bool, str]]:
    """(name, type, uid, default, url) for each store the lab declares and Grafana reaches."""
    grafana = store_service(lab, "grafana")
    viewer = lab.services[grafana] if grafana else None
    out = []
    for kind, name, kind_type, default in KINDS:
        service = store_service(lab, kind)
        if service is None:
            continue
        url = store_url(lab, service,
                        cluster=viewer.kubernetes if viewer else None,
                        host=viewer.native if viewer else None)
        if url is not None:
            out.append((name, kind_type, service, default, url))
    return out


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    lines = [ctx.header("#").rstrip("\n"), "apiVersion: 1"]
    sources = datasource_urls(lab)
    if not sources:
        lines.append("datasources: []  # the catalog declares no Prometheus or Loki")
    else:
        lines.append("datasources:")
        for name, kind_type, uid, default, url in sources:
            lines += [
                f"  - name: {q(name)}",
                f"    type: {q(kind_type)}",
                f"    uid: {q(uid)}",
                "    access: proxy",
                f"    url: {q(url)}",
                f"    isDefault: {'true' if default else 'false'}",
                "    editable: false",
            ]
    body = "\n".join(lines) + "\n"
    return [Resource(target="files@lab", kind="artifact", name=PATH, body=body, path=PATH)]
