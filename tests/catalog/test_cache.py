"""The catalog cache: a hit only when every file is unchanged; errors never cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from blumeops.catalog import cache
from blumeops.catalog.loader import load_lab
from conftest import write_lab

LAB = "lab: t\ninclude: [more.yaml]\nhosts:\n  a: {role: compute, os: linux}\n"


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_hit_miss_and_invalidation(tmp_path: Path) -> None:
    write_lab(tmp_path, LAB)
    write_lab(tmp_path, "hosts:\n  b: {role: storage, os: linux}\n", "more.yaml")
    first = load_lab(tmp_path, cache=True)
    assert first.ok and cache.lookup("catalog:strict=False", first.path) is not None
    hit = load_lab(tmp_path, cache=True)
    assert hit.lab == first.lab and set(hit.lab.hosts) == {"a", "b"}  # type: ignore[union-attr]
    # Editing an included file misses, and the new content is what loads.
    write_lab(tmp_path, "hosts:\n  c: {role: storage, os: linux}\n", "more.yaml")
    assert cache.lookup("catalog:strict=False", first.path) is None
    again = load_lab(tmp_path, cache=True)
    assert set(again.lab.hosts) == {"a", "c"}  # type: ignore[union-attr]


def test_errors_are_never_cached(tmp_path: Path) -> None:
    write_lab(tmp_path, LAB)
    write_lab(tmp_path, "hosts:\n  b: {role: nope, os: linux}\n", "more.yaml")
    assert not load_lab(tmp_path, cache=True).ok
    assert cache.lookup("catalog:strict=False", tmp_path / "lab.yaml") is None
    assert not load_lab(tmp_path, cache=True).ok


def test_corrupt_entry_is_a_miss(tmp_path: Path) -> None:
    write_lab(tmp_path, LAB.replace("include: [more.yaml]\n", ""))
    result = load_lab(tmp_path, cache=True)
    for entry in cache.cache_dir().glob("*.pickle"):
        entry.write_bytes(b"garbage")
    assert cache.lookup("catalog:strict=False", result.path) is None
    assert load_lab(tmp_path, cache=True).ok
