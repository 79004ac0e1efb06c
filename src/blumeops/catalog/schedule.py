"""Schedules of jobs: cron expressions and intervals, checked once and read by every target.

A job runs on a five-field cron expression (minute hour day-of-month month day-of-week,
in the local time of the host it runs on; `@hourly`, `@daily`, `@weekly`, `@monthly`,
`@yearly` are accepted) or at an interval (`every: 90s`, `5m`, `1h`, `1d`, `1w`). The
cron dialect is the one every target understands: lists, ranges, steps and names; not
the `L`, `W`, `#` or `?` extensions some crons add, because launchd, systemd and
Kubernetes cannot all say them. Parsing is cronsim's (PyPI `cronsim`); this module turns
its result into the field sets the renderers write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

SCHEDULER = "blumeops-scheduler"  # the supervisord program that runs a host's jobs
DURATION = re.compile(r"^([1-9][0-9]{0,6})(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
          "@annually": "0 0 1 1 *"}
ALL_MINUTES = frozenset(range(60))
ALL_HOURS = frozenset(range(24))
ALL_DAYS = frozenset(range(1, 32))
ALL_MONTHS = frozenset(range(1, 13))
ALL_WEEKDAYS = frozenset(range(7))  # 0 = Sunday (cron's 7 is folded into 0)


def parse_duration(text: str) -> int:
    """Seconds in a duration such as 90s, 5m, 1h, 1d or 1w; ValueError otherwise."""
    match = DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 30s, 5m, 1h, 1d or 1w, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Cron:
    """A cron expression as sets of the values each field allows.

    `day_or` is cron's rule for day-of-month and day-of-week: when both are restricted,
    a day matches if either does; otherwise both must (and one of them is `*`).
    """

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_or: bool

    def next_after(self, after: datetime) -> datetime:
        """The first time strictly after `after` that the expression names."""
        from cronsim import CronSim

        return next(CronSim(self.expression, after.replace(second=0, microsecond=0)))


def parse_cron(text: str) -> Cron:
    """A checked cron expression; ValueError with a plain reason otherwise."""
    from cronsim import CronSim, CronSimError

    expression = MACROS.get(text.strip(), text.strip())
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has five fields (minute hour day-of-month month "
                         f"day-of-week) or is one of {', '.join(sorted(MACROS))}; "
                         f"got {text!r}")
    try:
        sim = CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {text!r}: {exc}") from None
    # cronsim reads L, LW and N#M / NL too; launchd, systemd and Kubernetes do not all.
    if any(not isinstance(d, int) or d < 1 for d in sim.days) \
            or any(not isinstance(d, int) for d in sim.weekdays):
        raise ValueError(f"cron expression {text!r} uses L, W or # (last day, weekday, "
                         "nth weekday), which launchd, systemd and Kubernetes do not all read")
    # Names such as MON, JAN come back as numbers; day-of-week 7 means Sunday.
    weekdays = frozenset(d % 7 for d in sim.weekdays if isinstance(d, int))
    return Cron(expression, frozenset(sim.minutes), frozenset(sim.hours),
                frozenset(sim.days), frozenset(sim.months), weekdays, not sim.day_and)


def next_run(cron: str | None, every: int | None, after: datetime) -> datetime:
    """When a job with this schedule next runs after `after` (an interval counts from it)."""
    if cron is not None:
        return parse_cron(cron).next_after(after)
    assert every is not None
    return after + timedelta(seconds=every)


def period(cron: str | None, every: int | None, around: datetime) -> int:
    """Seconds between two consecutive runs near `around` (the interval, for `every`)."""
    if every is not None:
        return every
    assert cron is not None
    parsed = parse_cron(cron)
    first = parsed.next_after(around)
    return int((parsed.next_after(first) - first).total_seconds())


def as_kubernetes(every: int) -> str | None:
    """An interval as the cron expression a CronJob needs, or None when cron cannot say it
    (Kubernetes schedules on minutes: steps must divide the hour or the day)."""
    if every % 60:
        return None
    minutes = every // 60
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if minutes % 60 == 0 and minutes < 1440 and 24 % (minutes // 60) == 0:
        hours = minutes // 60
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if minutes == 1440:
        return "0 0 * * *"
    if minutes == 10080:
        return "0 0 * * 0"
    return None
