"""Cron expressions for the tests that compare readings of cron: fixed ones, and random
ones of the catalog's subset with lists, `*`-prefixed fields, `N/S` and `N-N/S` among
them."""

from __future__ import annotations

import random
from datetime import datetime

from cronsim import CronSim

from blumeops.core.schedule import parse_cron

FIXED = ["* * * * *", "*/5 * * * *", "7 * * * *", "15 3 * * *", "0 0 1 1 *", "0 0 29 2 *",
         "30 4 1,15 * 5", "0 9-17/2 * * MON-FRI", "5/15 * * * *", "0 0 * JAN,JUL SUN",
         "0 12 13 * 5", "0 0 31 * *", "59 23 31 12 *", "0 0 * * 7", "*/7 */5 */3 */4 */2",
         "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "1-5,30-35/2 0 * * *",
         "0 0 */2 * 1-5", "0 6 * * sat,sun", "0 0 1-7 * 1", "*/1 1-1 1-31 * 0-6"]


def _item(low: int, high: int, rng: random.Random) -> str:
    kind = rng.randrange(8)
    a = rng.randint(low, high)
    b = rng.randint(a, high)
    step = rng.randint(1, max(1, (high - low) // 2))
    return ["*", f"*/{step}", str(a), f"{a}-{b}", f"{a}-{b}/{step}", f"{a}/{step}",
            f"{a}-{a}/{step}", f"*/{step}"][kind]  # N-N/S: the range N..N, as cron reads it


def random_expressions(count: int) -> list[str]:
    """Expressions of the catalog's subset, with lists, `*`-prefixed fields and `N-N/S`
    among them (the test below checks they are)."""
    rng = random.Random(20261127)
    bounds = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
    out = []
    while len(out) < count:
        fields = [",".join(_item(lo, hi, rng) for _ in range(rng.choice((1, 1, 2))))
                  for lo, hi in bounds]
        text = " ".join(fields)
        try:
            parse_cron(text)  # the catalog's subset
            next(CronSim(text, datetime(2026, 1, 1)))
        except (ValueError, StopIteration):
            continue
        out.append(text)
    return out


RANDOM = random_expressions(300)
