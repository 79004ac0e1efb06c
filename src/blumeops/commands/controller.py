"""`blumeops controller` (follow a git repository) and the commands that talk to one:
`history`, `sync`, `rollback`, `resume`, and `status --controller`."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import click

from blumeops.output import OUTPUT_OPTION, emit_json, fail, say

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.

CONTROLLER_OPTION = click.option(
    "--controller", "controller_url", default="http://127.0.0.1:7300", show_default=True,
    envvar="BLUMEOPS_CONTROLLER", help="URL of a running controller")


def parse_listen(listen: str) -> tuple[str, int]:
    """--listen HOST:PORT as (IP, port); a clear error and exit 1 if it is not one."""
    from blumeops.server.hosts import AddressError
    from blumeops.server.hosts import parse_listen as parse

    try:
        return parse(listen)
    except AddressError as exc:
        fail(f"--listen: {exc}")
        raise  # unreachable: fail exits


@click.command()
@click.option("--source", required=True,
              help="git repository: a local path or a URL (file://, ssh://, https://); an "
                   "https password goes in $BLUMEOPS_SOURCE_PASSWORD, not here")
@click.option("--branch", default="main", show_default=True)
@click.option("--lab-path", default=".", show_default=True,
              help="the lab's path inside the repository (a directory or a lab.yaml)")
@click.option("--listen", default="127.0.0.1:7300", show_default=True,
              help="address of the HTTP API, webhooks and /metrics")
@click.option("--interval", type=float, default=60.0, show_default=True,
              help="seconds between fetches (with jitter); webhooks wake it at once")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="state directory (default: $BLUMEOPS_STATE_DIR or "
                   "~/.local/state/blumeops/controller-BRANCH)")
@click.option("--no-auto-sync", is_flag=True, help="fetch and report, but sync only on request")
@click.option("--no-self-heal", is_flag=True, help="report drift between commits, do not fix it")
@click.option("--no-prune", is_flag=True, help="never remove what the catalog dropped")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME[:PORT]",
              help="a Host name the API answers to besides its listen address (repeatable; "
                   "also $BLUMEOPS_ALLOWED_HOSTS, comma-separated): the name your forge, "
                   "proxy or tailnet uses to reach it")
def controller(source: str, branch: str, lab_path: str, listen: str, interval: float,
               state_dir: Path | None, no_auto_sync: bool, no_self_heal: bool,
               no_prune: bool, allowed_hosts: tuple[str, ...]) -> None:
    """Follow a git branch: sync each new commit, heal drift, serve the API.

    Secrets: BLUMEOPS_API_TOKEN guards the changing endpoints; BLUMEOPS_WEBHOOK_SECRET
    verifies forge webhooks (POST /api/webhook); BLUMEOPS_SOURCE_PASSWORD is the https
    password of --source (a URL with a user name), given to git by a credential helper.
    """
    from blumeops.engine.controller import Controller, ControllerConfig
    from blumeops.engine.paths import state_dir as default_state_dir
    from blumeops.server.auth import exposure_problem
    from blumeops.server.hosts import AddressError, allowed_hosts_from_env, host_rules
    from blumeops.server.serve import ApiServer, ListenError, format_address
    from blumeops.source.git import SOURCE_PASSWORD_ENV, SourceError, redact, with_password
    from blumeops.state.store import StateError

    if interval <= 0:
        raise click.BadParameter("must be positive", param_hint="--interval")
    address = parse_listen(listen)
    token = os.environ.get("BLUMEOPS_API_TOKEN", "")
    secret = os.environ.get("BLUMEOPS_WEBHOOK_SECRET", "")
    problem = exposure_problem(address[0], token)
    if problem:
        fail(problem)
    hosts = [*allowed_hosts, *allowed_hosts_from_env()]
    try:
        host_rules(address, hosts)
    except AddressError as exc:
        fail(str(exc))
    password = os.environ.pop(SOURCE_PASSWORD_ENV, "")  # not for child processes
    if password:
        try:
            source = with_password(source, password)
        except SourceError as exc:
            fail(str(exc))
    elif redact(source) != source:
        click.echo(f"note: the password in --source is on this command line, which every "
                   f"local user can read; put it in {SOURCE_PASSWORD_ENV} instead", err=True)
    config = ControllerConfig(
        source_url=source, branch=branch, lab_path=lab_path,
        state_dir=default_state_dir(f"controller-{branch}", state_dir), interval=interval,
        auto_sync=not no_auto_sync, self_heal=not no_self_heal, prune=not no_prune)
    try:
        ctl = Controller(config, on_sync=_print_sync)
    except StateError as exc:  # corrupt or unusable state.db: say what to do, no traceback
        fail(str(exc))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"cannot use the state directory{where}: {exc.strerror or exc}")
    attach_notifier(ctl)
    try:
        ctl.source.fetch()
    except SourceError as exc:
        fail(str(exc))
    try:
        server = ApiServer(address, ctl, token, secret, allowed_hosts=hosts)
        server.serve_in_thread()
    except ListenError as exc:
        fail(str(exc))
    click.echo(f"blumeops controller: following {ctl.source.shown_url} ({branch}, "
               f"lab at {lab_path}); API on http://{format_address(*address)}", err=True)
    if not secret:
        click.echo("note: BLUMEOPS_WEBHOOK_SECRET is not set; webhooks are refused (503)",
                   err=True)
    run_until_signal(ctl, server)
    click.echo("controller stopped (the lab keeps running)", err=True)


def attach_notifier(ctl: Any) -> None:
    """Notices of the catalog's notify: section, sent on their own thread."""
    from blumeops.notify.hub import attach

    attach(ctl)


