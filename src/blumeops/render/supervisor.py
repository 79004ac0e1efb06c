"""supervisord programs, in the exact format of docs/contracts.md ("Supervisor programs").

Machine-dependent paths are supervisord expansions of variables blumeops sets when it
starts supervisord, so the same catalog renders the same bytes on every machine. Every
literal goes through `esc`, because supervisord's config reader changes values three
ways: `%(...)s` expansion, a textual `%(here)s` replacement done before it (even inside
`%%(here)s`), and inline comments (`;` or `#` after whitespace end the value) plus
stripping of surrounding whitespace. Control characters never get here (`validate`).
"""

from __future__ import annotations

import re
import shlex

from blumeops.catalog.model import Service
from blumeops.core.resources import Resource
from blumeops.core.schedule import SCHEDULER, parse_duration
from blumeops.render import RenderContext
from blumeops.render.unitfields import one_line, secret_refs

STATE = "%(ENV_BLUMEOPS_STATE_DIR)s"
LAB = "%(ENV_BLUMEOPS_LAB_DIR)s"
PYTHON = "%(ENV_BLUMEOPS_PYTHON)s"
QUOTES = "'\""
# Expands to nothing; put between characters supervisord would otherwise read specially.
NOTHING = "%(program_name).0s"
_COMMENT = re.compile(r"(?<=\s)(?=[;#])")


def esc(value: str) -> str:
    """A literal as supervisord must see it to hand the process exactly `value`."""
    out = value.replace("%", "%%").replace("%%(here)s", f"%%{NOTHING}(here)s")
    out = _COMMENT.sub(NOTHING, out)
    return out + NOTHING if out[-1:].isspace() else out


def _path(value: str, quote: bool = False) -> str:
    """Relative paths resolve against the lab dir; absolute ones stay as they are.

    `command=` is shell-split by supervisord after expansion (quote=True): the whole word,
    expansion included, is single-quoted so a lab dir with spaces stays one argument.
    `directory=` is taken literally.
    """
    full = esc(value) if value.startswith("/") else (
        f"{LAB}/{esc(value)}" if value not in ("", ".") else LAB)
    return _sq(full) if quote else full


def _sq(word: str) -> str:
    """Single-quote a word that may hold `%(...)s` expansions (shlex.quote would too)."""
    return shlex.quote(word)


def command_line(name: str, svc: Service) -> str:
    """The `command=` value: shell-quoted argv, wrapped for secrets when there are any.

    Environment values `environment=` cannot hold go through `env NAME=VALUE` instead.
    """
    argv = list(svc.command or [])
    parts = [shlex.quote(esc(a)) for a in argv]
    if argv and "/" in argv[0] and not argv[0].startswith("/"):
        # supervisord resolves a relative program path against its own cwd, not
        # `directory`: anchor it at the lab dir.
        parts[0] = _path(argv[0], quote=True)
    awkward = [f"{k}={v}" for k, v in sorted(svc.environment.items()) if env_value(v) is None]
    if awkward:
        parts = ["env", *(shlex.quote(esc(a)) for a in awkward), *parts]
    if svc.secrets:
        # Quoted as whole words: the state dir or Python path may contain spaces.
        env_file = _sq(f"{STATE}/secrets/{esc(name)}.env")
        parts = [_sq(PYTHON), "-m", "blumeops.secrets.exec", env_file, "--", *parts]
    return " ".join(parts)


def env_value(value: str) -> str | None:
    """One quoted value for `environment=`, or None when that syntax cannot hold it.

    supervisord splits `environment=` with a non-POSIX shlex: no escapes, quotes end at
    the next quote of the same kind, and leading/trailing quote characters are stripped.
    So a value is wrapped in whichever quote it does not contain; values with both kinds,
    or a quote at either end cannot be written there.
    """
    if value and (value[0] in QUOTES or value[-1] in QUOTES):
        return None
    for quote in ('"', "'"):
        if quote not in value:
            return f"{quote}{esc(value)}{quote}"
    return None


def program_text(name: str, svc: Service, ctx: RenderContext) -> str:
    lines = [ctx.header(";").rstrip("\n")]
    if svc.description:
        lines.append(f"; {one_line(svc.description)}")
    if svc.secrets:
        lines.append("; secrets (values delivered at apply, never here): "
                     + ", ".join(sorted(svc.secrets)))
    lines += [
        f"[program:{name}]",
        f"command={command_line(name, svc)}",
        f"directory={_path(svc.workdir) if svc.workdir else LAB}",
    ]
    plain = [f"{k}={q}" for k, v in sorted(svc.environment.items())
             if (q := env_value(v)) is not None]
    if plain:
        lines.append("environment=" + ",".join(plain))
    if svc.schedule is not None:
        # A job: supervisord keeps it stopped; blumeops-scheduler starts it at its times.
        lines += [
            f"; job: {schedule_words(svc)} (started by {SCHEDULER})",
            "autostart=false",
            "autorestart=false",
            "startsecs=0",
        ]
    else:
        lines += [
            "autostart=true",
            "autorestart=true",
            f"startsecs={svc.startsecs}",
        ]
    lines += [
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={STATE}/logs/{esc(name)}.log",
    ]
    return "\n".join(lines) + "\n"


def program(name: str, svc: Service, host: str, ctx: RenderContext) -> Resource:
    return Resource(
        f"supervisor@{host}", "program", name, program_text(name, svc, ctx),
        f"native/{host}/supervisor/{name}.conf", service=name,
        depends_on=tuple(svc.depends_on), secret_refs=secret_refs(svc),
    )


def schedule_words(svc: Service) -> str:
    """The schedule as one readable phrase: 'cron 15 3 * * *' or 'every 1h'."""
    assert svc.schedule is not None
    return (f"cron {svc.schedule.cron}" if svc.schedule.cron is not None
            else f"every {svc.schedule.every}")


def job_table(jobs: dict[str, Service]) -> str:
    """The scheduler's job table: JSON, one entry per job, sorted (scheduler.py reads it)."""
    import json


    table = []
    for name, svc in sorted(jobs.items()):
        assert svc.schedule is not None
        row: dict[str, object] = {"name": name}
        if svc.schedule.cron is not None:
            row["cron"] = svc.schedule.cron
        else:
            row["every"] = svc.schedule.every_seconds
        if svc.schedule.timeout is not None:
            row["timeout"] = parse_duration(svc.schedule.timeout)
        table.append(row)
    return json.dumps(table, separators=(",", ":"), sort_keys=True)


def scheduler_program(host: str, jobs: dict[str, Service], ctx: RenderContext) -> Resource:
    """supervisord has no scheduler: this program is one (`python -m blumeops.scheduler`).

    The job table is its argument, so a changed table is a changed program that the plan
    shows and apply restarts; runs are recorded in STATE/jobs/state.json.
    """
    lines = [
        ctx.header(";").rstrip("\n"),
        "; Runs the jobs of this host at their times: " + ", ".join(
            f"{name} ({schedule_words(svc)})" for name, svc in sorted(jobs.items())),
        f"[program:{SCHEDULER}]",
        f"command={_sq(PYTHON)} -m blumeops.scheduler --state-dir {_sq(STATE)} "
        f"--table {shlex.quote(esc(job_table(jobs)))}",
        f"directory={LAB}",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={STATE}/logs/{SCHEDULER}.log",
    ]
    return Resource(f"supervisor@{host}", "program", SCHEDULER, "\n".join(lines) + "\n",
                    f"native/{host}/supervisor/{SCHEDULER}.conf", service=SCHEDULER,
                    meta={"scheduler": "true"})
