"""The unit-manager adapter (drivers/managed.py) against a manager with the agreed
interface: observe(names) -> {name: UnitState}, apply(upsert, restart, remove) -> errors,
unit_path(name). The manager here is a test double that keeps unit files in a directory
and states in memory; the transport is the real agent (in-process)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from blumeops.drivers.base import HostContext, driver_class
from blumeops.drivers.managed import SystemdDriver
from blumeops.engine.plan import make_plan
from blumeops.engine.resources import Resource
from blumeops.engine.spec import HostSpec, RuntimeSpec, ServiceSpec
from blumeops.transports.local import LocalTransport


@dataclass(frozen=True)
class UnitState:
    name: str
    exists: bool
    sha256: str | None
    state: str
    pid: int | None
    detail: str = ""


class DoubleManager:
    """Records calls; a unit is 'active' once applied, 'failed' after `crash`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.states: dict[str, str] = {}
        self.calls: list[tuple[str, object]] = []

    def unit_path(self, name: str) -> str:
        return str(self.root / f"blumeops-{name}.service")

    def observe(self, names: Sequence[str]) -> dict[str, UnitState]:
        self.calls.append(("observe", list(names)))
        out = {}
        for path in self.root.glob("blumeops-*.service"):
            name = path.name.removeprefix("blumeops-").removesuffix(".service")
            out[name] = UnitState(name, True, hashlib.sha256(path.read_bytes()).hexdigest(),
                                  self.states.get(name, "inactive"), 4242)
        return out

    def apply(self, upsert: Mapping[str, str], restart: Sequence[str],
              remove: Sequence[str]) -> dict[str, str]:
        self.calls.append(("apply", (dict(upsert), list(restart), list(remove))))
        for name, body in upsert.items():
            Path(self.unit_path(name)).write_text(body)
            self.states[name] = "active"
        for name in restart:
            self.states[name] = "active"
        for name in remove:
            Path(self.unit_path(name)).unlink()
            self.states.pop(name, None)
        return {}


def test_adapter_maps_changes_and_unit_states(tmp_path: Path) -> None:
    assert driver_class("systemd", remote=True) is SystemdDriver
    body = "[Service]\nExecStart=/bin/true\n"
    res = Resource("systemd@nas", "unit", "web", body, "native/nas/systemd/web.service",
                   service="web")
    svc = ServiceSpec("web", "nas", False)
    spec = RuntimeSpec("lab", (), None, (), {"web": svc}, (), (), (res,))
    ctx = HostContext(HostSpec("nas", False, ssh="nas", manager="systemd"), spec, tmp_path,
                      tmp_path, LocalTransport("nas"), "~/x")
    manager = DoubleManager(tmp_path)
    driver = SystemdDriver(ctx, [res])
    driver._manager = manager

    plan = make_plan([res], driver.observe([]))
    assert [c.action for c in plan.pending] == ["create"]
    assert driver.apply(plan.pending, {}) == {}
    assert manager.calls[-1] == ("apply", ({"web": body}, [], []))
    assert make_plan([res], driver.observe([])).pending == []
    assert driver.health(["web"], {})["web"].state == "active"

    # Edited by hand on the host: the plan shows the diff (read back by hash mismatch)
    # and apply restores it.
    Path(manager.unit_path("web")).write_text(body + "Restart=no\n")
    plan = make_plan([res], driver.observe([]))
    assert plan.pending[0].action == "update" and "+ExecStart" not in plan.pending[0].diff
    assert "-Restart=no" in plan.pending[0].diff
    # Stopped: restarted even though the file is restored.
    manager.states["web"] = "failed"
    plan = make_plan([res], driver.observe([]))
    driver.apply(plan.pending, {})
    assert manager.calls[-1] == ("apply", ({"web": body}, ["web"], []))
    # Dropped from the catalog: removed.
    plan = make_plan([], driver.observe([]))
    assert [(c.action, c.id) for c in plan.pending] == [("delete", "systemd@nas/unit/web")]
    driver.apply(plan.pending, {})
    assert manager.calls[-1] == ("apply", ({}, [], ["web"]))
