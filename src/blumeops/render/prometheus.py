"""Prometheus: one scrape job per declared metrics endpoint, so no one edits scrape configs.

Renders `prometheus/prometheus.yml`, a render-only artifact. The YAML is written by hand
(every string JSON-quoted, which YAML reads verbatim) because a YAML emitter is several
times slower on a thousand-service lab and the shape here is fixed.

The lab's Prometheus and Loki are found by catalog/reach.py's `store_service`, which
the Alloy, Grafana and docs renderers use too, so they all agree on where metrics go.
"""

from __future__ import annotations

from json import dumps as q

from blumeops.catalog import resolve
from blumeops.catalog.model import Lab, Service
from blumeops.catalog.reach import store_service
from blumeops.core.resources import Resource
from blumeops.render import RenderContext

PATH = "prometheus/prometheus.yml"
SCRAPE_INTERVAL = "30s"


def in_cluster_host(name: str, svc: Service) -> str:
    """The in-cluster DNS name of a Kubernetes service: SERVICE.NAMESPACE.svc."""
    return resolve.in_cluster_host(name, svc)


def scrape_target(lab: Lab, name: str, svc: Service, port: int) -> tuple[str, str, bool]:
    """(host:port Prometheus scrapes, host label, over https) for one service."""
    if svc.native is not None:
        return f"{resolve.host_address(lab, svc.native)}:{port}", svc.native, False
    cluster = lab.clusters.get(svc.kubernetes or "")
    home = lab.services.get(store_service(lab, "prometheus") or "")
    if home is not None and home.kubernetes != svc.kubernetes:
        via = resolve.ingress_scrape(lab, name, svc)
        if via is not None:  # another cluster: its names resolve only there
            return via, cluster.host if cluster else "", True
    return f"{in_cluster_host(name, svc)}:{port}", cluster.host if cluster else "", False


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    lines = [
        ctx.header("#").rstrip("\n"),
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL}",
        f"  external_labels: {{lab: {q(lab.lab)}}}",
    ]
    jobs: list[str] = []
    # Sorted by name: reordering the catalog should not reorder the file.
    for name, svc in sorted(lab.services.items()):
        if svc.metrics is None or svc.metrics.port not in svc.ports:
            continue
        # In a cluster, Prometheus reaches the Service, whose port may differ.
        port = (svc.ports[svc.metrics.port] if svc.native is not None
                else resolve.cluster_port(svc, svc.metrics.port))
        target, host, https = scrape_target(lab, name, svc, port)
        labels = f"service: {q(name)}, runtime: {q(svc.runtime)}, host: {q(host)}"
        if svc.kubernetes is not None:
            labels += f", cluster: {q(svc.kubernetes)}"
        jobs.append(
            f"  - job_name: {q(name)}\n"
            f"    metrics_path: {q(svc.metrics.path)}\n"
            + ("    scheme: https\n" if https else "")
            + f"    static_configs:\n"
            f"      - targets: [{q(target)}]\n"
            f"        labels: {{{labels}}}"
        )
    lines.append("scrape_configs:" + ("" if jobs else " []"))
    lines.extend(jobs)
    body = "\n".join(lines) + "\n"
    return [Resource(target="files@lab", kind="artifact", name=PATH, body=body, path=PATH)]
