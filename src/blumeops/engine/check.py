"""`blumeops check`: every route through Caddy, and every service directly."""

from __future__ import annotations

from dataclasses import dataclass

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
    out: list[CheckResult] = []
    for route in runtime.spec.routes:
        if route.protocol == "tcp":
            result = probe_tcp(route.address, route.port, 2.0)
        else:
            result = probe_http(route.address, route.port, route.path, 3.0,
                                host_header=route.hostname)
        out.append(CheckResult("route", route.hostname, result.ok, result.detail))
    status = runtime.program_status()
    for name, svc in runtime.spec.services.items():
        if not svc.local:
            continue
        st = status.get(name)
        if st is None or st.state != "RUNNING":
            out.append(CheckResult("service", name, False, st.state if st else "not running"))
            continue
        ok, detail = runtime.probe(name)
        out.append(CheckResult("service", name, ok, detail))
    return out
