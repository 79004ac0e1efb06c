"""Health: the vocabulary ArgoCD users know, and what a service or target reports.

A service is Healthy, Progressing, Degraded, Missing or Unknown; a lab's health is its
worst service's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Health(StrEnum):
    healthy = "Healthy"
    progressing = "Progressing"
    degraded = "Degraded"
    missing = "Missing"
    unknown = "Unknown"


# Worst first: a lab is as healthy as its least healthy service.
_SEVERITY = [Health.degraded, Health.missing, Health.progressing, Health.unknown, Health.healthy]


def worst(healths: list[Health]) -> Health:
    if not healths:
        return Health.unknown
    return min(healths, key=_SEVERITY.index)


def lab_health(services: list[Health], routes_ok: list[bool]) -> Health:
    """The lab's verdict: Healthy only when every service run here is Healthy and every
    route answers through the proxy; a failing route makes it Degraded."""
    routes = [Health.healthy if ok else Health.degraded for ok in routes_ok]
    return worst([*services, *routes])


@dataclass(frozen=True)
class ServiceHealth:
    service: str
    health: Health
    detail: str
    state: str = ""  # the supervisor's word
    pid: int | None = None
    urls: tuple[str, ...] = ()
    host: str = ""
    job: JobRun | None = None  # a scheduled job's last and next run (core/jobs.py)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "service": self.service, "health": self.health.value, "detail": self.detail,
            "state": self.state, "pid": self.pid, "urls": list(self.urls), "host": self.host}
        if self.job is not None:
            out["job"] = self.job.as_dict()
        return out


@dataclass(frozen=True)
class TargetHealth:
    """One row of a target's own health: an Application, the tailnet policy."""

    target: str
    name: str
    health: Health
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"target": self.target, "name": self.name, "health": self.health.value,
                "detail": self.detail}


@dataclass(frozen=True)
class JobRun:
    """What `status` shows of a job beside its health."""

    last_run: str | None  # ISO time the last run started
    next_run: str | None
    exit_code: int | None
    running: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"last_run": self.last_run, "next_run": self.next_run,
                "exit_code": self.exit_code, "running": self.running}
