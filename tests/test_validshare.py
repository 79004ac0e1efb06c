"""tests/validshare.py: a round-trip property whose examples are (almost) all refused
fails; one that meets enough valid examples passes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validshare import note, run_requiring_valid


@settings(max_examples=50, database=None)
@given(n=st.integers(0, 99))
def all_refused(n: int) -> None:
    note(False)


@settings(max_examples=50, database=None)
@given(n=st.integers(0, 99))
def one_in_a_hundred(n: int) -> None:
    note(n == 7)


@settings(max_examples=50, database=None)
@given(n=st.integers(0, 99))
def half_valid(n: int) -> None:
    note(n % 2 == 0)


@pytest.mark.parametrize("prop", [all_refused, one_in_a_hundred])
def test_a_property_that_checks_almost_nothing_fails(prop: object) -> None:
    with pytest.raises(AssertionError, match="examples validated"):
        run_requiring_valid(prop)  # type: ignore[arg-type]


def test_a_property_meeting_valid_examples_passes() -> None:
    run_requiring_valid(half_valid)
