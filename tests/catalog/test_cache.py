"""The catalog cache: a hit only when every file is unchanged; errors never cached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blumeops.lab import cache
from blumeops.lab.loader import load_lab
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


def test_include_glob_expansion_is_part_of_the_key(tmp_path: Path) -> None:
    """A new file matching `include: [services/*.yaml]` (or one removed) is a miss."""
    write_lab(tmp_path, LAB.replace("[more.yaml]", "[services/*.yaml]"))
    (tmp_path / "services").mkdir()
    svc = "services:\n  {0}:\n    native: a\n    command: [x]\n"
    write_lab(tmp_path / "services", svc.format("one"), "one.yaml")
    first = load_lab(tmp_path, cache=True)
    assert first.ok and set(first.lab.services) == {"one"}  # type: ignore[union-attr]
    assert cache.lookup("catalog:strict=False", first.path) is not None
    write_lab(tmp_path / "services", svc.format("two"), "two.yaml")
    assert cache.lookup("catalog:strict=False", first.path) is None
    again = load_lab(tmp_path, cache=True)
    assert set(again.lab.services) == {"one", "two"}  # type: ignore[union-attr]
    assert cache.lookup("catalog:strict=False", first.path) is not None
    (tmp_path / "services" / "one.yaml").unlink()
    assert cache.lookup("catalog:strict=False", first.path) is None
    assert set(load_lab(tmp_path, cache=True).lab.services) == {"two"}  # type: ignore[union-attr]
    # Other kinds of entry (the runtime's, stored by the CLI with result.files) miss too.
    result = load_lab(tmp_path)
    cache.store("runtime:lab.yaml", result.path, result.files, "payload")
    assert cache.lookup("runtime:lab.yaml", result.path) == "payload"
    write_lab(tmp_path / "services", svc.format("three"), "three.yaml")
    assert cache.lookup("runtime:lab.yaml", result.path) is None


@pytest.mark.timeout(20)
def test_a_catalog_file_swapped_for_a_fifo_is_a_miss(tmp_path: Path) -> None:
    write_lab(tmp_path, LAB)
    write_lab(tmp_path, "hosts:\n  b: {role: storage, os: linux}\n", "more.yaml")
    assert load_lab(tmp_path, cache=True).ok
    (tmp_path / "more.yaml").unlink()
    os.mkfifo(tmp_path / "more.yaml")
    assert cache.lookup("catalog:strict=False", tmp_path / "lab.yaml") is None  # no hang
