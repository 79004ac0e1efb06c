"""`blumeops check`: every route through Caddy, and every service directly."""

from __future__ import annotations

from dataclasses import dataclass

from blumeops.catalog.resolve import routes
from blumeops.engine.health import probe_http, probe_tcp
from blumeops.engine.local import LocalRuntime


@dataclass(frozen=True)
class CheckResult:
    kind: str  # "route" or "service"
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "ok": self.ok, "detail": self.detail}


def run_checks(runtime: LocalRuntime) -> list[CheckResult]:
    lab = runtime.lab
    out: list[CheckResult] = []
    proxies = set(runtime.proxy_hosts())
    for r in routes(lab):
        if r.proxy != "caddy" or r.proxy_host not in proxies:
            continue
        domain = lab.domains[r.domain]
        listen = domain.listen or f"127.0.0.1:{domain.listen_port}"
        host, _, port = listen.rpartition(":")
        host = host or "127.0.0.1"
        if r.protocol == "tcp":
            result = probe_tcp(host, r.listen or 0, 2.0)
        else:
            svc = lab.services[r.service]
            path = svc.health.http if svc.health and svc.health.http else "/"
            result = probe_http(host, int(port), path, 3.0, host_header=r.hostname)
        out.append(CheckResult("route", r.hostname, result.ok, result.detail))
    status = runtime.program_status()
    for name, svc in lab.services.items():
        if svc.native is None or svc.native not in runtime.local_hosts:
            continue
        st = status.get(name)
        if st is None or st.state != "RUNNING":
            state = st.state if st else "not running"
            out.append(CheckResult("service", name, False, state))
            continue
        ok, detail = runtime.probe(name)
        out.append(CheckResult("service", name, ok, detail))
    return out
