"""The lab's runtime: this machine's drivers and a session per remote host.

`local` hosts are driven in-process (supervisord, Caddy and files under the state dir);
hosts with `ssh:` through a HostSession each (engine/hosts.py), observed and applied in
parallel. The engine (apply, health, check, the controller) asks this class, never a
driver by name. Clusters and the tailnet join as sessions too (engine/targets.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blumeops.core.health import Health, ServiceHealth
from blumeops.core.plan import Live
from blumeops.core.resources import Resource
from blumeops.core.schedule import SCHEDULER
from blumeops.core.spec import UNIT_MANAGERS, HostSpec, RuntimeSpec
from blumeops.drivers import jobs
from blumeops.drivers.base import HostContext
from blumeops.drivers.caddy import CaddyDriver
from blumeops.drivers.files import FilesDriver
from blumeops.drivers.probes import probe_command, probe_http, probe_tcp
from blumeops.drivers.supervisor import SupervisorDriver
from blumeops.engine.hosts import HostSession, host_kinds, in_parallel, remote_session
from blumeops.engine.targets import target_sessions
from blumeops.secrets.envfile import EnvFileError, read_env_file
from blumeops.secrets.redact import Redactor
from blumeops.transports.exceptions import TransportError

if TYPE_CHECKING:
    from blumeops.core.plan import Change
    from blumeops.drivers.base import Secrets
    from blumeops.drivers.caddy import CaddyDriver
    from blumeops.drivers.files import FilesDriver
    from blumeops.drivers.supervisor import ProgramStatus, SupervisorDriver
    from blumeops.engine.hosts import HostSession


class LocalRuntime:
    def __init__(self, spec: RuntimeSpec, lab_file: Path, state_dir: Path) -> None:
        self.spec = spec
        self.lab_file = lab_file
        self.lab_dir = lab_file.parent.resolve()
        self.secrets_dir = self.lab_dir  # where vault.age is read (see ControllerConfig)
        self.state_dir = state_dir
        self.local_hosts = list(spec.local_hosts)
        self._supervisor: SupervisorDriver | None = None
        self._caddy: CaddyDriver | None = None
        self._sessions: dict[str, HostSession] | None = None

    # -- drivers, created on first use so read-only commands stay cheap -------------------

    @property
    def supervisor(self) -> SupervisorDriver:
        if self._supervisor is None:
            self._supervisor = SupervisorDriver(self.state_dir, self.lab_dir)
        return self._supervisor

    @property
    def caddy(self) -> CaddyDriver:
        if self._caddy is None:
            self._caddy = CaddyDriver(self.state_dir)
        return self._caddy

    @property
    def files(self) -> FilesDriver:
        return FilesDriver(self.state_dir, self.lab_dir)

    # -- desired and live -------------------------------------------------------------------

    def notes(self) -> list[str]:
        """Why parts of the lab are not applied (declared so, or a host is down)."""
        notes = list(self.spec.notes)
        if self._sessions is not None:
            for session in self.unique_sessions():
                notes += session.ctx.notes
            notes += [f"host {h} not planned: {why}" for h, why in self.unreachable().items()]
        return notes

    def desired(self) -> list[Resource]:
        """Rendered resources that apply on this machine, in catalog order."""
        return list(self.spec.desired)

    @property
    def supervisor_host(self) -> str | None:
        return self.spec.supervisor_host

    def proxy_hosts(self) -> list[str]:
        return list(self.spec.proxy_hosts)

    # -- hosts ----------------------------------------------------------------------------

    @property
    def sessions(self) -> dict[str, HostSession]:
        """One session per host blumeops applies; all local hosts share this machine's."""
        if self._sessions is None:
            sessions: dict[str, HostSession] = {}
            desired = self.spec.desired
            if self.local_hosts:
                first = self.local_hosts[0]
                host = self.spec.hosts.get(first) or HostSpec(first, True)
                mine = [r for r in desired if self.spec.host_of(r.target) in self.local_hosts]
                ctx = HostContext(host, self.spec, self.state_dir, self.lab_dir, runtime=self)
                kinds = host_kinds(host, mine, bool(self.spec.proxy_hosts))
                if self.supervisor_host is None:
                    kinds = [k for k in kinds if k != "supervisor"]
                local = HostSession(ctx, mine, kinds)
                for name in self.local_hosts:
                    sessions[name] = local
            for host in self.spec.remote_hosts:
                mine = [r for r in desired if self.spec.host_of(r.target) == host.name]
                proxy = any(r.target_kind == "caddy" for r in mine)
                sessions[host.name] = remote_session(self.spec, host, self.state_dir,
                                                     self.lab_dir, mine, proxy)
            if self.spec.clusters or self.spec.tailnet is not None:  # engine/targets.py
                sessions.update(target_sessions(self, set(sessions)))
            self._sessions = sessions
        return self._sessions

    def unique_sessions(self) -> list[HostSession]:
        seen: dict[int, HostSession] = {}
        for session in self.sessions.values():
            seen.setdefault(id(session), session)
        return list(seen.values())

    def unreachable(self) -> dict[str, str]:
        """Hosts not applied this run, and why (unreachable, or facts contradict)."""
        return {s.name: s.unreachable for s in self.unique_sessions() if s.unreachable}

    def manages_services(self, target: str) -> bool:
        kind, _, host = target.partition("@")
        session = self.sessions.get(host)
        driver = session.drivers.get(kind) if session else None
        return bool(driver and driver.manages_services)

    def observe(self) -> dict[str, Live]:
        """Live resources of every host: hosts in parallel, one round trip each."""
        live: dict[str, Live] = {}
        for part in in_parallel(self.unique_sessions(), lambda s: s.observe()):
            live.update(part)
        return live

    def apply_changes(self, changes: list[Change], secrets: Secrets,
                      say: Any = None) -> dict[str, str]:
        """Each host applies its share of one wave, hosts in parallel; errors per id."""
        by_session: dict[int, list[Change]] = {}
        for change in changes:
            session = self.sessions.get(self.spec.host_of(change.target))
            if session is not None:
                by_session.setdefault(id(session), []).append(change)
        sessions = [s for s in self.unique_sessions() if id(s) in by_session]
        errors: dict[str, str] = {}
        for part in in_parallel(sessions, lambda s: s.apply(by_session[id(s)], secrets)):
            errors.update(part)
        for change in changes:
            if self.spec.host_of(change.target) not in self.sessions:
                errors[change.id] = f"host of {change.target} is not applied by blumeops"
        return errors

    def service_health(self, names: list[str],
                       started: dict[str, float]) -> dict[str, ServiceHealth]:
        """Health of each named service, asked where it runs (hosts in parallel)."""
        groups: dict[int, list[str]] = {}
        out: dict[str, ServiceHealth] = {}
        for name in names:
            svc = self.spec.services[name]
            session = self.sessions.get(svc.host or "")
            if (svc.job is not None and not svc.local
                    and svc.host not in self.spec.clusters and not self.runs_jobs(svc.host)):
                out[name] = ServiceHealth(name, Health.unknown, "job rendered, not applied: "
                                          "its host runs no service manager blumeops "
                                          "drives from here")
            elif session is None and svc.probed_here:
                out[name] = self.probe_from_here(name)
            elif session is None:
                out[name] = ServiceHealth(name, Health.unknown, "not run by blumeops "
                                          "(its host is neither local nor reached over ssh)",
                                          urls=svc.urls)
            else:
                groups.setdefault(id(session), []).append(name)
        sessions = [s for s in self.unique_sessions() if id(s) in groups]
        for part in in_parallel(sessions, lambda s: s.health(groups[id(s)], started)):
            out.update(part)
        from dataclasses import replace

        return {n: replace(h, host=self.spec.services[n].host or "") for n, h in out.items()}

    def runs_jobs(self, host: str | None) -> bool:
        """A host reached over SSH whose jobs blumeops applies (blumeops-scheduler under its
        supervisord, systemd timers, launchd calendar jobs): the job's health is asked there."""
        spec = self.spec.hosts.get(host or "")
        return (spec is not None and not spec.local
                and spec.manager in ("supervisor", *UNIT_MANAGERS))

    def probe_from_here(self, service: str) -> ServiceHealth:
        """A service of a host blumeops does not manage (an appliance): its probe, run
        from this machine against the host's address; nothing else is known of it."""
        svc = self.spec.services[service]
        spec = svc.probe
        if spec is None or spec.kind == "command" or not spec.port:
            return ServiceHealth(service, Health.unknown, f"on {svc.host} (not managed by "
                                 "blumeops); no http or tcp probe declared", urls=svc.urls)
        if spec.kind == "tcp":
            r = probe_tcp(svc.address, spec.port, spec.timeout)
        else:
            r = probe_http(svc.address, spec.port, spec.path, spec.timeout)
        health = Health.healthy if r.ok else Health.degraded
        return ServiceHealth(service, health, f"{r.detail} from here", "unmanaged",
                             urls=svc.urls)

    def program_pids(self) -> dict[str, int | None]:
        """Every supervised service's pid now, on every reachable host."""
        out: dict[str, int | None] = {}
        for session in self.unique_sessions():
            if session.unreachable:
                continue
            for driver in session.drivers.values():
                if driver.manages_services:
                    try:
                        out.update(driver.pids())
                    except TransportError as exc:
                        session.unreachable = exc.message
        return out

    def close(self) -> None:
        for session in self.unique_sessions():
            if session.remote:
                session.close()

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
        if svc.job is not None or service == SCHEDULER:
            return (jobs.scheduler_health(service, status, self.state_dir) if svc.job is None
                    else jobs.job_health(service, svc, self.state_dir, status))
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
        pending = self.supervisor.restart_pending(service)
        if pending:
            return ServiceHealth(service, Health.progressing, f"restart pending: {pending}",
                                 st.state, st.pid, urls)
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
        """The log's last lines, with the service's own secret values masked: this detail
        reaches status, events, the state database and notifications."""
        lines = self.supervisor.tail_log(service, 5).strip().splitlines()
        if not lines:
            return "(log is empty)"
        return Redactor(self._secret_values(service))(" | ".join(lines[-5:]))

    def _secret_values(self, service: str) -> list[str]:
        """What the service was given: its 0600 env file and its file secrets."""
        import contextlib
        import json


        values: list[str] = []
        with contextlib.suppress(EnvFileError):
            values += read_env_file(self.supervisor.env_path(service)).values()
        try:
            index = json.loads((self.state_dir / "secrets" / "files.json").read_text())
            for key, path in index.items():
                if key.startswith(f"{service}:"):
                    values.append(Path(path).read_text())
        except (OSError, ValueError):
            pass
        return values

