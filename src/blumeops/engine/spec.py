"""What the runtime needs to know about a lab, as plain data.

The engine (apply, health, check, the controller) works from a RuntimeSpec rather than the
catalog model: it is small, it pickles without the model classes, and so a no-op apply of
an unchanged catalog can skip parsing, validation and even importing pydantic.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from blumeops.core.resources import Resource
from blumeops.core.schedule import SCHEDULER, parse_duration
from blumeops.core.spec import (
    APPLIED_KINDS,
    APPLIED_RENDERERS,
    UNIT_MANAGERS,
    HostSpec,
    JobSpec,
    ProbeSpec,
    RouteCheck,
    RuntimeSpec,
    ServiceSpec,
)
from blumeops.engine.targets import target_specs
from blumeops.transports.facts import SYSTEMS

if TYPE_CHECKING:  # the targets pull in drivers and HTTP: not for `render` (render/caddy)
    pass


def catalog_digest(files: list[Path]) -> str:
    """A short hash of the catalog's files (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def runtime_spec(lab: object, source: str = "lab.yaml",
                 files: list[Path] | None = None) -> RuntimeSpec:
    """Derive the spec from a valid catalog model (pure)."""
    # lazy: keeps pydantic out of start-up
    from blumeops.catalog.model import Lab, ServiceManager
    from blumeops.catalog.resolve import (
        applied_host,
        host_address,
        routes,
        service_manager,
        service_routes,
        service_url,
    )
    from blumeops.render import RenderContext, render_lab

    assert isinstance(lab, Lab)
    local = tuple(h for h, spec in lab.hosts.items() if spec.local)
    hosts = {
        name: HostSpec(name, h.local, h.ssh, h.address, SYSTEMS[h.os], h.os.value,
                       str(service_manager(lab, name) or ""), h.service_manager is not None,
                       h.ssh_identity, h.accept_new_host_key, h.arch)
        for name, h in lab.hosts.items() if applied_host(lab, name)}
    applied = tuple(hosts)
    supervised = [h for h in local if service_manager(lab, h) is ServiceManager.supervisor]
    managed = {h: str(service_manager(lab, h) or "") for h in applied}
    drivable = [h for h in applied if managed[h] == "supervisor"
                or (h not in local and managed[h] in UNIT_MANAGERS)]
    proxies = tuple(sorted({d.host for d in lab.domains.values()
                            if d.proxy == "caddy" and d.host in local and d.host}))
    remote_proxies = tuple(sorted({d.host for d in lab.domains.values() if d.proxy == "caddy"
                                   and d.host in applied and d.host not in local and d.host}))
    notes = [] if applied else [
        "no host is marked `local: true` or has `ssh:`: nothing runs from this machine"]
    for host, spec_ in lab.hosts.items():
        if spec_.managed and service_manager(lab, host) is ServiceManager.nixos \
                and any(s.native == host for s in lab.services.values()):
            notes.append(f"host '{host}' runs NixOS: its services are nixos/{host}/blumeops.nix "
                         "(`blumeops render`); import it and run `nixos-rebuild switch` there")
    for name, svc in lab.services.items():
        if svc.brew is not None and svc.native in local:
            notes.append(f"service '{name}' is a brew formula on this machine: blumeops "
                         "drives `brew services` over SSH only, so it is rendered, not run")
    if applied:
        notes += [f"host {name} not planned: it has no `ssh:` and is not `local: true`, so "
                  "blumeops does not reach it" for name, h in lab.hosts.items()
                  if name not in hosts and h.managed and not h.ssh and not h.local]
    for host in applied:
        if host not in drivable and managed[host]:
            notes.append(f"host '{host}' uses {managed[host]} on this machine; blumeops "
                         "drives it over SSH only, so its services are rendered, not run")

    clusters, tailnet, target_desired = target_specs(lab, source, set(hosts), notes)
    services = {}
    for name, svc in lab.services.items():
        # An appliance runs its services itself: blumeops probes them from here.
        from_here = svc.native in lab.hosts and not lab.hosts[svc.native or ""].managed
        probe = None
        if svc.health is not None:
            h = svc.health
            if h.command is not None:
                probe = ProbeSpec("command", command=tuple(h.command), timeout=h.timeout)
            elif h.tcp is not None:
                probe = ProbeSpec("tcp", port=svc.ports.get(h.tcp), timeout=h.timeout)
            else:
                port_name = h.port or ("http" if "http" in svc.ports else next(iter(svc.ports),
                                                                                None))
                probe = ProbeSpec("http", port=svc.ports.get(port_name or ""),
                                  path=h.http or "/", timeout=h.timeout)
        # A Kubernetes service's health comes from its cluster's session, named like it.
        where = svc.native or (svc.kubernetes if svc.kubernetes in clusters else None)
        services[name] = ServiceSpec(
            name=name, host=where, local=svc.native in local,
            ports=dict(svc.ports), probe=probe, startsecs=svc.startsecs,
            depends_on=tuple(svc.depends_on),
            urls=tuple(service_url(r, lab) for r in service_routes(lab, name)),
            workdir=svc.workdir, has_secrets=bool(svc.secrets),
            secret_files={k: v.file for k, v in svc.secrets.items() if v.file},
            address=(host_address(lab, svc.native or "") if from_here
                     else _probe_address(lab, name, svc.native, local)),
            probed_here=from_here,
            job=_job(svc, lab.backups is not None and lab.backups.job == name))
    remote_drivers = {h for h in drivable if h not in local}
    _add_scheduler(lab, services, supervised[0] if supervised else None, notes,
                   remote_drivers, {h for h in remote_drivers if managed[h] == "supervisor"})
    checks = []
    for r in routes(lab):
        if r.proxy != "caddy" or r.proxy_host not in (*proxies, *remote_proxies):
            continue
        domain = lab.domains[r.domain]
        address, _, port = (domain.listen or f"127.0.0.1:{domain.listen_port}").rpartition(":")
        svc = lab.services[r.service]
        path = svc.health.http if svc.health and svc.health.http else "/"
        checks.append(RouteCheck(r.hostname, address or "127.0.0.1",
                                 r.listen or 0 if r.protocol == "tcp" else int(port),
                                 r.protocol, path))
    desired = tuple(
        res for res in render_lab(lab, RenderContext(source=source), only=APPLIED_RENDERERS)
        if _applies_here(res, applied, managed, drivable, local)) + tuple(target_desired)
    return RuntimeSpec(lab.lab, local, supervised[0] if supervised else None, proxies,
                       services, tuple(checks), tuple(notes), desired,
                       catalog_digest(files) if files else "", hosts, clusters, tailnet)


