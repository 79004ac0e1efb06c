"""Apply: carry out a plan on this machine, in dependency order, and record it.

A service starts only after the services it depends on are healthy. One failing service
does not stop unrelated ones; what happened is recorded in the state store, and the next
apply retries whatever did not converge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blumeops.engine.health import Health, port_in_use
from blumeops.engine.local import LocalRuntime, ServiceHealth
from blumeops.engine.plan import Change, Plan, make_plan
from blumeops.engine.resources import Resource
from blumeops.state.store import Store

Progress = Callable[[str, str], None]  # (service or resource, message)


@dataclass
class Prepared:
    """Everything apply needs, computed once: desired resources, secrets and the plan."""

    desired: list[Resource]
    plan: Plan
    secrets: dict[str, dict[str, str]]  # resource id -> resolved values (memory only)
    fingerprints: dict[str, str]  # resource id -> keyed hash of those values
    errors: dict[str, str]  # service -> why it cannot be applied (e.g. a missing secret)
    seen_sync: int = 0  # the newest sync when this was planned: a newer one makes it stale


@dataclass
class ApplyReport:
    plan: Plan
    applied: list[str] = field(default_factory=list)  # resource ids
    failed: dict[str, str] = field(default_factory=dict)  # service or resource -> error
    health: list[ServiceHealth] = field(default_factory=list)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "duration_s": round(self.duration, 3),
            "plan": self.plan.as_dict(), "applied": self.applied, "failed": self.failed,
            "services": [h.as_dict() for h in self.health],
        }


def prepare(runtime: LocalRuntime, store: Store) -> Prepared:
    """Resolve secrets, observe and plan. Changes nothing."""
    from blumeops.secrets.errors import SecretError

    seen_sync = store.newest_sync_id()
    desired = runtime.desired()
    secrets: dict[str, dict[str, str]] = {}
    fingerprints: dict[str, str] = {}
    errors: dict[str, str] = {}
    needs_secrets = [r for r in desired if r.secret_refs]
    if needs_secrets:
        from blumeops.secrets.fingerprint import fingerprint, load_or_create_key
        from blumeops.secrets.resolve import resolve

        key = load_or_create_key(runtime.state_dir)
        for res in needs_secrets:
            try:
                values = resolve(res.secret_refs, runtime.lab_dir)
            except SecretError as exc:
                errors[res.service or res.id] = str(exc)
                continue
            secrets[res.id] = values
            fingerprints[res.id] = fingerprint(key, values)
    live = runtime.observe()
    recorded = {rid: row.secrets_fp or "" for rid, row in store.resources().items()}
    # A resource whose secrets cannot be resolved keeps its recorded fingerprint: the plan
    # then shows only real differences, and apply reports the secret error.
    for res in needs_secrets:
        if res.id not in fingerprints and res.id in recorded:
            fingerprints[res.id] = recorded[res.id]
    plan = make_plan(desired, live, fingerprints, recorded)
    return Prepared(desired, plan, secrets, fingerprints, errors, seen_sync)


def apply(runtime: LocalRuntime, prepared: Prepared, store: Store,
          progress: Progress | None = None, revision: str = "", wait: float = 30.0,
          author: str | None = None, message: str | None = None) -> ApplyReport:
    """Carry out the plan; return what happened. Never raises for one service's failure."""
    from blumeops.state.lock import lab_lock

    started = time.monotonic()
    say = progress or (lambda _who, _msg: None)
    report = ApplyReport(prepared.plan)
    # A CLI apply has no commit: its catalog's hash names what was applied.
    digest = runtime.spec.catalog_hash
    sync_id = store.start_sync(revision or digest, digest, author, message)
    waited = False

    def waiting(msg: str) -> None:
        nonlocal waited
        waited = True
        say("lab", msg)

    try:
        with lab_lock(runtime.state_dir, waiting):
            # Another writer may have changed the lab since this plan was made (we
            # waited for its lock, or it ran while the plan was shown): replaying the
            # old plan would redo its work, restarting services twice. Plan again.
            if waited or store.newest_sync_id(exclude=sync_id) != prepared.seen_sync:
                prepared = prepare(runtime, store)
                report.plan = prepared.plan
                say("lab", f"planned again against live state: "
                           f"{len(prepared.plan.pending)} changes left")
            _apply(runtime, prepared, store, report, say, wait)
    finally:
        report.duration = time.monotonic() - started
        counts = report.plan.counts()
        result = "ok" if report.ok else ("failed" if not report.applied else "partial")
        store.finish_sync(sync_id, result, {**counts, "failed": sorted(report.failed)})
    return report


