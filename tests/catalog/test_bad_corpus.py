"""Every broken catalog in bad/ gives its expected diagnostic: rule, line and message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blumeops.lab.loader import load_lab

BAD = Path(__file__).parent / "bad"
CASES = sorted(BAD.glob("*.yaml"))


def expectation(path: Path) -> dict[str, object]:
    sidecar = path.with_suffix(".expect.json")
    if sidecar.exists():
        return json.loads(sidecar.read_text())  # type: ignore[no-any-return]
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks an '# expect:' header"
    return json.loads(first.removeprefix("# expect: "))  # type: ignore[no-any-return]


def test_every_file_in_bad_is_a_case() -> None:
    """All 177 catalogs run (a lost or renamed case fails here): each .yaml is a case, each
    sidecar belongs to one, nothing else lies in bad/. Adding a case: raise the count."""
    sidecars = sorted(BAD.glob("*.expect.json"))
    assert sorted(BAD.iterdir()) == sorted([*CASES, *sidecars])
    assert all(s.name.removesuffix(".expect.json") + ".yaml" in {c.name for c in CASES}
               for s in sidecars)
    assert len(CASES) == 177, f"{len(CASES)} cases: adding or removing one, update 177 here"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_catalog(path: Path) -> None:
    expected = expectation(path)
    result = load_lab(path)
    assert result.lab is None, "a broken catalog must not produce a model"
    errors = result.errors
    assert errors, "expected at least one error"
    match = [d for d in errors if d.rule == expected["rule"]]
    assert match, f"no {expected['rule']} error in: {[str(d) for d in errors]}"
    d = match[0]
    assert d.file == str(path)
    assert d.line == expected["line"], str(d)
    assert str(expected["message"]) in d.message, str(d)
    assert d.col >= 1
