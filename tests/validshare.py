"""Round-trip properties must meet catalogs that validate.

A property that returns early when `validate` refuses its example checks nothing on
those examples; if a strategy (or a stricter validate) came to produce only refused
catalogs, it would pass having checked nothing. So each example notes its verdict, and
`run_requiring_valid` fails the test unless a minimum share of examples validated.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import event

VERDICTS: list[bool] = []


def note(valid: bool) -> None:
    """Record whether this example's catalog validated (also in hypothesis's statistics)."""
    event("valid" if valid else "refused")
    VERDICTS.append(valid)


def run_requiring_valid(prop: Callable[[], None], share: float = 0.2) -> None:
    """Run the @given property `prop`; fail unless at least `share` of the examples it
    noted validated (and at least one did)."""
    VERDICTS.clear()
    prop()
    valid, total = sum(VERDICTS), len(VERDICTS)
    VERDICTS.clear()
    assert valid and valid >= share * total, (
        f"only {valid} of {total} examples validated (this test needs {share:.0%}): "
        "the round trip checked (almost) nothing")
