"""Alloy: one collector config per host that runs native services.

Renders `alloy/HOST.alloy` for every compute or GPU host with native services: host
metrics (node exporter) and the services' log files, forwarded to the lab's Prometheus
(remote write) and Loki (push). Kubernetes pods are covered by an in-cluster collector,
which is an ordinary catalog service, not this file.

Log files are where blumeops's native services write them:
`$BLUMEOPS_STATE_DIR/logs/SERVICE.log` (see docs/contracts.md). Alloy reads the state
directory from its environment with `sys.env`, so the file stays machine-independent.
"""

from __future__ import annotations

from json import dumps as q

from blumeops.catalog.model import Lab
from blumeops.catalog.reach import collector_hosts, store_service, store_url
from blumeops.core.resources import Resource
from blumeops.render import RenderContext

REMOTE_WRITE_PATH = "/api/v1/write"
LOKI_PUSH_PATH = "/loki/api/v1/push"


def _sink(lab: Lab, kind: str, host: str, path: str) -> str | None:
    name = store_service(lab, kind)
    base = store_url(lab, name, host=host) if name else None
    return base.rstrip("/") + path if base else None


def render_host(lab: Lab, ctx: RenderContext, host: str, services: list[str],
                prometheus: str | None, loki: str | None) -> str:
    """The Alloy config text for one host, given where metrics and logs go."""
    metrics_to = "[prometheus.remote_write.lab.receiver]" if prometheus else "[]"
    logs_to = "[loki.write.lab.receiver]" if loki else "[]"
    out = [ctx.header("//").rstrip("\n"),
           f"// Alloy on {host}: host metrics and native service logs.", ""]
    out += [
        'prometheus.exporter.unix "host" { }',
        "",
        'prometheus.scrape "host" {',
        "  targets    = prometheus.exporter.unix.host.targets",
        f"  forward_to = {metrics_to}",
        f"  job_name   = {q('alloy/' + host)}",
        "}",
        "",
        'local.file_match "services" {',
        "  path_targets = [",
    ]
    for name in services:
        path = f'sys.env("BLUMEOPS_STATE_DIR") + {q("/logs/" + name + ".log")}'
        out.append(f'    {{"__path__" = {path}, "service" = {q(name)}, "host" = {q(host)}}},')
    out += [
        "  ]",
        "}",
        "",
        'loki.source.file "services" {',
        "  targets    = local.file_match.services.targets",
        f"  forward_to = {logs_to}",
        "}",
        "",
    ]
    if prometheus:
        out += [
            'prometheus.remote_write "lab" {',
            "  endpoint {",
            f"    url = {q(prometheus)}",
            "  }",
            f"  external_labels = {{\"lab\" = {q(lab.lab)}, \"host\" = {q(host)}}}",
            "}",
            "",
        ]
    else:
        out += ["// No Prometheus is declared in the catalog: host metrics are not forwarded.", ""]
    if loki:
        out += [
            'loki.write "lab" {',
            "  endpoint {",
            f"    url = {q(loki)}",
            "  }",
            f"  external_labels = {{\"lab\" = {q(lab.lab)}}}",
            "}",
            "",
        ]
    else:
        out += ["// No Loki is declared in the catalog: logs are not forwarded.", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    resources = []
    for host, services in collector_hosts(lab).items():
        body = render_host(lab, ctx, host, services,
                           _sink(lab, "prometheus", host, REMOTE_WRITE_PATH),
                           _sink(lab, "loki", host, LOKI_PUSH_PATH))
        path = f"alloy/{host}.alloy"
        resources.append(Resource(target="files@lab", kind="artifact", name=path,
                                  body=body, path=path))
    return resources
