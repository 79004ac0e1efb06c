"""systemd units for Linux hosts (rendered for review; `systemd-analyze verify` clean).

Paths use systemd's own specifiers (`%S` is /var/lib for system units), so units are
machine-independent like supervisor programs. systemd expands `%` specifiers and `$VAR`
in ExecStart, so literals are escaped for both.
"""

from __future__ import annotations

import re

from blumeops.catalog.model import Lab, Service
from blumeops.catalog.resolve import systemd_unit
from blumeops.core import schedule as cs
from blumeops.core.resources import Resource
from blumeops.core.schedule import parse_duration
from blumeops.render import RenderContext
from blumeops.render.unitfields import one_line, secret_refs

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
    job = svc.schedule is not None
    lines = [
        ctx.header("#").rstrip("\n"),
        "[Unit]",
        f"Description={spec(one_line(svc.description) or name)} (blumeops)",
        f"After={after}",
        f"Wants={after}",
        "",
        "[Service]",
        # A job runs to its end when its timer starts it.
        "Type=oneshot" if job else "Type=simple",
        f"ExecStart={exec_start(name, svc)}",
        f"WorkingDirectory={_resolve(svc.workdir) if svc.workdir else LAB_DIR}",
    ]
    lines += [env_assignment(k, v) for k, v in sorted(svc.environment.items())]
    if svc.secrets:
        lines.append("# secrets (values delivered at apply, never here): "
                     + ", ".join(sorted(svc.secrets)))
        lines.append(f"EnvironmentFile={env_file(name)}")
    if job:
        # No [Install]: its timer (blumeops-NAME.timer) is what is enabled.
        lines.append("KillMode=control-group")
        if svc.schedule is not None and svc.schedule.timeout is not None:
            # A oneshot's run is its start: past this, systemd stops it, Result=timeout.
            lines.append(f"TimeoutStartSec={parse_duration(svc.schedule.timeout)}")
        return "\n".join(lines) + "\n"
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


_DOW = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def _values(values: frozenset[int], full: frozenset[int], width: int = 2) -> str:
    return "*" if values == full else ",".join(f"{v:0{width}d}" for v in sorted(values))


def on_calendar(expression: str) -> list[str]:
    """A cron expression as OnCalendar= values (several are a union, like cron's
    day-of-month OR day-of-week)."""
    cron = cs.parse_cron(expression)
    time = f"{_values(cron.hours, cs.ALL_HOURS)}:{_values(cron.minutes, cs.ALL_MINUTES)}:00"
    month = _values(cron.months, cs.ALL_MONTHS)
    days = _values(cron.days, cs.ALL_DAYS)
    weekdays = ",".join(_DOW[d] for d in sorted(cron.weekdays))
    by_weekday = f"{weekdays} *-{month}-* {time}"
    if cron.day_or:
        return [by_weekday, f"*-{month}-{days} {time}"]
    if cron.weekdays != cs.ALL_WEEKDAYS:
        return [by_weekday]
    return [f"*-{month}-{days} {time}"]


def timer_name(service: str, svc: Service | None = None) -> str:
    """The job's timer: its service unit's name with .timer."""
    return unit_name(service, svc).removesuffix(".service") + ".timer"


def timer_text(name: str, svc: Service, ctx: RenderContext) -> str:
    """The timer that starts a job's oneshot service at its times."""
    assert svc.schedule is not None
    lines = [
        ctx.header("#").rstrip("\n"),
        "[Unit]",
        f"Description=Schedule of {spec(one_line(svc.description) or name)} (blumeops)",
        "",
        "[Timer]",
    ]
    every = svc.schedule.every_seconds
    if every is not None:
        lines += [f"OnActiveSec={every}s", f"OnUnitActiveSec={every}s"]
    else:
        lines += [f"OnCalendar={when}" for when in on_calendar(svc.schedule.cron or "")]
        lines.append("Persistent=true")  # a run missed while the host was off runs at boot
    lines += [
        "AccuracySec=1s",
        f"Unit={unit_name(name, svc)}",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return "\n".join(lines) + "\n"


def timer(name: str, svc: Service, host: str, ctx: RenderContext) -> Resource:
    return Resource(f"systemd@{host}", "timer", name, timer_text(name, svc, ctx),
                    f"native/{host}/systemd/{timer_name(name, svc)}", service=name)


def unit(name: str, svc: Service, host: str, ctx: RenderContext,
         lab: Lab | None = None) -> Resource:
    return Resource(f"systemd@{host}", "unit", name, unit_text(name, svc, ctx, lab),
                    f"native/{host}/systemd/{unit_name(name, svc)}", service=name,
                    depends_on=tuple(svc.depends_on), secret_refs=secret_refs(svc))
