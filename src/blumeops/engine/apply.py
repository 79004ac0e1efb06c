"""Apply: carry out a plan on every host, in dependency waves, and record it.

A service starts only after the services it depends on are healthy. One failing service
does not stop unrelated ones; what happened is recorded in the state store, and the next
apply retries whatever did not converge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from blumeops.core.health import Health, ServiceHealth
from blumeops.core.plan import Change, Plan, make_plan
from blumeops.core.resources import Resource
from blumeops.core.spec import SERVICE_KINDS, ServiceSpec
from blumeops.engine.local import LocalRuntime
from blumeops.secrets.errors import SecretError
from blumeops.secrets.fingerprint import fingerprint, load_or_create_key
from blumeops.state.lock import lab_lock
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
    seen_sync = store.newest_sync_id()
    desired = runtime.desired()
    secrets: dict[str, dict[str, str]] = {}
    fingerprints: dict[str, str] = {}
    errors: dict[str, str] = {}
    needs_secrets = [r for r in desired if r.secret_refs]
    if needs_secrets:
        from blumeops.secrets.resolve import resolve  # lazy: keeps pyrage out of start-up

        key = load_or_create_key(runtime.state_dir)
        for res in needs_secrets:
            try:
                values = resolve(res.secret_refs, runtime.secrets_dir)
            except SecretError as exc:
                errors[res.service or res.id] = str(exc)
                continue
            secrets[res.id] = values
            # How each value is delivered (file or environment) is compared too.
            svc = runtime.spec.services.get(res.service or "")
            fingerprints[res.id] = fingerprint(key, values,
                                               svc.secret_files if svc is not None else None)
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
    """Dependency waves across every host; the hosts of a wave in parallel.

    A wave holds the changes whose services depend only on earlier waves (resources
    without a service - files, routes, deletes - go first: a new route answers the
    moment its service listens, as a Kubernetes Service does). Each host applies its
    part of a wave through its drivers, in their order; then the engine waits for the
    services a later wave needs, wherever they run.
    """
    for service, error in prepared.errors.items():
        report.failed[service] = error
        store.event("failed", error, service=service)
        say(service, f"cannot apply: {error}")
    for host, reason in runtime.unreachable().items():
        report.failed[f"host {host}"] = reason
        store.event("failed", f"host {host} not applied: {reason}")
        say(host, f"not applied: {reason}")
    services = runtime.spec.services
    pending = [c for c in prepared.plan.pending
               if runtime.spec.host_of(c.target) not in runtime.unreachable()]
    unhealthy: set[str] = set(report.failed)
    # Services of a host not applied this run cannot be waited for: their dependents
    # on other hosts do not start (the next run, with the host back, starts them).
    unhealthy |= {n for n, svc in services.items() if svc.host in runtime.unreachable()}
    started: dict[str, float] = {}
    waves = _waves(runtime, pending)
    needed_all = {d for c in pending if c.service for d in services.get(
        c.service, _NO_SERVICE).depends_on}
    for wave in waves:
        ready: list[Change] = []
        for change in wave:
            name = change.service
            if name and change.desired is not None and _is_program(runtime, change):
                if name in prepared.errors:
                    continue
                blocked = [d for d in services[name].depends_on if d in unhealthy]
                if blocked:
                    msg = (f"not started: depends on {', '.join(blocked)}, which is not "
                           "healthy")
                    report.failed[name] = msg
                    unhealthy.add(name)
                    say(name, msg)
                    store.event("failed", msg, service=name)
                    continue
            ready.append(change)
            if change.desired is not None and _is_program(runtime, change):
                job = services.get(change.name, _NO_SERVICE).job is not None
                say(change.name, "scheduling" if job else
                    {"create": "starting", "update": "updating"}[change.action])
        errors = runtime.apply_changes(ready, prepared.secrets, say)
        now = time.monotonic()
        programs: list[Change] = []
        for change in ready:
            program = _is_program(runtime, change)
            key = change.name if program and change.desired is not None else change.id
            if change.id in errors:
                report.failed[key] = errors[change.id]
                unhealthy.add(change.service or change.name)
                say(change.service or change.name, errors[change.id])
                store.event("failed", errors[change.id], service=change.service,
                            resource=change.id)
                continue
            if program and change.desired is not None:
                started[change.name] = now
                programs.append(change)
                continue
            _record(store, change, prepared)
            report.applied.append(change.id)
            # A removed program names its service (the plan's delete carries no service).
            store.event(_verb(change), f"{change.action} {change.kind} {change.name}",
                        service=change.service or (change.name if program else None),
                        resource=change.id)
            if program:
                say(change.name, "removed")
        if not programs:
            continue
        names = [c.name for c in programs if c.id not in errors]
        needed = needed_all & set(names)
        healths = _wait_healthy(runtime, names, started, wait, needed)
        for change in programs:
            name = change.name
            health = healths.get(name)
            if health is not None:
                if health.health in (Health.degraded, Health.missing):
                    report.failed[name] = health.detail
                    unhealthy.add(name)
                    say(name, f"{health.health}: {health.detail}")
                    store.event("failed", f"{health.health}: {health.detail}", service=name)
                elif name in needed and health.health is not Health.healthy:
                    unhealthy.add(name)
            word = health.health if health is not None else Health.unknown
            # Recorded even when unhealthy: the program is applied as desired; health
            # is reported separately and the supervisor keeps restarting it.
            _record(store, change, prepared)
            report.applied.append(change.id)
            store.event(_verb(change), f"{change.action}d program ({word})"
                        if change.action != "update" else
                        f"updated: {'; '.join(change.reasons)} ({word})",
                        service=name, resource=change.id)
            if word is Health.healthy:
                say(name, "healthy")


_NO_SERVICE = ServiceSpec("", None, False)


def _is_program(runtime: LocalRuntime, change: Change) -> bool:
    """A change to a service's process (its manager's resource), not a file or route."""
    return runtime.manages_services(change.target) and change.kind in SERVICE_KINDS


def _record(store: Store, change: Change, prepared: Prepared) -> None:
    res = change.desired
    if res is None:
        store.forget_resource(change.id)
        return
    store.record_resource(res.id, res.target, res.kind, res.name, res.digest,
                          service=res.service, secrets_fp=prepared.fingerprints.get(res.id))


def _waves(runtime: LocalRuntime, changes: list[Change]) -> list[list[Change]]:
    """Group changes into waves: each wave depends only on earlier ones (any host)."""
    services = runtime.spec.services
    depth: dict[str, int] = {}

    def level(name: str, trail: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        deps = [d for d in services[name].depends_on if d in services and d not in trail]
        depth[name] = 1 + max((level(d, trail | {name}) for d in deps), default=-1)
        return depth[name]

    waves: dict[int, list[Change]] = {}
    for change in changes:
        name = change.service or ""
        program = _is_program(runtime, change) and change.desired is not None
        wave = level(name, frozenset()) if program and name in services else 0
        waves.setdefault(wave, []).append(change)
    return [sorted(waves[k], key=lambda c: c.id) for k in sorted(waves)]


def _verb(change: Change) -> str:
    return {"create": "created", "update": "updated", "delete": "deleted"}.get(change.action,
                                                                           change.action)


# supervisord's words for a process that has not yet stayed up for its startsecs.
NOT_UP = ("STARTING", "BACKOFF")


def _wait_healthy(runtime: LocalRuntime, names: list[str], started: dict[str, float],
                  wait: float, needed: set[str]) -> dict[str, ServiceHealth]:
    """Poll until every service leaves Progressing (or `wait` runs out for needed ones).

    A program still STARTING is waited for in full, whoever needs it: supervisord says
    RUNNING only once it stayed up for its startsecs, and a crash loop can read STARTING
    at every poll. One that never reached RUNNING is Degraded, so apply fails.
    Each poll asks every host once (one round trip per remote host)."""
    services = runtime.spec.services
    longest = max((services[n].startsecs for n in names), default=1)
    begun = time.monotonic()
    deadline = begun + max(wait, longest + 5.0)
    quick = begun + longest + 0.5
    out: dict[str, ServiceHealth] = {}
    pending = list(names)
    while True:
        for name, health in runtime.service_health(pending, started).items():
            out[name] = health
            if health.health is not Health.progressing and (
                    health.health is not Health.unknown
                    or health.state in ("", "RUNNING", "active", "running")):
                pending.remove(name)
        now = time.monotonic()
        starting = {n for n in pending if out[n].state in NOT_UP and services[n].job is None}
        # Services nothing waits on get a short look; dependencies get the full wait.
        if not pending or now > deadline or (now > quick and not set(pending) & (needed
                                                                                 | starting)):
            break
        time.sleep(0.05)
    from dataclasses import replace

    for name, health in out.items():
        if (health.health is Health.progressing and health.state in NOT_UP
                and services[name].job is None):
            out[name] = replace(health, health=Health.degraded, detail=(
                f"never reached RUNNING: still {health.state} after "
                f"{time.monotonic() - begun:.0f}s (it exits or hangs while starting; "
                f"startsecs is {services[name].startsecs}s): {health.detail}"))
    return out


def final_health(runtime: LocalRuntime) -> list[ServiceHealth]:
    healths = runtime.service_health(list(runtime.spec.services), {})
    return [healths[name] for name in runtime.spec.services]

