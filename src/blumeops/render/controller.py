"""The lab's own controller, as a service of its control host.

`blumeops controller` is rendered like any native service (a launchd plist, a systemd
unit or a supervisor program, by the host's service manager), under the target
`controller@HOST` so the embedded runtime never starts a controller over itself.
"""

from __future__ import annotations

import dataclasses

from blumeops.catalog.model import ControllerSpec, Health, Lab, SecretRef, Service
from blumeops.catalog.model import ServiceManager as Manager
from blumeops.catalog.resolve import service_manager
from blumeops.core.resources import Resource
from blumeops.render import RenderContext, launchd, supervisor, systemd

NAME = "blumeops-controller"


def as_service(spec: ControllerSpec) -> Service:
    """The controller as the catalog would declare it by hand."""
    port = int(spec.listen.rpartition(":")[2])
    secrets = {}
    if spec.api_token:
        secrets["BLUMEOPS_API_TOKEN"] = SecretRef(ref=spec.api_token)
    if spec.webhook_secret:
        secrets["BLUMEOPS_WEBHOOK_SECRET"] = SecretRef(ref=spec.webhook_secret)
    return Service(
        native=spec.host,
        description=f"BlumeOps controller following {spec.source} ({spec.branch})",
        command=["blumeops", "controller", "--source", spec.source, "--branch", spec.branch,
                 "--lab-path", spec.lab_path, "--listen", spec.listen,
                 "--interval", f"{spec.interval:g}"],
        ports={"api": port},
        health=Health(http="/api/status", port="api"),
        secrets=secrets,
    )


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    spec = lab.controller
    if spec is None or spec.host not in lab.hosts:
        return []
    svc = as_service(spec)
    host = spec.host
    manager = service_manager(lab, host)
    if manager is Manager.launchd:
        res = launchd.plist(NAME, svc, host)
    elif manager is Manager.systemd:
        res = systemd.unit(NAME, svc, host, ctx)
    elif manager is Manager.supervisor:
        res = supervisor.program(NAME, svc, host, ctx)
    else:
        return []
    folder = res.path.split("/")[2]
    return [dataclasses.replace(res, target=f"controller@{host}",
                                path=f"controller/{host}/{folder}/{res.path.rsplit('/', 1)[1]}")]
