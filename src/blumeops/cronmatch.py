"""A cron matcher in the standard library only: the portable subset core/schedule.py
accepts (five fields, lists, ranges, steps, month and weekday names, the @ macros).

This is the one reading of cron in blumeops: the catalog validates with it
(core/schedule.py), job health and the renderers take its field sets, and
blumeops-scheduler fires by it, also where blumeops is not installed (on a supervisor
host reached over SSH it runs from a copy of scheduler.py and this file: python3 >= 3.9,
stdlib only). A bad expression is a plain ValueError; the catalog words the refusal.
Day-of-month and day-of-week follow cron's rule (crontab(5)): when both are restricted
(neither starts with `*`) a day matches if either does, else both must.

Times: `next_after` keeps the tzinfo of what it is given and steps through wall-clock
minutes of that offset (the scheduler gives the host's current local offset and asks
again after each run).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
          "@annually": "0 0 1 1 *"}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
           "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (low, high, names) per field; weekday 7 is Sunday too.
_FIELDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, _MONTHS), (0, 7, _DAYS))


class Cron(NamedTuple):
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_or: bool


def _number(text: str, low: int, names: tuple[str, ...]) -> int:
    upper = text.upper()
    if upper in names:
        return names.index(upper) + (1 if low == 1 else 0)
    if not text.isdigit():
        raise ValueError(f"not a number: {text!r}")
    return int(text)


def _field(text: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    """One field's values, as cron reads them: a step over a range or `*` takes every
    step-th value of it (`9-9/3` is the range 9..9, so just 9); a step after a single
    value runs from it to the field's end (`5/15` is `5-59/15`), as cronie, Kubernetes
    and cronsim read it (Debian's cron does not document that form)."""
    out: set[int] = set()
    for item in text.split(","):
        span, slash, step_text = item.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) < 1):
            raise ValueError(f"bad step in {item!r}")
        if span == "*":
            values = list(range(low, high + 1))
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _number(a, low, names), _number(b, low, names)
            if last < first:
                raise ValueError(f"{item!r}: the range runs backwards")
            values = list(range(first, last + 1))
        else:
            values = [_number(span, low, names)]
        if any(not low <= v <= high for v in values):
            raise ValueError(f"{item!r} is out of range {low}-{high}")
        if slash:
            step = int(step_text)
            if span != "*" and "-" not in span:  # `N/S`: from N to the field's end
                values = list(range(values[0], high + 1))
            values = values[::step]
        out.update(values)
    return frozenset(out)


def parse(expression: str) -> Cron:
    """The expression's field sets; ValueError when it is not one this reads."""
    text = MACROS.get(expression.strip(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"a cron expression has five fields, got {expression!r}")
    sets = [_field(parts[i], *_FIELDS[i]) for i in range(5)]  # no zip(strict=): 3.9
    weekdays = frozenset(d % 7 for d in sets[4])
    day_or = not (parts[2].startswith("*") or parts[4].startswith("*"))
    return Cron(sets[0], sets[1], sets[2], sets[3], weekdays, day_or)


def _day_matches(cron: Cron, at: datetime) -> bool:
    dom = at.day in cron.days
    dow = (at.weekday() + 1) % 7 in cron.weekdays  # Python: Monday 0; cron: Sunday 0
    return (dom or dow) if cron.day_or else (dom and dow)


def next_after(expression: str | Cron, after: datetime) -> datetime:
    """The first time strictly after `after` that the expression names (whole minutes)."""
    cron = parse(expression) if isinstance(expression, str) else expression
    at = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    limit = at + timedelta(days=366 * 5)  # Feb 29 on a given weekday recurs within 28 y
    while at < limit:
        if at.month not in cron.months:
            at = (at.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
        elif not _day_matches(cron, at):
            at = at.replace(hour=0, minute=0) + timedelta(days=1)
        elif at.hour not in cron.hours:
            at = at.replace(minute=0) + timedelta(hours=1)
        elif at.minute not in cron.minutes:
            at += timedelta(minutes=1)
        else:
            return at
    raise ValueError(f"{expression!r} names no time in the next five years")
