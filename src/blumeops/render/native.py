"""Native services: one program/plist/unit per service, by the host's service manager.

Only services with `native: HOST` render here; the host's manager (declared, or the usual
one for its OS, see `catalog.resolve.service_manager`) picks the format. Files a service
declares (`files:`) become `files@HOST` resources. Secret values never appear: each
resource carries `secret_refs`, resolved only at apply time.
"""

from __future__ import annotations

from blumeops.catalog.model import Lab, Service, ServiceManager
from blumeops.catalog.resolve import service_manager
from blumeops.core.resources import Resource
from blumeops.render import RenderContext, launchd, supervisor, systemd
from blumeops.render.unitfields import safe_relpath


def _files(lab: Lab, name: str, svc: Service, host: str) -> list[Resource]:
    return [
        Resource(f"files@{host}", "file", f"{name}:{path}", content,
                 f"native/{host}/files/{name}/{safe_relpath(path)}", service=name,
                 meta={"dest": path})
        for path, content in sorted(svc.files.items())
    ]


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    # Imported here so each format module stays independent and only loaded together.

    out: list[Resource] = []
    jobs: dict[str, dict[str, Service]] = {}  # supervisor host -> its jobs
    for name, svc in lab.services.items():
        host = svc.native
        if host is None or host not in lab.hosts:
            continue
        manager = service_manager(lab, host)
        if svc.command is None:
            pass  # nothing to run (the rules report it); its files still render
        elif manager is ServiceManager.supervisor:
            out.append(supervisor.program(name, svc, host, ctx))
            if svc.schedule is not None:
                jobs.setdefault(host, {})[name] = svc
        elif manager is ServiceManager.launchd:
            out.append(launchd.plist(name, svc, host))
        elif manager is ServiceManager.systemd:
            out.append(systemd.unit(name, svc, host, ctx, lab))
            if svc.schedule is not None:
                out.append(systemd.timer(name, svc, host, ctx))
        out.extend(_files(lab, name, svc, host))
    for host, table in jobs.items():
        out.append(supervisor.scheduler_program(host, table, ctx))
    return out
