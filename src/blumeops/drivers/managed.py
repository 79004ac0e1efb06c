"""`systemd@HOST` and `launchd@HOST`: the engine's protocol over a unit manager.

The unit managers (drivers/systemd.py, drivers/launchd.py) speak units: `observe(names)
-> {name: UnitState}` in one round trip, `apply(upsert, restart, remove) -> errors` and
`unit_path(name)`. This adapter turns the engine's `Change`s into those calls and a
`UnitState` into `Live` and `ServiceHealth`, so each manager takes one registry line.
The manager class is found by name when a host first uses it.
"""

from __future__ import annotations

import hashlib
import importlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from blumeops.drivers.base import Driver, Secrets
from blumeops.engine.health import Health
from blumeops.engine.plan import Change, Live

if TYPE_CHECKING:
    from blumeops.engine.local import ServiceHealth
    from blumeops.transports.types import JSON

RUNNING = {"active", "running", "activating", "reloading"}


class UnitDriver(Driver):
    """A service manager reached through `manager(transport, option)`."""

    order = 30
    manages_services = True
    manager_ref: ClassVar[str]  # "module:Class"
    unit_kind: ClassVar[str]  # the resource kind its renderer makes
    manager_option: ClassVar[Any] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._manager: Any = None
        self._states: dict[str, Any] = {}

    @property
    def manager(self) -> Any:
        if self._manager is None:
            module, _, name = self.manager_ref.partition(":")
            cls = getattr(importlib.import_module(module), name)
            self._manager = cls(self.ctx.transport, self.option())
        return self._manager

    def option(self) -> Any:
        return self.manager_option

    def _names(self) -> list[str]:
        return sorted({r.name for r in self.resources})

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        self._states = dict(self.manager.observe(self._names()))
        desired = {r.name: r for r in self.resources}
        live: dict[str, Live] = {}
        differs = []
        for name, st in self._states.items():
            if not st.exists:
                continue
            res = desired.get(name)
            if res is not None and st.sha256 == hashlib.sha256(res.body.encode()).hexdigest():
                live[f"{self.target}/{res.kind}/{name}"] = self._live(res.body, st)
            else:
                differs.append(name)
        if differs and self.ctx.transport is not None:
            paths = {n: self.manager.unit_path(n) for n in differs}
            got = self.ctx.transport.call({"op": "read", "paths": list(paths.values())})
            for name, path in paths.items():
                kind = desired[name].kind if name in desired else self.unit_kind
                live[f"{self.target}/{kind}/{name}"] = self._live(
                    got["contents"].get(path) or "", self._states[name])
        return live

    @staticmethod
    def _live(body: str, st: Any) -> Live:
        state = str(getattr(st, "state", "") or getattr(st, "active", ""))
        return Live(body, state in RUNNING, state)

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        upsert = {c.name: c.desired.body for c in changes if c.desired is not None}
        restart = [c.name for c in changes if c.action == "update" and any(
            r.startswith(("not running", "secret")) for r in c.reasons)]
        remove = [c.name for c in changes if c.desired is None]
        errors = self.manager.apply(upsert, restart, remove)
        ids = {c.name: c.id for c in changes}
        return {ids.get(name, name): str(error) for name, error in errors.items()}

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        from blumeops.engine.local import ServiceHealth

        states = self.manager.observe(list(services))
        probes: list[tuple[str, JSON]] = []
        for name in services:
            svc = self.ctx.spec.services[name]
            if svc.probe is not None and svc.probe.kind != "command" and svc.probe.port:
                probes.append((name, {"op": "probe", "kind": svc.probe.kind,
                                      "host": svc.address, "port": svc.probe.port,
                                      "path": svc.probe.path, "timeout": svc.probe.timeout}))
        results: dict[str, JSON] = {}
        if probes and self.ctx.transport is not None:
            got = self.ctx.transport.call({"op": "batch", "ops": [op for _, op in probes]})
            results = {n: r for (n, _), r in zip(probes, got["results"], strict=True)}
        out = {}
        for name in services:
            svc = self.ctx.spec.services[name]
            st = states.get(name)
            word = str(getattr(st, "state", "") or getattr(st, "active", "")) if st else ""
            pid = getattr(st, "pid", None) if st else None
            if st is None or not st.exists:
                out[name] = ServiceHealth(name, Health.missing, f"no {self.kind} unit",
                                          urls=svc.urls)
            elif word not in RUNNING:
                out[name] = ServiceHealth(name, Health.degraded,
                                          f"{word}: {getattr(st, 'detail', '')}", word, pid,
                                          svc.urls)
            elif name not in results:
                out[name] = ServiceHealth(name, Health.unknown, "running; no health probe",
                                          word, pid, svc.urls)
            elif results[name].get("ok"):
                out[name] = ServiceHealth(name, Health.healthy, str(results[name]["detail"]),
                                          word, pid, svc.urls)
            else:
                at = started.get(name)
                young = at is not None and time.monotonic() - at < svc.startsecs + 10
                out[name] = ServiceHealth(name, Health.progressing if young else
                                          Health.degraded, str(results[name].get("detail")),
                                          word, pid, svc.urls)
        return out

    def pids(self) -> dict[str, int | None]:
        return {n: getattr(st, "pid", None) for n, st in self._states.items()}


class SystemdDriver(UnitDriver):
    kind = "systemd"
    unit_kind = "unit"
    manager_ref = "blumeops.drivers.systemd:SystemdManager"

    def option(self) -> Any:
        # User units for a non-root SSH user, system units for root.
        facts = self.ctx.facts
        return facts is not None and facts.user != "root"


class LaunchdDriver(UnitDriver):
    kind = "launchd"
    unit_kind = "plist"
    manager_ref = "blumeops.drivers.launchd:LaunchdManager"

    def option(self) -> Any:
        facts = self.ctx.facts
        return "system" if facts is not None and facts.user == "root" else "gui"
