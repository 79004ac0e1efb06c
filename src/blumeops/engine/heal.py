"""Drift between syncs: processes supervisord restarted, resources changed by hand.

Shared by the controller and the foreground loop of `blumeops up`: both observe, record
what drifted as events, then apply the same plan an apply would.
"""

from __future__ import annotations

from blumeops.core.plan import Plan
from blumeops.engine.local import LocalRuntime
from blumeops.state.store import Store


def pids(runtime: LocalRuntime) -> dict[str, int | None]:
    """Each supervised service's pid, on every host."""
    return runtime.program_pids()


def note_restarts(runtime: LocalRuntime, store: Store, before: dict[str, int | None]
                  ) -> tuple[list[tuple[str, int, int]], dict[str, int | None]]:
    """Record each program whose pid changed since `before`: (name, old pid, new pid).

    Also returns the pids now, where a program between a crash and its restart (no pid)
    keeps its last known one, so the restart that follows is still noted: the baseline
    for the next look."""
    restarted = []
    now = runtime.program_pids()
    for name, pid in now.items():
        old = before.get(name)
        if old and pid and pid != old:
            store.event("restarted", f"process {old} exited; supervisord restarted it as "
                        f"{pid}", service=name)
            restarted.append((name, old, pid))
    return restarted, {name: pid or before.get(name) for name, pid in now.items()}


def changed_services(plan: Plan) -> set[str]:
    """The services an apply of this plan may restart itself: not a restart to note."""
    return {c.service or c.name for c in plan.pending}


def record_drift(store: Store, plan: Plan) -> int:
    """One `healed` event per resource the plan repairs; how many."""
    for change in plan.pending:
        store.event("healed", f"drift: {change.id}: {'; '.join(change.reasons)}",
                    service=change.service, resource=change.id)
    return len(plan.pending)
