"""blumeops's one reading of cron (cronmatch.py: the catalog validates with it, the
scheduler fires by it) against crontab(5) and against cronsim, an independent reading
(pinned by constraints.txt; `make test-latest` finds a new release that reads otherwise):
the same field sets and next times for many expressions of the portable subset, from many
start times, and run by the host's Python 3.9."""

from __future__ import annotations

import random
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cronsim import CronSim

from blumeops import cronmatch
from blumeops.core.schedule import parse_cron
from cronexamples import FIXED, RANDOM


def test_the_random_expressions_cover_the_tricky_forms() -> None:
    fields = [f for text in RANDOM for f in text.split()]
    assert sum(bool(re.fullmatch(r"(\d+)-\1/\d+", f)) for f in fields) >= 30  # N-N/S
    assert sum("," in f for f in fields) >= 100  # lists
    assert sum(f.startswith("*/") for f in fields) >= 100  # stepped `*`
    assert sum(bool(re.fullmatch(r"\d+/\d+", f)) for f in fields) >= 30  # N/S


def starts(rng: random.Random, n: int) -> list[datetime]:
    base = datetime(2024, 1, 1)
    return [base + timedelta(minutes=rng.randrange(4 * 365 * 1440),
                             seconds=rng.randrange(60)) for _ in range(n)]


@pytest.mark.parametrize("expression", FIXED + RANDOM)
def test_next_times_agree_with_cronsim(expression: str) -> None:
    rng = random.Random(expression)
    for start in starts(rng, 4):
        sim = CronSim(expression if not expression.startswith("@")
                      else cronmatch.MACROS[expression], start.replace(second=0))
        at = start
        for _ in range(3):
            expected = next(sim)
            at = cronmatch.next_after(expression, at)
            assert at == expected, (expression, start)


@pytest.mark.parametrize("expression", FIXED + RANDOM)
def test_field_sets_agree_with_cronsim(expression: str) -> None:
    mine = cronmatch.parse(expression)
    theirs = CronSim(cronmatch.MACROS.get(expression, expression), datetime(2026, 1, 1))
    assert (mine.minutes, mine.hours, mine.days, mine.months, mine.weekdays, mine.day_or) \
        == (theirs.minutes, theirs.hours, theirs.days, theirs.months,
            {d % 7 for d in theirs.weekdays}, not theirs.day_and), expression


# crontab(5) (Debian's cron, after Vixie): steps over a range or `*`; a leading `*` in
# day-of-month or day-of-week makes both day fields have to match, else either. `N/S`
# runs from N to the end of the field, as cronie, Kubernetes (robfig/cron) and cronsim
# read it.
CRONTAB_5 = [
    ("3-3/2 * * * *", "minutes", {3}),
    ("1-1/3 * * * *", "minutes", {1}),
    ("0 9-9/1 * * *", "hours", {9}),
    ("0 0-23/2 * * *", "hours", set(range(0, 24, 2))),
    ("5/15 * * * *", "minutes", {5, 20, 35, 50}),
    ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
    ("1-10/4,30 * * * *", "minutes", {1, 5, 9, 30}),
    ("0 0 * * 7", "weekdays", {0}),
    ("0 0 * * MON-FRI/2", "weekdays", {1, 3, 5}),
    ("0 0 * JAN-MAR *", "months", {1, 2, 3}),
]


@pytest.mark.parametrize(("expression", "field", "values"), CRONTAB_5)
def test_fields_as_crontab_5_reads_them(expression: str, field: str, values: set[int]) -> None:
    assert getattr(cronmatch.parse(expression), field) == values
    assert getattr(parse_cron(expression), field) == values


@pytest.mark.parametrize("expression", ["*/7 */5 */3 */4 */2", "0 0 */2 * 1-5",
                                        "0 0 1 * */2", "0 0 1,15 * */3"])
def test_a_leading_star_beside_a_restricted_day_is_refused(expression: str) -> None:
    """cron wants both days then; Kubernetes (a step clears robfig's `*`) and launchd
    either: the catalog refuses what the targets would read two ways."""
    assert cronmatch.parse(expression)  # the scheduler could read it
    with pytest.raises(ValueError, match="restricts both day-of-month"):
        parse_cron(expression)


def test_day_rule_as_crontab_5_says() -> None:
    either = datetime(2026, 12, 1)  # a Tuesday, the 1st
    assert cronmatch.next_after("0 0 1 * MON", datetime(2026, 11, 29)) == datetime(2026, 11,
                                                                                    30)
    assert cronmatch.next_after("0 0 1 * MON", datetime(2026, 11, 30)) == either
    assert cronmatch.next_after("0 0 * * MON", datetime(2026, 11, 30)) == datetime(2026, 12,
                                                                                    7)
    assert cronmatch.next_after("0 0 1-31 * MON", datetime(2026, 12, 1)) == datetime(
        2026, 12, 2)  # both restricted: either matches, and every day of the month does


def test_bad_expressions_are_value_errors() -> None:
    for bad in ("75 3 * * *", "* * *", "*/0 * * * *", "5-2 * * * *", "0 0 30 2 *", "x * * * *"):
        with pytest.raises(ValueError):
            cronmatch.parse(bad) if bad != "0 0 30 2 *" else cronmatch.next_after(
                bad, datetime(2026, 1, 1))


def test_it_runs_on_python_3_9_with_the_standard_library_only() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "transports"))
    from sshhost import python39

    py39 = python39()
    source = Path(cronmatch.__file__).read_text()
    code = source + ("\nfrom datetime import datetime\n"
                     "print(next_after('30 4 1,15 * 5', datetime(2026, 11, 27, 22, 0)))\n")
    out = subprocess.run([py39, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(next(CronSim("30 4 1,15 * 5", datetime(2026, 11, 27, 22))))
