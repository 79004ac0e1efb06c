"""One command's lab session (its runtime and state store), and how commands print a
plan, health and progress: shared by `plan`/`apply`/`up`, `watch`, `deliver` and the
controller's commands."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from blumeops.commands.catalog import load_or_exit
from blumeops.output import emit_json, say, table

if TYPE_CHECKING:
    from blumeops.state.store import Store

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.


STATE_OPTION = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=None,
    help="state directory (default: $BLUMEOPS_STATE_DIR or ~/.local/state/blumeops/LAB)",
)


YES_OPTION = click.option("--yes", "-y", is_flag=True, help="apply without asking")


HEALTH_STYLE = {"Healthy": "green", "Progressing": "yellow", "Degraded": "red",
                "Missing": "red", "Unknown": "dim"}


class Session:
    """A lab's runtime and state store, for one command.

    The runtime spec comes from the catalog cache when no catalog file changed, so a
    no-op apply neither parses nor validates nor renders (see lab/cache.py).
    """

    def __init__(self, lab_arg: Path | None, state_dir: Path | None,
                 tolerate_invalid: bool = False) -> None:
        from blumeops.catalog.paths import resolve_lab_path
        from blumeops.engine.local import LocalRuntime
        from blumeops.engine.paths import state_dir as default_state_dir
        from blumeops.lab import cache
        from blumeops.state.dirs import private_dir
        from blumeops.state.store import StateError, Store

        path = resolve_lab_path(lab_arg)
        kind = f"runtime:{path.name}"
        spec = cache.lookup(kind, path)
        if spec is None and tolerate_invalid:
            spec = _spec_or_bare(path)
        if spec is None:
            from blumeops.engine.spec import runtime_spec

            result = load_or_exit(path)
            spec = runtime_spec(result.lab, result.path.name, result.files)
            cache.store(kind, path, result.files, spec)
        self.spec = spec
        self.lab_name: str = spec.lab
        self.state_dir = private_dir(default_state_dir(self.lab_name, state_dir))
        self.runtime = LocalRuntime(spec, path, self.state_dir)
        # `down` goes on without a usable database (tolerate_invalid): what to stop is
        # found from the supervisor's socket and the pid files, not from the database.
        self._store: Store | None = None
        self.store_error: StateError | None = None
        try:
            self._store = Store(self.state_dir)
        except StateError as exc:
            if not tolerate_invalid:
                raise
            self.store_error = exc

    @property
    def store(self) -> Store:
        """The state database; raises the StateError if it could not open."""
        if self._store is None:
            assert self.store_error is not None
            raise self.store_error
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _spec_or_bare(path: Path) -> Any:
    """The spec of a valid catalog, or a bare one naming only the lab, so `down` still
    stops a running lab whose catalog was since broken."""
    from blumeops.core.spec import RuntimeSpec
    from blumeops.engine.spec import runtime_spec
    from blumeops.lab.loader import load_lab

    result = load_lab(path)
    if result.lab is not None:
        return runtime_spec(result.lab, result.path.name, result.files)
    name = path.parent.name or "lab"
    try:
        import yaml

        raw = yaml.safe_load(path.read_text())
        if isinstance(raw, dict) and isinstance(raw.get("lab"), str):
            name = raw["lab"]
    except (OSError, ValueError, yaml.YAMLError):
        pass
    click.echo(f"warning: {path} has errors; stopping what runs for lab '{name}' anyway",
               err=True)
    return RuntimeSpec(name, (), None, (), {}, (), (), ())


@contextmanager
def session(lab: Path | None, state_dir: Path | None,
            tolerate_invalid: bool = False) -> Iterator[Session]:
    """Open a session; turn driver and secret errors into a message and exit code 1."""
    from blumeops.drivers.process import DriverError
    from blumeops.secrets.errors import SecretError
    from blumeops.state.store import StateError

    try:
        s = Session(lab, state_dir, tolerate_invalid)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"error: cannot use the state directory{where}: {exc.strerror or exc}",
                   err=True)
        raise SystemExit(1) from None
    except StateError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    try:
        yield s
    except (DriverError, SecretError, StateError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    finally:
        s.close()


def print_plan(plan: Any, notes: list[str]) -> None:
    for note in notes:
        say(f"note: {note}", "dim")
    marks = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}
    for change in plan.pending:
        mark, style = marks[change.action]
        reasons = f"  ({'; '.join(change.reasons)})" if change.reasons else ""
        say(f"{mark} {change.action:<6} {change.id}{reasons}", style)
        for line in change.diff.splitlines()[2:]:
            colour = "green" if line.startswith("+") else "red" if line.startswith("-") \
                else "dim"
            say(f"    {line}", colour)
    c = plan.counts()
    if plan.has_changes:
        say(f"Plan: {c['create']} to create, {c['update']} to update, "
            f"{c['delete']} to delete, {c['unchanged']} unchanged.")
    else:
        say(f"No changes: {c['unchanged']} resources match the catalog.")


def print_health(healths: list[Any], last_change: dict[str, str] | None = None) -> None:
    headers = ["SERVICE", "HEALTH", "HOST", "STATE", "URL", "DETAIL"]
    jobs = any(getattr(h, "job", None) is not None for h in healths)
    if jobs:
        headers += ["LAST RUN", "NEXT RUN", "EXIT"]
    if last_change is not None:
        headers.append("LAST CHANGE")
    rows = []
    for h in healths:
        row = [h.service, h.health.value, getattr(h, "host", "") or "-", h.state or "-",
               "\n".join(h.urls) or "-", h.detail[:120]]
        if jobs:
            row += job_columns(getattr(h, "job", None))
        if last_change is not None:
            row.append(last_change.get(h.service, "-"))
        rows.append(row)
    table(headers, rows, lambda col, value: HEALTH_STYLE.get(value) if col == 1 else None)


def job_columns(job: Any) -> list[str]:
    """LAST RUN, NEXT RUN and EXIT of a scheduled job ('-' for other services)."""
    if job is None:
        return ["-", "-", "-"]
    code = "running" if job.running else "-" if job.exit_code is None else str(job.exit_code)
    return [(job.last_run or "never")[:19], (job.next_run or "-")[:19], code]


def progress_printer(output: str) -> Callable[[str, str], None]:
    def say(who: str, message: str) -> None:
        if output == "text":
            click.echo(f"  {who}: {message}", err=True)

    return say


def run_apply(s: Session, yes: bool, output: str, wait: float = 30.0) -> Any:
    """Plan, confirm, apply and report; shared by `apply` and `up`."""
    from blumeops.engine.apply import apply as do_apply
    from blumeops.engine.apply import final_health, prepare

    prepared = prepare(s.runtime, s.store)
    if output == "text":
        print_plan(prepared.plan, s.runtime.notes())
    if not prepared.plan.has_changes and not prepared.errors and not s.runtime.unreachable():
        healths = final_health(s.runtime)
        if output == "json":
            emit_json({"ok": True, "plan": prepared.plan.as_dict(), "applied": [],
                       "failed": {}, "services": [h.as_dict() for h in healths]})
        else:
            print_health(healths)
        return None
    if prepared.plan.has_changes and not yes:
        if not sys.stdin.isatty():
            click.echo("error: refusing to apply without --yes (stdin is not a terminal)",
                       err=True)
            raise SystemExit(1)
        if not click.confirm("Apply these changes?", default=False):
            click.echo("Nothing applied.", err=True)
            raise SystemExit(1)
    shown = set(s.runtime.notes())
    report = do_apply(s.runtime, prepared, s.store, progress_printer(output), wait=wait)
    report.health = final_health(s.runtime)
    if output == "json":
        emit_json(report.as_dict())
    else:
        for note in s.runtime.notes():  # what drivers said while applying (a deploy commit)
            if note not in shown:
                say(f"note: {note}", "dim")
        print_health(report.health)
        if report.failed:
            for who, error in report.failed.items():
                click.echo(f"failed: {who}: {error}", err=True)
        click.echo(f"Applied {len(report.applied)} changes in {report.duration:.2f}s"
                   + (f"; {len(report.failed)} failed" if report.failed else "."), err=True)
    return report
