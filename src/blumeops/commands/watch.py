"""The foreground loop of `blumeops up`: re-apply when the catalog changes, heal drift.

Every pass is the same plan/apply as `blumeops apply`; a pass that changes something
while the catalog did not is a heal, recorded as such.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.


def _mtimes(files: list[Path]) -> dict[Path, float]:
    out = {}
    for path in files:
        try:
            out[path] = path.stat().st_mtime
        except OSError:
            out[path] = -1.0
    return out


def watch_local(lab: Path | None, state_dir: Path | None, interval: float, output: str,
                poll: float = 0.5) -> None:
    """Run until interrupted (KeyboardInterrupt propagates to the caller)."""
    from blumeops.catalog.paths import resolve_lab_path
    from blumeops.lab.loader import load_lab

    lab_path = resolve_lab_path(lab)
    files = load_lab(lab_path).files or [lab_path]
    seen = _mtimes(files)
    pids = _pids(lab, state_dir)
    next_heal = time.monotonic() + interval
    click.echo(f"watching {lab_path} (drift check every {interval:g}s); Ctrl-C stops the lab",
               err=True)
    while True:
        time.sleep(poll)
        now_mtimes = _mtimes(files)
        changed = now_mtimes != seen
        if not changed and time.monotonic() < next_heal:
            continue
        next_heal = time.monotonic() + interval
        if changed:
            seen = now_mtimes
            result = load_lab(lab_path)
            files = result.files or files
            seen = _mtimes(files)
            if not result.ok:
                for d in result.errors:
                    click.echo(str(d), err=True)
                click.echo("catalog invalid: keeping the running lab as it is", err=True)
                continue
            click.echo("catalog changed: applying", err=True)
        pids = _pass(lab, state_dir, output, heal=not changed, old_pids=pids)


def _pids(lab: Path | None, state_dir: Path | None) -> dict[str, int | None]:
    from blumeops.commands.session import session
    from blumeops.engine.heal import pids

    with session(lab, state_dir) as s:
        return pids(s.runtime)


def _pass(lab: Path | None, state_dir: Path | None, output: str, heal: bool,
          old_pids: dict[str, int | None]) -> dict[str, int | None]:
    from blumeops.commands.session import run_apply, session
    from blumeops.engine.apply import prepare
    from blumeops.engine.heal import changed_services, note_restarts, record_drift

    def restarts(before: dict[str, int | None]) -> dict[str, int | None]:
        noted, known = note_restarts(s.runtime, s.store, before)
        for name, old, new in noted:
            click.echo(f"  {name}: restarted by supervisord (pid {old} -> {new})", err=True)
        return known

    with session(lab, state_dir) as s:
        known = restarts(old_pids)
        if heal:
            prepared = prepare(s.runtime, s.store)
            if not prepared.plan.has_changes:
                return restarts(known)  # a process killed during this look
            record_drift(s.store, prepared.plan)
            click.echo("drift found: healing", err=True)
        report = run_apply(s, True, output)
        ours = changed_services(report.plan) if report is not None else set()
        return restarts({n: p for n, p in known.items() if n not in ours})