def _probe_address(lab: object, service: str, host: str | None,
                   local: tuple[str, ...]) -> str:
    """A local service is probed on 127.0.0.1 (as before); a remote one on its host's
    address, from that host (services there bind to it), unless that host's Caddy routes
    to it: Caddy dials it on 127.0.0.1, so that is where it must answer to be Healthy."""
    # lazy: keeps pydantic out of start-up
    from blumeops.catalog.model import Lab
    from blumeops.catalog.resolve import service_routes

    assert isinstance(lab, Lab)
    if host is None or host in local or host not in lab.hosts:
        return "127.0.0.1"
    if any(r.proxy == "caddy" and r.proxy_host == host for r in service_routes(lab, service)):
        return "127.0.0.1"
    return lab.hosts[host].address or "127.0.0.1"


def _applies_here(res: Resource, applied: tuple[str, ...], managed: dict[str, str],
                  drivable: list[str], local: tuple[str, ...] = ()) -> bool:
    """Applied by blumeops: a resource of a kind its driver takes, on an applied host;
    a service manager's resource only on a host whose manager blumeops drives."""
    target, _, host = res.target.partition("@")
    if host not in applied or res.kind not in APPLIED_KINDS.get(target, ()):
        return False
    if target in ("supervisor", *UNIT_MANAGERS):
        return managed.get(host) == target and host in drivable
    if target == "brew":
        return host not in local  # `brew services` is driven over SSH only
    return True


def _job(svc: object, backup: bool = False) -> JobSpec | None:
    # lazy: keeps pydantic out of start-up
    from blumeops.catalog.model import Service

    assert isinstance(svc, Service)
    sched = svc.schedule
    if sched is None:
        return None
    return JobSpec(sched.cron, sched.every_seconds,
                   parse_duration(sched.grace) if sched.grace else None,
                   parse_duration(sched.max_age) if sched.max_age else None, backup,
                   parse_duration(sched.timeout) if sched.timeout else None)


def _add_scheduler(lab: object, services: dict[str, ServiceSpec], host: str | None,
                   notes: list[str], remote: set[str], remote_supervised: set[str]) -> None:
    """A supervisor host's jobs run under blumeops-scheduler, a program blumeops adds: it
    is a service of the runtime (started, watched, stopped), not of the catalog; systemd
    and launchd hosts over SSH (`remote`) run theirs with timers and calendar jobs. The
    scheduler is one service name: its row is this machine's, else the first SSH host's
    with jobs (the others' are applied and judge their jobs all the same). Jobs elsewhere
    are rendered only: say so."""
    jobs = [s for s in services.values() if s.job is not None and s.host is not None]
    if host is not None and any(s.host == host for s in jobs):
        services[SCHEDULER] = ServiceSpec(SCHEDULER, host, True, startsecs=1)
    else:
        first = sorted({s.host for s in jobs if s.host in remote_supervised})
        if first:
            services[SCHEDULER] = ServiceSpec(SCHEDULER, first[0], False, startsecs=1)
    for svc in jobs:
        # A cluster's CronJob is its cluster's to run (and judge: kubernetes/driver.py).
        if svc.host != host and svc.host not in remote \
                and svc.host not in getattr(lab, "clusters", {}):
            notes.append(f"job '{svc.name}' on {svc.host}: rendered, not applied (blumeops "
                         "runs jobs on this machine's supervisord and on hosts it reaches "
                         "over SSH)")
