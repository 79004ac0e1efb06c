"""Schedules of jobs: cron expressions and intervals, checked once and read by every target.

A job runs on a five-field cron expression (minute hour day-of-month month day-of-week,
in the local time of the host it runs on; `@hourly`, `@daily`, `@weekly`, `@monthly`,
`@yearly` are accepted) or at an interval (`every: 90s`, `5m`, `1h`, `1d`, `1w`). The
cron dialect is the one every target understands: lists, ranges, steps and names; not
the `L`, `W`, `#` or `?` extensions some crons add, because launchd, systemd and
Kubernetes cannot all say them. Parsing is blumeops.cronmatch's (standard library, the
same module the scheduler fires by on every host); this module words the refusals and
hands the renderers the field sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from blumeops import cronmatch

SCHEDULER = "blumeops-scheduler"  # the supervisord program that runs a host's jobs
DURATION = re.compile(r"^([1-9][0-9]{0,6})(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MACROS = cronmatch.MACROS  # @hourly .. @yearly as five fields
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
        """The first time strictly after `after` that the expression names: the same
        times blumeops-scheduler fires at (both read cron with blumeops.cronmatch)."""
        return cronmatch.next_after(self._fields(), after)

    def _fields(self) -> cronmatch.Cron:
        return cronmatch.Cron(self.minutes, self.hours, self.days, self.months,
                              self.weekdays, self.day_or)

    def standard(self) -> str:
        """The same times as a plain five-field expression of numbers, ranges, steps and
        lists: what Kubernetes (robfig/cron: weekdays 0-6, no 7) reads exactly as cron does."""
        if self.day_or and (self.days == ALL_DAYS or self.weekdays == ALL_WEEKDAYS):
            days, weekdays = "*", "*"  # either a day of the month or all weekdays: every day
        else:  # both restricted, either matches (so neither may start with `*`), or not
            days = _field_text(self.days, ALL_DAYS, star=not self.day_or)
            weekdays = _field_text(self.weekdays, ALL_WEEKDAYS, star=not self.day_or)
        return " ".join((_field_text(self.minutes, ALL_MINUTES),
                         _field_text(self.hours, ALL_HOURS), days,
                         _field_text(self.months, ALL_MONTHS), weekdays))


def _field_text(values: frozenset[int], full: frozenset[int], star: bool = True) -> str:
    """`*` or `*/s` where the values say so (and `star` allows it), `a-b/s` for an even
    progression of three or more, else ranges and single values."""
    ordered = sorted(values)
    low, high = min(full), max(full)
    steps = {b - a for a, b in pairwise(ordered)}
    step = steps.pop() if len(steps) == 1 else 0
    if star and values == full:
        return "*"
    if star and step > 1 and ordered == list(range(low, high + 1, step)):
        return f"*/{step}"
    if len(ordered) >= 3 and step:
        return f"{ordered[0]}-{ordered[-1]}" + (f"/{step}" if step > 1 else "")
    runs: list[list[int]] = []
    for value in ordered:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r))
                    for r in runs)


# Tokens of cron extensions some crons read and launchd, systemd or Kubernetes do not.
_EXTENSION = re.compile(r"^(\?|L|LW|\d+[LW]|\w+#\d+|\w+L)$", re.IGNORECASE)
_NAMES = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
          "DEC", "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}


def parse_cron(text: str) -> Cron:
    """A checked cron expression; ValueError with a plain reason otherwise.

    The dialect is cron's (crontab(5)): numbers, names, `*`, lists, ranges and steps over
    a range or `*` (`3-3/2` is the range 3..3); `N/S` runs from N to the field's end. Not
    the `L`, `W`, `#` or `?` extensions, and not a stepped `*` day-of-month (or
    day-of-week) beside a restricted other day field: cron then wants both days to match,
    Kubernetes and launchd either, so no target list could say it the same way.
    """
    expression = MACROS.get(text.strip(), text.strip())
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has five fields (minute hour day-of-month month "
                         f"day-of-week) or is one of {', '.join(sorted(MACROS))}; "
                         f"got {text!r}")
    tokens = {t for field in fields for t in re.split(r"[,/-]", field)}
    if any(_EXTENSION.match(t) and t.upper() not in _NAMES for t in tokens):
        raise ValueError(f"cron expression {text!r} uses L, W, # or ? (last day, weekday, "
                         "nth weekday, no value), which launchd, systemd and Kubernetes do "
                         "not all read")
    try:
        parsed = cronmatch.parse(expression)
        cronmatch.next_after(expression, datetime(2000, 1, 1))  # `0 0 30 2 *` never runs
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {text!r}: {exc}") from None
    if not parsed.day_or and parsed.days != ALL_DAYS and parsed.weekdays != ALL_WEEKDAYS:
        raise ValueError(
            f"cron expression {text!r} restricts both day-of-month ({fields[2]}) and "
            f"day-of-week ({fields[4]}) with one of them starting with '*': cron then runs "
            "only on days both match, Kubernetes and launchd on days either matches; restrict "
            "only one of them, or write both without a leading '*' (either day matches)")
    return Cron(expression, parsed.minutes, parsed.hours, parsed.days, parsed.months,
                parsed.weekdays, parsed.day_or)


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