def _apply(runtime: LocalRuntime, prepared: Prepared, store: Store, report: ApplyReport,
           say: Progress, wait: float) -> None:
    plan = prepared.plan
    programs = [c for c in plan.pending if c.target.startswith("supervisor@")]
    configs = [c for c in plan.pending if c.target.startswith("caddy@")]
    files = [c for c in plan.pending if c.target.startswith("files@")]
    for service, error in prepared.errors.items():
        report.failed[service] = error
        store.event("failed", error, service=service)
        say(service, f"cannot apply: {error}")

    if files:
        _apply_files(runtime, files, prepared, store, report, say)
    # Routes first: a new route answers the moment its service listens, as a Kubernetes
    # Service does; a removed one stops routing before its service stops.
    if configs:
        _apply_caddy(runtime, configs, store, report, say)
    if programs:
        runtime.supervisor.ensure_running()
        _apply_programs(runtime, programs, prepared, store, report, say, wait)


def _record(store: Store, change: Change, prepared: Prepared) -> None:
    res = change.desired
    if res is None:
        store.forget_resource(change.id)
        return
    store.record_resource(res.id, res.target, res.kind, res.name, res.digest,
                          service=res.service, secrets_fp=prepared.fingerprints.get(res.id))


def _apply_files(runtime: LocalRuntime, changes: list[Change], prepared: Prepared, store: Store,
                 report: ApplyReport, say: Progress) -> None:
    write = {}
    remove = []
    for c in changes:
        if c.desired is None:
            remove.append(c.name)
            continue
        svc = runtime.spec.services.get(c.desired.service or "")
        dest = runtime.files.resolve(c.desired.meta.get("dest", c.name),
                                     svc.workdir if svc else None)
        write[c.name] = (dest, c.desired.body, bool(svc and svc.has_secrets))
    errors = runtime.files.apply(write, remove)
    for c in changes:
        if c.name in errors:
            report.failed[c.id] = errors[c.name]
            say(c.service or c.name, errors[c.name])
        else:
            _record(store, c, prepared)
            report.applied.append(c.id)
            store.event(_verb(c), f"{c.action} {c.kind} {c.name}", service=c.service,
                        resource=c.id)


