"""`plan`, `apply`, `up`, `down`, `status` and `check`: running a lab on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from blumeops.commands.catalog import LAB_ARGUMENT
from blumeops.commands.session import (
    HEALTH_STYLE,
    STATE_OPTION,
    YES_OPTION,
    Session,
    print_health,
    print_plan,
    run_apply,
    session,
)
from blumeops.output import OUTPUT_OPTION, emit_json, say, table

if TYPE_CHECKING:
    pass

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.


# -- printing ---------------------------------------------------------------------------


# -- commands ---------------------------------------------------------------------------


@click.command()
@LAB_ARGUMENT
@STATE_OPTION
@OUTPUT_OPTION
def plan(lab: Path | None, state_dir: Path | None, output: str) -> None:
    """Show what apply would change. Exit 0 no changes, 2 changes pending, 1 error."""
    from blumeops.engine.apply import prepare

    with session(lab, state_dir) as s:
        prepared = prepare(s.runtime, s.store)
        if output == "json":
            emit_json({**prepared.plan.as_dict(), "errors": prepared.errors,
                       "notes": s.runtime.notes()})
        else:
            print_plan(prepared.plan, s.runtime.notes())
            for service, error in prepared.errors.items():
                click.echo(f"error: {service}: {error}", err=True)
        down = s.runtime.unreachable()
        if output == "text":
            for host, reason in down.items():
                click.echo(f"error: host {host} not planned: {reason}", err=True)
    if prepared.errors or down:
        raise SystemExit(1)
    raise SystemExit(2 if prepared.plan.has_changes else 0)


@click.command()
@LAB_ARGUMENT
@STATE_OPTION
@YES_OPTION
@OUTPUT_OPTION
def apply(lab: Path | None, state_dir: Path | None, yes: bool, output: str) -> None:
    """Apply the catalog on this machine: shows the plan, asks, then applies it."""
    with session(lab, state_dir) as s:
        report = run_apply(s, yes, output)
    raise SystemExit(0 if report is None or report.ok else 1)


@click.command()
@LAB_ARGUMENT
@STATE_OPTION
@click.option("--detach", "-d", is_flag=True,
              help="return once the lab is healthy, leaving it running")
@click.option("--interval", type=float, default=5.0, show_default=True,
              help="seconds between drift checks (and git fetches) in the foreground")
@click.option("--listen", default="127.0.0.1:7300", show_default=True,
              help="API, webhooks and /metrics when following git")
@click.option("--no-git", is_flag=True,
              help="watch the working tree even when the lab is in a git repository")
@YES_OPTION
@OUTPUT_OPTION
def up(lab: Path | None, state_dir: Path | None, detach: bool, interval: float, listen: str,
       no_git: bool, yes: bool, output: str) -> None:
    """Apply, then keep the lab so until Ctrl-C, which stops it (as `blumeops down`).

    In a git repository the foreground loop follows the branch's commits (what is
    committed is what runs) and serves the controller API; elsewhere, or with --no-git,
    it re-applies when the catalog files change. Both heal drift. With --detach it
    applies the working tree once and returns, leaving the lab running.
    """
    from blumeops.core.health import Health

    if detach:
        with session(lab, state_dir) as s:
            report = run_apply(s, True, output)
            healths = report.health if report is not None else []
            bad = [h for h in healths if h.health in (Health.degraded, Health.missing)]
            ok = (report is None or report.ok) and not bad
            if ok and not no_git:
                _detach_loop(s, interval, listen)
            raise SystemExit(0 if ok else 1)
    if not no_git and follow_git(lab, state_dir, interval, listen):
        return
    with session(lab, state_dir) as s:
        run_apply(s, True, output)
    from blumeops.commands.watch import watch_local

    try:
        watch_local(lab, state_dir, interval, output)
    except KeyboardInterrupt:
        click.echo("\nstopping the lab", err=True)
        with session(lab, state_dir) as s:
            stop_lab(s)


def _detach_loop(s: Session, interval: float, listen: str) -> None:
    """A lab in git keeps its loop (and the API and dashboard) in the background."""
    from blumeops.commands.background import start_loop
    from blumeops.source.git import work_tree_of

    if work_tree_of(s.runtime.lab_file.resolve()) is None:
        return
    pid, answered = start_loop(s.runtime.lab_file, s.state_dir, interval, listen)
    click.echo(f"following its git branch in the background (pid {pid}); dashboard and "
               f"API: http://{listen}/; `blumeops down` stops both", err=True)
    if not answered:
        click.echo(f"warning: nothing answers on {listen} yet (address in use?); see "
                   f"{s.state_dir / 'logs' / 'up.log'}", err=True)


def follow_git(lab: Path | None, state_dir: Path | None, interval: float,
               listen: str) -> bool:
    """Run the controller loop on the lab's own repository; False if it is not in one."""
    import os

    from blumeops.catalog.paths import resolve_lab_path
    from blumeops.commands.controller import attach_notifier, parse_listen, run_until_signal
    from blumeops.engine.controller import Controller, ControllerConfig
    from blumeops.server.hosts import allowed_hosts_from_env
    from blumeops.server.serve import ApiServer, ListenError
    from blumeops.source.git import work_tree_of

    with session(lab, state_dir) as s:  # validates the working tree's catalog first
        pass
    tree = work_tree_of(resolve_lab_path(lab).resolve())
    if tree is None:
        return False
    if tree.dirty:
        click.echo(f"note: {tree.lab_path} has uncommitted changes; only commits on "
                   f"'{tree.branch}' are applied (--no-git applies the working tree)",
                   err=True)
    config = ControllerConfig(source_url=str(tree.root), branch=tree.branch,
                              lab_path=tree.lab_path, state_dir=s.state_dir,
                              interval=interval,
                              vault_dir=s.runtime.lab_file.resolve().parent)
    ctl = Controller(config, on_sync=lambda c, d, ok: click.echo(
        f"synced {c[:12]} in {d:.2f}s: {'ok' if ok else 'with errors'}", err=True))
    attach_notifier(ctl)
    server: ApiServer | None = None
    try:
        server = ApiServer(parse_listen(listen), ctl, os.environ.get("BLUMEOPS_API_TOKEN", ""),
                           os.environ.get("BLUMEOPS_WEBHOOK_SECRET", ""),
                           allowed_hosts=allowed_hosts_from_env())
        server.serve_in_thread()
    except ListenError as exc:
        click.echo(f"note: no API ({exc})", err=True)
        server = None
    click.echo(f"following {tree.root} ({tree.branch}), lab at {tree.lab_path}; "
               "Ctrl-C stops the lab", err=True)
    run_until_signal(ctl, server)
    click.echo("stopping the lab", err=True)
    live = s.state_dir / "source" / "live" / tree.lab_path
    with session(live if live.exists() else lab, state_dir) as again:
        stop_lab(again)
    return True


