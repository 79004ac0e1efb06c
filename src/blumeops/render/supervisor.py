"""supervisord programs, in the exact format of docs/contracts.md ("Supervisor programs").

Machine-dependent paths are supervisord expansions of variables blumeops sets when it
starts supervisord, so the same catalog renders the same bytes on every machine. Every
literal `%` is doubled, because supervisord expands `%(...)s` in all values.
"""

from __future__ import annotations

import shlex

from blumeops.catalog.model import Service
from blumeops.engine.resources import Resource
from blumeops.render import RenderContext
from blumeops.render.native import one_line, secret_refs

STATE = "%(ENV_BLUMEOPS_STATE_DIR)s"
LAB = "%(ENV_BLUMEOPS_LAB_DIR)s"
PYTHON = "%(ENV_BLUMEOPS_PYTHON)s"


def esc(value: str) -> str:
    """Escape a literal for supervisord's %-expansion."""
    return value.replace("%", "%%")


def _path(value: str, quote: bool = False) -> str:
    """Relative paths resolve against the lab dir; absolute ones stay as they are.

    `command=` is shell-split by supervisord (quote=True); `directory=` is taken literally.
    """
    literal = shlex.quote(esc(value)) if quote else esc(value)
    if value.startswith("/"):
        return literal
    return f"{LAB}/{literal}" if value not in ("", ".") else LAB


def command_line(name: str, svc: Service) -> str:
    """The `command=` value: shell-quoted argv, wrapped for secrets when there are any."""
    argv = list(svc.command or [])
    parts = [shlex.quote(esc(a)) for a in argv]
    if argv and "/" in argv[0] and not argv[0].startswith("/"):
        # supervisord resolves a relative program path against its own cwd, not
        # `directory`: anchor it at the lab dir.
        parts[0] = _path(argv[0], quote=True)
    if svc.secrets:
        env_file = f"{STATE}/secrets/{shlex.quote(esc(name))}.env"
        parts = [PYTHON, "-m", "blumeops.secrets.exec", env_file, "--", *parts]
    return " ".join(parts)


def env_value(value: str) -> str:
    """One double-quoted value for `environment=` (supervisord parses it with shlex)."""
    return '"' + esc(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    if svc.environment:
        lines.append("environment=" + ",".join(
            f"{k}={env_value(v)}" for k, v in sorted(svc.environment.items())))
    lines += [
        "autostart=true",
        "autorestart=true",
        f"startsecs={svc.startsecs}",
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