def _levels(runtime: LocalRuntime, names: list[str]) -> list[list[str]]:
    """Group services into waves: each wave depends only on earlier ones."""
    services = runtime.spec.services
    depth: dict[str, int] = {}

    def level(name: str, trail: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        deps = [d for d in services[name].depends_on if d in services and d not in trail]
        depth[name] = 1 + max((level(d, trail | {name}) for d in deps), default=-1)
        return depth[name]

    waves: dict[int, list[str]] = {}
    for name in names:
        waves.setdefault(level(name, frozenset()), []).append(name)
    return [sorted(waves[k]) for k in sorted(waves)]


def _apply_programs(runtime: LocalRuntime, changes: list[Change], prepared: Prepared,
                    store: Store, report: ApplyReport, say: Progress, wait: float) -> None:
    services = runtime.spec.services
    sup = runtime.supervisor
    deletes = [c for c in changes if c.action == "delete"]
    if deletes:
        result = sup.apply({}, remove=[c.name for c in deletes])
        for c in deletes:
            say(c.name, "removed")
            _record(store, c, prepared)
            report.applied.append(c.id)
            store.event("deleted", f"removed program {c.name}", service=c.name, resource=c.id)
        for name, error in result.errors.items():
            report.failed[name] = error
    by_service = {c.name: c for c in changes if c.action != "delete"}
    status = runtime.program_status()
    unhealthy: set[str] = set(report.failed)
    started: dict[str, float] = {}
    for wave in _levels(runtime, list(by_service)):
        upsert: dict[str, tuple[str, dict[str, str]]] = {}
        restart: list[str] = []
        for name in wave:
            change = by_service[name]
            assert change.desired is not None
            if name in prepared.errors:
                continue
            blocked = [d for d in services[name].depends_on if d in unhealthy]
            if blocked:
                msg = f"not started: depends on {', '.join(blocked)}, which is not healthy"
                report.failed[name] = msg
                unhealthy.add(name)
                say(name, msg)
                store.event("failed", msg, service=name)
                continue
            busy = _taken_ports(runtime, name, status)
            if busy:
                msg = (f"port {busy[0]} is already in use by another process; stop it or "
                       f"change the port of '{name}' in the catalog")
                report.failed[name] = msg
                unhealthy.add(name)
                say(name, msg)
                store.event("failed", msg, service=name)
                continue
            try:
                env = deliver_secret_files(runtime, name, prepared.secrets.get(change.id, {}))
            except OSError as exc:
                report.failed[name] = f"cannot write its secret files: {exc.strerror or exc}"
                unhealthy.add(name)
                continue
            upsert[name] = (change.desired.body, env)
            # A service reads its secrets only at start: new values (a file secret's too)
            # or a stopped process mean a restart even when its program is unchanged.
            if change.action == "update" and any(r.startswith(("not running", "secret"))
                                                  for r in change.reasons):
                restart.append(name)
            say(name, {"create": "starting", "update": "updating"}[change.action])
        if not upsert:
            continue
        result = sup.apply(upsert, restart=restart)
        now = time.monotonic()
        for name in upsert:
            started[name] = now
            if name in result.errors:
                report.failed[name] = result.errors[name]
                unhealthy.add(name)
                store.event("failed", result.errors[name], service=name)
        # Wait for this wave only when a later wave needs it healthy.
        needed = {d for n in by_service for d in services[n].depends_on} & set(upsert)
        healths = _wait_healthy(runtime, [n for n in upsert if n not in result.errors],
                                started, wait, needed)
        for name, health in healths.items():
            change = by_service[name]
            if health.health in (Health.degraded, Health.missing):
                report.failed[name] = health.detail
                unhealthy.add(name)
                say(name, f"{health.health}: {health.detail}")
                store.event("failed", f"{health.health}: {health.detail}", service=name)
            elif name in needed and health.health is not Health.healthy:
                unhealthy.add(name)
            if name not in result.errors:
                # Recorded even when unhealthy: the program is applied as desired; health
                # is reported separately and the supervisor keeps restarting it.
                _record(store, change, prepared)
                report.applied.append(change.id)
                store.event(_verb(change), f"{change.action}d program ({health.health})"
                            if change.action != "update" else
                            f"updated: {'; '.join(change.reasons)} ({health.health})",
                            service=name, resource=change.id)
                if health.health is Health.healthy:
                    say(name, "healthy")


def deliver_secret_files(runtime: LocalRuntime, name: str, values: dict[str, str]
                         ) -> dict[str, str]:
    """Write the service's file secrets (0600); return the rest, for its environment.

    Paths are listed in STATE/secrets/files.json so `down` can remove them.
    """
    import json

    from blumeops.fileio import write_atomic

    svc = runtime.spec.services[name]
    if not svc.secret_files:
        return values
    index_path = runtime.state_dir / "secrets" / "files.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    env = dict(values)
    for secret, declared in svc.secret_files.items():
        if secret not in env:
            continue
        path = runtime.files.resolve(declared, svc.workdir)
        write_atomic(path, env.pop(secret), 0o600)
        index[f"{name}:{secret}"] = str(path)
    write_atomic(index_path, json.dumps(index, indent=2, sort_keys=True), 0o600)
    return env


def remove_secret_files(state_dir: Path) -> list[str]:
    """Delete every file secret written by `deliver_secret_files`."""
    import json

    index_path = state_dir / "secrets" / "files.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        return []
    for path in index.values():
        Path(path).unlink(missing_ok=True)
    index_path.unlink(missing_ok=True)
    return list(index)


def _wait_healthy(runtime: LocalRuntime, names: list[str], started: dict[str, float],
                  wait: float, needed: set[str]) -> dict[str, ServiceHealth]:
    """Poll until every service leaves Progressing (or `wait` runs out for needed ones)."""
    deadline = time.monotonic() + wait
    quick = time.monotonic() + max((runtime.spec.services[n].startsecs for n in names),
                                   default=1) + 0.5
    out: dict[str, ServiceHealth] = {}
    pending = list(names)
    while True:
        status = runtime.program_status()
        for name in list(pending):
            health = runtime.health(name, status, started.get(name))
            out[name] = health
            if health.health is not Health.progressing and (
                    health.health is not Health.unknown or status.get(name) is None
                    or status[name].state == "RUNNING"):
                pending.remove(name)
        now = time.monotonic()
        # Services nothing waits on get a short look; dependencies get the full wait.
        if not pending or now > deadline or (now > quick and not set(pending) & needed):
            return out
        time.sleep(0.05)


def _taken_ports(runtime: LocalRuntime, name: str, status: dict[str, Any]) -> list[int]:
    """Ports of the service held by something other than its own running program."""
    st = status.get(name)
    if st is not None and st.state in ("RUNNING", "STARTING", "BACKOFF"):
        return []  # its own process holds them; supervisord restarts it in place
    return [p for p in runtime.spec.services[name].ports.values() if port_in_use(p)]


def _apply_caddy(runtime: LocalRuntime, changes: list[Change], store: Store, report: ApplyReport,
                 say: Progress) -> None:
    from blumeops.drivers.caddy import CaddyLoadError
    from blumeops.drivers.process import DriverError

    for c in changes:
        if c.desired is None:
            continue  # the proxy host left the lab: `down` stops Caddy
        try:
            runtime.caddy.ensure_running()
            runtime.caddy.load(json.loads(c.desired.body))
        except (CaddyLoadError, DriverError) as exc:
            report.failed[c.id] = f"Caddy rejected the config: {exc}"
            say("caddy", f"config rejected: {exc}")
            store.event("failed", f"caddy load failed: {exc}", resource=c.id)
            continue
        store.record_resource(c.id, c.target, c.kind, c.name, c.desired.digest)
        report.applied.append(c.id)
        say("caddy", f"routes loaded ({c.action})")
        store.event(_verb(c), f"{c.action} caddy config for {c.name}", resource=c.id)


def _verb(change: Change) -> str:
    return {"create": "created", "update": "updated", "delete": "deleted"}.get(change.action,
                                                                           change.action)


def final_health(runtime: LocalRuntime) -> list[ServiceHealth]:
    status = runtime.program_status()
    return [runtime.health(name, status) for name in runtime.spec.services]