def stop_lab(s: Session) -> list[str]:
    """Stop every service, Caddy and supervisord; forget what was applied."""
    from blumeops.state.lock import lab_lock

    with lab_lock(s.state_dir, lambda msg: click.echo(msg, err=True)):
        return _stop_lab(s)


def _stop_lab(s: Session) -> list[str]:
    stopped: list[str] = []
    from blumeops.engine.hosts import in_parallel

    remote = [h for h in s.runtime.unique_sessions() if h.remote]
    for part in in_parallel(remote, lambda h: h.down()):
        stopped += part
    for host, reason in s.runtime.unreachable().items():
        click.echo(f"warning: host {host} not stopped: {reason}", err=True)
    sup = s.runtime.supervisor
    if sup.is_running() or sup.daemon_pid():
        stopped.extend(sup.observe())
        sup.shutdown()
    for path in [*sup.programs_dir.glob("*.conf"), *sup.secrets_dir.glob("*.env"),
                 *sup.marks_dir.glob("*")]:
        path.unlink(missing_ok=True)
    from blumeops.drivers.secret_files import remove_secret_files

    remove_secret_files(s.state_dir)
    caddy = s.runtime.caddy
    if caddy.running_pid() or caddy.is_running():
        stopped.append("caddy")
    caddy.shutdown()  # also clears a killed Caddy's pid file and socket
    from blumeops.state.store import StateError

    s.runtime.close()  # the hosts' shared SSH connections: nothing is left running
    if s.store_error is not None:
        return stopped  # `down` already said the database is unusable
    try:
        s.store.forget_many(list(s.store.resources()))
        s.store.event("stopped", f"lab stopped: {', '.join(stopped) or 'nothing was running'}")
    except StateError as exc:  # stopped all the same; say why nothing was recorded
        click.echo(f"warning: the lab is stopped, but not recorded: {exc}", err=True)
    return stopped


