"""The embedded default on this machine: supervisord, Caddy and files for `local` hosts.

This module wires drivers to a RuntimeSpec (engine/spec.py): what the drivers observe as
Live resources, and each service's health. Resources for other hosts and targets
(Kubernetes, launchd, systemd, the tailnet) are rendered but not applied here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from blumeops.engine.health import Health, probe_command, probe_http, probe_tcp
from blumeops.engine.plan import Live
from blumeops.engine.resources import Resource
from blumeops.engine.spec import RuntimeSpec

if TYPE_CHECKING:
    from blumeops.drivers.caddy import CaddyDriver
    from blumeops.drivers.files import FilesDriver
    from blumeops.drivers.supervisor import ProgramStatus, SupervisorDriver


@dataclass(frozen=True)
class ServiceHealth:
    service: str
    health: Health
    detail: str
    state: str = ""  # the supervisor's word
    pid: int | None = None
    urls: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"service": self.service, "health": self.health.value, "detail": self.detail,
                "state": self.state, "pid": self.pid, "urls": list(self.urls)}


class LocalRuntime:
    def __init__(self, spec: RuntimeSpec, lab_file: Path, state_dir: Path) -> None:
        self.spec = spec
        self.lab_file = lab_file
        self.lab_dir = lab_file.parent.resolve()
        self.state_dir = state_dir
        self.local_hosts = list(spec.local_hosts)
        self._supervisor: SupervisorDriver | None = None
        self._caddy: CaddyDriver | None = None

    # -- drivers, created on first use so read-only commands stay cheap -------------------

    @property
    def supervisor(self) -> SupervisorDriver:
        if self._supervisor is None:
            from blumeops.drivers.supervisor import SupervisorDriver

            self._supervisor = SupervisorDriver(self.state_dir, self.lab_dir)
        return self._supervisor

    @property
    def caddy(self) -> CaddyDriver:
        if self._caddy is None:
            from blumeops.drivers.caddy import CaddyDriver

            self._caddy = CaddyDriver(self.state_dir)
        return self._caddy

    @property
    def files(self) -> FilesDriver:
        from blumeops.drivers.files import FilesDriver

        return FilesDriver(self.state_dir, self.lab_dir)

    # -- desired and live -------------------------------------------------------------------

    def notes(self) -> list[str]:
        """Why parts of the lab are not applied on this machine."""
        return list(self.spec.notes)

    def desired(self) -> list[Resource]:
        """Rendered resources that apply on this machine, in catalog order."""
        return list(self.spec.desired)

    @property
    def supervisor_host(self) -> str | None:
        return self.spec.supervisor_host

    def proxy_hosts(self) -> list[str]:
        return list(self.spec.proxy_hosts)

    def observe(self) -> dict[str, Live]:
        live: dict[str, Live] = {}
        host = self.supervisor_host
        if host is not None:
            programs = self.supervisor.observe()
            status = self.program_status() if programs else {}
            for name, body in programs.items():
                st = status.get(name)
                state = st.state if st else "not loaded"
                running = st is not None and st.state in ("RUNNING", "STARTING")
                live[f"supervisor@{host}/program/{name}"] = Live(body, running, state)
        for proxy in self.proxy_hosts():
            config = self.caddy.observe() if self.caddy.running_pid() else None
            if config:
                live[f"caddy@{proxy}/config/{proxy}"] = Live(json.dumps(config, sort_keys=True))
        # One index of written files per state dir: it belongs to the first local host.
        for host_ in self.local_hosts[:1]:
            for name, content in self.files.observe().items():
                live[f"files@{host_}/file/{name}"] = Live(content)
        return live

    def program_status(self) -> dict[str, ProgramStatus]:
        if not self.supervisor.is_running():
            return {}
        return self.supervisor.status()

    # -- health -----------------------------------------------------------------------------

    def health(self, service: str, status: dict[str, ProgramStatus] | None = None,
               started_at: float | None = None) -> ServiceHealth:
        """Probe one service. `started_at` lets a fresh start count as Progressing."""
        svc = self.spec.services[service]
        urls = svc.urls
        if not svc.local:
            return ServiceHealth(service, Health.unknown, "not run on this machine", urls=urls)
        status = self.program_status() if status is None else status
        st = status.get(service)
        if st is None:
            return ServiceHealth(service, Health.missing, "not running under supervisord",
                                 urls=urls)
        if st.state == "STARTING":
            return ServiceHealth(service, Health.progressing, st.description or "starting",
                                 st.state, st.pid, urls)
        if st.state != "RUNNING":
            # BACKOFF is a crash loop (Kubernetes' CrashLoopBackOff): Degraded, as ArgoCD says.
            why = st.spawnerr or ("exited too quickly" if st.state == "BACKOFF"
                                  else st.description)
            detail = f"{st.state}: {why}; log: {self._log_hint(service)}"
            return ServiceHealth(service, Health.degraded, detail, st.state, st.pid, urls)
        if svc.probe is None:
            return ServiceHealth(service, Health.unknown, "running; no health probe declared",
                                 st.state, st.pid, urls)
        result = self.probe(service)
        if result[0]:
            return ServiceHealth(service, Health.healthy, result[1], st.state, st.pid, urls)
        young = started_at is not None and time.monotonic() - started_at < svc.startsecs + 10
        health = Health.progressing if young else Health.degraded
        return ServiceHealth(service, health, result[1], st.state, st.pid, urls)

    def probe(self, service: str) -> tuple[bool, str]:
        spec = self.spec.services[service].probe
        if spec is None:
            return True, "no probe"
        if spec.kind == "command":
            r = probe_command(list(spec.command), self.lab_dir, spec.timeout)
        elif spec.kind == "tcp":
            r = probe_tcp("127.0.0.1", spec.port or 0, spec.timeout)
        else:
            r = probe_http("127.0.0.1", spec.port or 0, spec.path, spec.timeout)
        return r.ok, r.detail

    def _log_hint(self, service: str) -> str:
        lines = self.supervisor.tail_log(service, 5).strip().splitlines()
        return " | ".join(lines[-5:]) if lines else "(log is empty)"