def run_until_signal(ctl: Any, server: Any) -> None:
    """Run the controller loop until SIGTERM or Ctrl-C, then stop it and its server."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ctl.start()
    # Wake up now and then: the kernel may deliver the signal to another thread, and
    # Python runs its handler only when the main thread next runs bytecode.
    while not stop.wait(0.5):
        pass
    if server is not None:
        server.shutdown()
    ctl.stop()


def _print_sync(commit: str, duration: float, ok: bool) -> None:
    click.echo(f"synced {commit[:12]} in {duration:.2f}s: {'ok' if ok else 'with errors'}",
               err=True)


# -- client side ------------------------------------------------------------------------


def call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One API call; a clear error and exit 1 for any failure."""
    import httpx

    headers = {}
    token = os.environ.get("BLUMEOPS_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers,
                             timeout=30)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the controller at {url}: {exc}")
    try:
        data = resp.json()
    except ValueError:
        data = {"error": resp.text.strip()[:200]}
    if resp.status_code >= 400:
        fail(f"controller answered {resp.status_code}: {data.get('error', data)}")
    return data


def controller_status(url: str, output: str) -> None:
    data = call(url, "GET", "/api/status")
    if output == "json":
        emit_json(data)
        return
    applied = (data.get("applied") or "none")[:12]
    newest = (data.get("newest") or "unknown")[:12]
    say(f"source  {data['source']['url']} ({data['source']['branch']})")
    say(f"applied {applied}   newest {newest}   "
        f"{'in sync' if data['in_sync'] else 'OUT OF SYNC'}   state {data['sync_state']}"
        f"{'   auto-sync PAUSED' if data.get('paused') else ''}")
    say(f"health  {data['health']}")
    from blumeops.commands.session import print_health
    from blumeops.core.health import Health, ServiceHealth

    print_health([ServiceHealth(s["service"], Health(s["health"]), s["detail"], s["state"],
                                s["pid"], tuple(s["urls"])) for s in data["services"]])
    if data.get("targets"):
        from blumeops.output import table

        table(["TARGET", "NAME", "HEALTH", "DETAIL"],
              [[t["target"], t["name"], t["health"], t["detail"][:120]]
               for t in data["targets"]])
    for err in data.get("last_errors", []):
        where = f"{err['file']}:{err['line']}:{err['col']}: " if "file" in err else ""
        commit = f"{err['commit'][:12]} " if err.get("commit") else ""
        say(f"error {commit}{where}{err['message']}", "red")


@click.command()
@CONTROLLER_OPTION
@click.option("--limit", type=int, default=20, show_default=True)
@OUTPUT_OPTION
def history(controller_url: str, limit: int, output: str) -> None:
    """Syncs a controller ran: commit, author, time, duration, result, changes."""
    data = call(controller_url, "GET", f"/api/history?limit={limit}")
    if output == "json":
        emit_json(data)
        return
    for s in data["syncs"]:
        counts = s.get("changes") or {}
        changed = ", ".join(f"{counts[k]} {k}" for k in ("create", "update", "delete")
                            if counts.get(k))
        dur = f"{s['duration_s']:.2f}s" if s.get("duration_s") is not None else "-"
        say(f"{s['started_at'][:19]}  {(s['commit'] or '')[:12]}  {s['result']:<11} "
            f"{dur:>7}  {s.get('author') or '-'}: {s.get('message') or ''}"
            + (f"  [{changed}]" if changed else ""))


@click.command()
@CONTROLLER_OPTION
@click.option("--revision", default=None, help="a commit or ref (default: the newest)")
@OUTPUT_OPTION
def sync(controller_url: str, revision: str | None, output: str) -> None:
    """Ask a controller to sync now (needs BLUMEOPS_API_TOKEN)."""
    data = call(controller_url, "POST", "/api/sync",
                {"revision": revision} if revision else {})
    emit_json(data) if output == "json" else click.echo(f"syncing {data['syncing'][:12]}")


@click.command()
@click.argument("commit")
@CONTROLLER_OPTION
@OUTPUT_OPTION
def rollback(commit: str, controller_url: str, output: str) -> None:
    """Roll back to an earlier COMMIT and pause auto-sync (resume with `blumeops resume`)."""
    data = call(controller_url, "POST", "/api/rollback", {"revision": commit})
    if output == "json":
        emit_json(data)
    else:
        click.echo(f"rolling back to {data['rolling_back_to'][:12]}; auto-sync paused "
                   "(`blumeops resume` to follow the branch again)")


@click.command()
@CONTROLLER_OPTION
def resume(controller_url: str) -> None:
    """Resume auto-sync after a rollback."""
    call(controller_url, "POST", "/api/resume")
    click.echo("auto-sync resumed")