@click.command()
@LAB_ARGUMENT
@STATE_OPTION
@OUTPUT_OPTION
def down(lab: Path | None, state_dir: Path | None, output: str) -> None:
    """Stop every service, Caddy and supervisord, leaving no process behind."""
    from blumeops.commands.background import stop_loop

    with session(lab, state_dir, tolerate_invalid=True) as s:
        looped = stop_loop(s.state_dir)  # first: it would heal what we stop
        if looped:
            click.echo("stopped the background loop of `up --detach` (it stops the lab "
                       "as it exits)", err=True)
        if s.store_error is not None:
            click.echo(f"warning: {s.store_error}; stopping what runs anyway", err=True)
        stopped = stop_lab(s)
        unreachable = s.runtime.unreachable()
    if output == "json":
        emit_json({"stopped": stopped, "unreachable": unreachable})
    else:
        click.echo(f"Stopped: {', '.join(stopped)}" if stopped else
                   "Stopped the background loop and the lab with it." if looped else
                   "Nothing was running.")
    if unreachable:
        raise SystemExit(1)


@click.command()
@LAB_ARGUMENT
@STATE_OPTION
@click.option("--controller", "controller_url", default=None,
              help="ask a running controller instead (URL, e.g. http://127.0.0.1:7300)")
@OUTPUT_OPTION
def status(lab: Path | None, state_dir: Path | None, controller_url: str | None,
           output: str) -> None:
    """Each service's state, health, URLs and last change, and each route.

    Exit 0 only when the lab is Healthy: every route answers through the proxy and
    every service run on this machine is Healthy; 1 otherwise.
    """
    from blumeops.core.health import Health, lab_health
    from blumeops.engine.apply import final_health
    from blumeops.engine.check import route_checks

    if controller_url:
        from blumeops.commands.controller import controller_status

        controller_status(controller_url, output)
        return

    from blumeops.engine.targets import target_health

    with session(lab, state_dir) as s:
        healths = final_health(s.runtime)
        targets = target_health(s.runtime)  # clusters' Applications, the tailnet policy
        routes = route_checks(s.runtime)
        last: dict[str, str] = {}
        for event in reversed(s.store.events(limit=500)):
            if event.service:
                last[event.service] = f"{event.at[:19]} {event.kind}"
        sync = s.store.last_sync()
    applied = {h for h in s.runtime.sessions}
    judged = [h.health for h in healths if s.spec.services[h.service].host in applied
              or s.spec.services[h.service].probed_here]
    health = lab_health([*judged, *(t.health for t in targets)], [r.ok for r in routes])
    code = 0 if health is Health.healthy else 1
    if output == "json":
        emit_json({
            "lab": s.lab_name, "health": health.value,
            "last_sync": None if sync is None else {
                "revision": sync.revision, "result": sync.result, "at": sync.started_at,
                "duration_s": sync.duration_s},
            "services": [{**h.as_dict(), "last_change": last.get(h.service)} for h in healths],
            "routes": [{"route": r.name, "health": "Healthy" if r.ok else "Degraded",
                        "detail": r.detail} for r in routes],
            "targets": [t.as_dict() for t in targets],
        })
        raise SystemExit(code)
    print_health(healths, last)
    if routes:
        click.echo()
        table(["ROUTE", "HEALTH", "DETAIL"],
              [[r.name, "Healthy" if r.ok else "Degraded", r.detail[:120]] for r in routes],
              lambda col, value: HEALTH_STYLE.get(value) if col == 1 else None)
    if targets:
        click.echo()
        table(["TARGET", "NAME", "HEALTH", "DETAIL"],
              [[t.target, t.name, t.health.value, t.detail[:120]] for t in targets],
              lambda col, value: HEALTH_STYLE.get(value) if col == 2 else None)
    click.echo(f"Lab {s.lab_name}: {health.value}")
    raise SystemExit(code)


@click.command()
@LAB_ARGUMENT
@STATE_OPTION
@OUTPUT_OPTION
def check(lab: Path | None, state_dir: Path | None, output: str) -> None:
    """Probe every route through Caddy and every service directly."""
    from blumeops.engine.check import run_checks

    with session(lab, state_dir) as s:
        results = run_checks(s.runtime)
    failed = [r for r in results if not r.ok]
    if output == "json":
        emit_json({"ok": not failed, "checks": [r.as_dict() for r in results]})
    else:
        for r in results:
            say(f"{'ok  ' if r.ok else 'FAIL'} {r.kind:<7} {r.name:<40} {r.detail}",
                None if r.ok else "red")
        say(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    raise SystemExit(1 if failed else 0)
