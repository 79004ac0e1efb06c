"""`blumeops check`: every route through Caddy, and every service directly."""

from __future__ import annotations

from dataclasses import dataclass

from blumeops.core.spec import ROUTE_HEADER, RouteCheck
from blumeops.drivers.probes import ProbeResult, probe_http, probe_tcp
from blumeops.engine.local import LocalRuntime
from blumeops.engine.targets import target_health


@dataclass(frozen=True)
class CheckResult:
    kind: str  # "route" or "service"
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "ok": self.ok, "detail": self.detail}


def probe_route(route: RouteCheck) -> ProbeResult:
    """One route through the local proxy. An HTTP answer counts only if it carries the
    route's own X-Blumeops-Route header: Caddy answers a Host it has no route for with
    an empty 200."""
    if route.protocol == "tcp":
        return probe_tcp(route.address, route.port, 2.0)
    return probe_http(route.address, route.port, route.path, 3.0,
                      host_header=route.hostname, expect_header=(ROUTE_HEADER, route.hostname))


def route_checks(runtime: LocalRuntime) -> list[CheckResult]:
    out = []
    for route in runtime.spec.routes:
        result = probe_route(route)
        out.append(CheckResult("route", route.hostname, result.ok, result.detail))
    return out


def run_checks(runtime: LocalRuntime) -> list[CheckResult]:
    out = route_checks(runtime)
    status = runtime.program_status()
    # Services on other hosts are probed there, through the host's transport.
    remote = [n for n, svc in runtime.spec.services.items()
              if not svc.local and (svc.host in runtime.sessions or svc.probed_here)
              and (svc.job is None or runtime.runs_jobs(svc.host)
                  or svc.host in runtime.spec.clusters)]
    remote_health = runtime.service_health(remote, {}) if remote else {}
    for name, svc in runtime.spec.services.items():
        if name in remote_health:
            h = remote_health[name]
            state = h.state or ("in cluster " + (svc.host or "") if svc.host in
                                runtime.spec.clusters else "not running")
            out.append(CheckResult("job" if svc.job is not None else "service", name,
                                   h.health.value == "Healthy", f"{h.detail} ({state})"))
            continue
        if not svc.local:
            continue
        if svc.job is not None:  # not kept running: its last run is what to check
            job = runtime.health(name, status)
            out.append(CheckResult("job", name, job.health.value == "Healthy", job.detail))
            continue
        st = status.get(name)
        if st is None or st.state != "RUNNING":
            out.append(CheckResult("service", name, False, st.state if st else "not running"))
            continue
        ok, detail = runtime.probe(name)
        out.append(CheckResult("service", name, ok, detail))
    # Clusters' and the tailnet's own health (an app-of-apps, the policy).

    for t in target_health(runtime):
        out.append(CheckResult("target", f"{t.target}/{t.name}", t.health.value == "Healthy",
                               f"{t.health.value}: {t.detail}"))
    return out
