"""Waiting for a condition in tests that drive real servers: the one polling helper.

A timeout is a generous ceiling for a loaded machine, never a measurement: the wait
ends as soon as the condition holds, and fails loudly, naming what it waited for, when
it never does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(pred: Callable[[], T], timeout: float, what: str | Callable[[], object],
             every: float = 0.05) -> T:
    """Poll `pred` every `every` seconds until it returns something true, and return
    that; fail naming `what` (a text, or a function giving one at the failure, to show
    the state) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            detail = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out after {timeout}s waiting for {detail}")
        time.sleep(every)
