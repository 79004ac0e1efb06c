"""systemd units for Linux hosts (rendered for review; `systemd-analyze verify` clean).

Paths use systemd's own specifiers (`%S` is /var/lib for system units), so units are
machine-independent like supervisor programs. systemd expands `%` specifiers and `$VAR`
in ExecStart, so literals are escaped for both.
"""

from __future__ import annotations

import re

from blumeops.catalog.model import Lab, Service
from blumeops.catalog.resolve import systemd_unit
from blumeops.engine.resources import Resource
from blumeops.render import RenderContext
from blumeops.render.native import one_line, secret_refs

STATE_DIR = "%S/blumeops"
LAB_DIR = f"{STATE_DIR}/lab"  # relative commands and workdirs resolve here
SECRETS_DIR = f"{STATE_DIR}/secrets"
SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def unit_name(service: str, svc: Service | None = None) -> str:
    """The unit's name: the one the service declares (`names.systemd`, kept from an
    existing unit), else blumeops-NAME.service."""
    return systemd_unit(service, svc)


def spec(value: str) -> str:
    """Escape a literal for systemd's specifier expansion."""
    return value.replace("%", "%%")


def quote_arg(arg: str, prefix: str = "") -> str:
    """One ExecStart word: bare when safe, else double-quoted with C-style escapes.

    `prefix` is already in systemd syntax (e.g. a `%S` path) and is not escaped.
    """
    literal = prefix + spec(arg).replace("$", "$$")
    if literal and SAFE.match(literal):
        return literal
    escaped = (literal.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\t", "\\t"))
    return f'"{escaped}"'


def _resolve(path: str) -> str:
    """A WorkingDirectory= value: specifiers escaped, and a trailing '/' when the path
    ends in a backslash (systemd would join the next line) or whitespace (stripped)."""
    full = spec(path) if path.startswith("/") else f"{LAB_DIR}/{spec(path)}"
    return full + "/" if full[-1:] == "\\" or full[-1:].isspace() else full


def exec_start(name: str, svc: Service) -> str:
    argv = list(svc.command or [])
    words = [quote_arg(a) for a in argv]
    if argv and "/" in argv[0] and not argv[0].startswith("/"):
        words[0] = quote_arg(argv[0], prefix=f"{LAB_DIR}/")
    return " ".join(words)


def env_file(name: str) -> str:
    """Where a service's secret values wait for systemd (KEY="value" lines, 0600, written
    at apply over the transport): systemd reads it, so the host needs no blumeops."""
    return f"{SECRETS_DIR}/{spec(name)}.env"


def env_assignment(key: str, value: str) -> str:
    text = spec(f"{key}={value}").replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{text}"'


def unit_text(name: str, svc: Service, ctx: RenderContext, lab: Lab | None = None) -> str:
    """`lab` gives the units of the services this one depends on their declared names."""
    others = lab.services if lab is not None else {}
    deps = " ".join(unit_name(d, others.get(d)) for d in svc.depends_on)
    after = "network-online.target" + (f" {deps}" if deps else "")
    lines = [
        ctx.header("#").rstrip("\n"),
        "[Unit]",
        f"Description={spec(one_line(svc.description) or name)} (blumeops)",
        f"After={after}",
        f"Wants={after}",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start(name, svc)}",
        f"WorkingDirectory={_resolve(svc.workdir) if svc.workdir else LAB_DIR}",
    ]
    lines += [env_assignment(k, v) for k, v in sorted(svc.environment.items())]
    if svc.secrets:
        lines.append("# secrets (values delivered at apply, never here): "
                     + ", ".join(sorted(svc.secrets)))
        lines.append(f"EnvironmentFile={env_file(name)}")
    lines += [
        "Restart=on-failure",
        "RestartSec=1",
        "KillMode=control-group",
        "",
        "[Install]",
        # default.target: the only one a user manager (systemctl --user) has.
        "WantedBy=multi-user.target default.target",
    ]
    return "\n".join(lines) + "\n"


def unit(name: str, svc: Service, host: str, ctx: RenderContext,
         lab: Lab | None = None) -> Resource:
    return Resource(f"systemd@{host}", "unit", name, unit_text(name, svc, ctx, lab),
                    f"native/{host}/systemd/{unit_name(name, svc)}", service=name,
                    depends_on=tuple(svc.depends_on), secret_refs=secret_refs(svc))
