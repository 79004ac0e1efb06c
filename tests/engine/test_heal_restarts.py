"""Restarts supervisord makes between two looks are noted once, whenever they fall.

The runtime here is a stand-in that answers `program_pids()` from a list of looks (the
real one asks supervisord: tests/engine/test_controller_loop.py kills a real process).
Found under load: a process killed while a heal pass ran was restarted before the pass
ended, and the pass took the new pid as its baseline without noting the restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from blumeops.core.plan import Change, Plan
from blumeops.core.resources import Resource
from blumeops.engine.heal import changed_services, note_restarts
from blumeops.engine.local import LocalRuntime
from blumeops.state.store import Store


class Looks:
    """A runtime whose supervised pids are the next of `looks` at each call."""

    def __init__(self, *looks: dict[str, int | None]) -> None:
        self.looks = list(looks)

    def program_pids(self) -> dict[str, int | None]:
        return self.looks.pop(0)


def runtime(*looks: dict[str, int | None]) -> LocalRuntime:
    return cast(LocalRuntime, Looks(*looks))


def restarted(store: Store) -> list[tuple[str | None, str]]:
    return [(e.service, e.message) for e in store.events() if e.kind == "restarted"]


def test_standin_runtime_a_restart_in_a_pass_is_noted_by_its_last_look(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        rt = runtime({"web": 100}, {"web": 200})
        first, known = note_restarts(rt, store, {"web": 100})
        assert first == [] and known == {"web": 100}
        late, baseline = note_restarts(rt, store, known)  # killed and restarted meanwhile
        assert late == [("web", 100, 200)]
        assert baseline == {"web": 200}
        assert restarted(store) == [
            ("web", "process 100 exited; supervisord restarted it as 200")]


def test_standin_runtime_a_look_between_crash_and_restart_keeps_old_pid(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        rt = runtime({"web": None, "api": 7}, {"web": 300, "api": 7})
        noted, known = note_restarts(rt, store, {"web": 100, "api": 7})
        assert noted == [] and known == {"web": 100, "api": 7}
        noted, known = note_restarts(rt, store, known)
        assert noted == [("web", 100, 300)] and known == {"web": 300, "api": 7}


def test_standin_runtime_what_this_pass_applied_is_not_a_restart_to_note(tmp_path: Path) -> None:
    res = Resource("supervisor@box", "program", "web", "body", "native/box/web.conf", "web")
    same = Resource("caddy@box", "config", "box", "{}", "caddy/box.json")
    plan = Plan([Change("update", res.id, "program", "web", res.target, "web",
                        ("command changed",), desired=res),
                 Change("unchanged", same.id, "config", "box", same.target, None)])
    ours = changed_services(plan)
    assert ours == {"web"}
    with Store(tmp_path) as store:
        rt = runtime({"web": 400})
        noted, known = note_restarts(rt, store, {n: p for n, p in {"web": 100}.items()
                                                 if n not in ours})
        assert noted == [] and known == {"web": 400}
        assert restarted(store) == []
