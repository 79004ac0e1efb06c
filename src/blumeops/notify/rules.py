"""Which controller steps become notices: one per state change, never a flood.

A *condition* (a service Degraded, syncs failing, a commit rejected, a host unreachable,
a backup job failing or overdue) is reported once when it starts, again only after
`repeat_after` seconds if it is still there, and once more when it clears. One-off events
(drift healed) are reported each time, the same one at most once per `repeat_after`.
Pure: steps and time in, notices out.

Controller steps read here (`Controller._emit(kind, **data)`): `health` (services,
lab_health), `sync-finished` (commit, ok, errors), `sync-failed` (commit, errors),
`commit-rejected` (commit, errors), `drift-healed` (resources, restarted). Hosts and
backups, once the engine reports them: `host-unreachable` / `host-reachable` (host,
detail) and `backup-failed` / `backup-overdue` / `backup-ok` (job, detail).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BAD_HEALTH = ("Degraded", "Missing")


@dataclass(frozen=True)
class Notice:
    event: str  # one of catalog.model.NOTIFY_EVENTS: decides which targets get it
    title: str
    body: str


@dataclass
class _Active:
    since: float
    last_sent: float
    what: str


@dataclass
class Rules:
    repeat_after: float = 3600.0
    active: dict[str, _Active] = field(default_factory=dict)
    oneoffs: dict[str, float] = field(default_factory=dict)

    def step(self, kind: str, data: dict[str, Any], now: float) -> list[Notice]:
        """The notices for one controller step (`Controller.listeners`)."""
        out: list[Notice] = []
        if kind == "health":
            present = {f"service:{s['service']}" for s in data.get("services", [])}
            for key in [k for k in self.active if k.startswith("service:")]:
                if key not in present:  # removed from the catalog: nothing left to clear
                    del self.active[key]
            for svc in data.get("services", []):
                name, word = str(svc["service"]), str(svc["health"])
                key = f"service:{name}"
                if word in BAD_HEALTH:
                    out += self._start(key, "service-degraded", now,
                                       f"{name} is {word}", str(svc.get("detail", "")))
                elif word == "Healthy":
                    out += self._clear(key, "service-recovered", now,
                                       f"{name} is Healthy again", "")
        elif kind == "sync-failed":
            commit = str(data.get("commit") or "")[:12]
            errors = data.get("errors") or []
            out += self._start("sync", "sync-failed", now, f"sync of {commit} failed",
                               _errors(errors))
        elif kind == "commit-rejected":
            commit = str(data.get("commit") or "")[:12]
            out += self._start("rejected", "commit-rejected", now,
                               f"commit {commit} was rejected (invalid catalog)",
                               _errors(data.get("errors") or []), restart=True)
        elif kind == "sync-finished":
            commit = str(data.get("commit") or "")[:12]
            if data.get("ok"):
                out += self._clear("sync", "sync-failed", now,
                                   f"sync of {commit} succeeded again", "")
                out += self._clear("rejected", "commit-rejected", now,
                                   f"commit {commit} is valid and applied", "")
            else:
                out += self._start("sync", "sync-failed", now, f"sync of {commit} failed",
                                   _errors(data.get("errors") or []))
        elif kind == "drift-healed":
            what = sorted([*data.get("resources", []), *data.get("restarted", [])])
            key = "drift:" + ",".join(what)
            last = self.oneoffs.get(key)
            if what and (last is None or now - last >= self.repeat_after):
                self.oneoffs[key] = now
                out.append(Notice("drift-healed", "drift healed",
                                  "put back: " + ", ".join(what)))
        elif kind in ("host-unreachable", "host-reachable"):
            host = str(data.get("host", "?"))
            if kind == "host-unreachable":
                out += self._start(f"host:{host}", "host-unreachable", now,
                                   f"host {host} is unreachable", str(data.get("detail", "")))
            else:
                out += self._clear(f"host:{host}", "host-unreachable", now,
                                   f"host {host} is reachable again", "")
        elif kind in ("backup-failed", "backup-overdue", "backup-ok"):
            job = str(data.get("job", "?"))
            if kind == "backup-ok":
                for event in ("backup-failed", "backup-overdue"):
                    out += self._clear(f"{event}:{job}", event, now,
                                       f"backup {job} is fine again", "")
            else:
                word = "failed" if kind == "backup-failed" else "is overdue"
                out += self._start(f"{kind}:{job}", kind, now, f"backup {job} {word}",
                                   str(data.get("detail", "")))
        return out

    def _start(self, key: str, event: str, now: float, title: str, body: str,
               restart: bool = False) -> list[Notice]:
        cur = self.active.get(key)
        if cur is not None and not (restart and cur.what != title):
            if now - cur.last_sent < self.repeat_after:
                return []  # the same problem, reported recently: suppressed
            cur.last_sent = now
            return [Notice(event, f"still: {title}", body)]
        self.active[key] = _Active(now, now, title)
        return [Notice(event, title, body)]

    def _clear(self, key: str, event: str, now: float, title: str,
               body: str) -> list[Notice]:
        cur = self.active.pop(key, None)
        if cur is None:
            return []
        return [Notice(event, title, body or f"was: {cur.what} "
                                             f"(for {int(now - cur.since)} s)")]


def _errors(errors: list[Any]) -> str:
    lines = []
    for e in errors[:10]:
        if not isinstance(e, dict):
            continue
        where = f"{e['file']}:{e['line']}: " if e.get("file") else ""
        who = f"{e['service']}: " if e.get("service") else ""
        lines.append(f"{where}{who}{e.get('message', '')}")
    return "\n".join(lines)
