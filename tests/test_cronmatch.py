"""The stdlib cron matcher a remote blumeops-scheduler runs (cronmatch.py) against cronsim,
which the catalog validates with: the same next times for many expressions of the
portable subset, from many start times, and run by the host's Python 3.9."""

from __future__ import annotations

import random
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cronsim import CronSim

from blumeops import cronmatch
from blumeops.catalog.schedule import parse_cron

FIXED = ["* * * * *", "*/5 * * * *", "7 * * * *", "15 3 * * *", "0 0 1 1 *", "0 0 29 2 *",
         "30 4 1,15 * 5", "0 9-17/2 * * MON-FRI", "5/15 * * * *", "0 0 * JAN,JUL SUN",
         "0 12 13 * 5", "0 0 31 * *", "59 23 31 12 *", "0 0 * * 7", "*/7 */5 */3 */4 */2",
         "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "1-5,30-35/2 0 * * *",
         "0 0 */2 * 1-5", "0 6 * * sat,sun", "0 0 1-7 * 1", "*/1 1-1 1-31 * 0-6"]


def _item(low: int, high: int, rng: random.Random) -> str:
    kind = rng.randrange(6)
    a = rng.randint(low, high)
    b = rng.randint(a, high)
    step = rng.randint(1, max(1, (high - low) // 2))
    return ["*", f"*/{step}", str(a), f"{a}-{b}", f"{a}-{b}/{step}", f"{a}/{step}"][kind]


def random_expressions(count: int) -> list[str]:
    rng = random.Random(20261127)
    bounds = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
    out = []
    while len(out) < count:
        fields = [",".join(_item(lo, hi, rng) for _ in range(rng.choice((1, 1, 2))))
                  for lo, hi in bounds]
        text = " ".join(fields)
        try:
            parse_cron(text)  # the catalog's subset (cronsim + its refusals)
            next(CronSim(text, datetime(2026, 1, 1)))
        except (ValueError, StopIteration):
            continue
        out.append(text)
    return out


def starts(rng: random.Random, n: int) -> list[datetime]:
    base = datetime(2024, 1, 1)
    return [base + timedelta(minutes=rng.randrange(4 * 365 * 1440),
                             seconds=rng.randrange(60)) for _ in range(n)]


@pytest.mark.parametrize("expression", FIXED + random_expressions(300))
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


def test_field_sets_agree_with_the_catalog() -> None:
    for expression in FIXED[:-6]:
        mine, theirs = cronmatch.parse(expression), parse_cron(expression)
        assert (mine.minutes, mine.hours, mine.days, mine.months, mine.weekdays,
                mine.day_or) == (theirs.minutes, theirs.hours, theirs.days, theirs.months,
                                 theirs.weekdays, theirs.day_or), expression


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
