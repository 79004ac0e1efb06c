"""Shared fixtures: the two example labs, and a helper to write labs to disk."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from blumeops.catalog.model import Lab
from blumeops.core.resources import Resource
from blumeops.lab.loader import LoadResult, load_lab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
# UPDATE_GOLDEN=1 pytest ... rewrites golden files instead of comparing.
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"
# A missing tool fails its tests (BLUMEOPS_ALLOW_SKIPS=1: skips); the run ends with a list.
pytest_plugins = ["requires"]


def load_ok(path: Path) -> Lab:
    result = load_lab(path)
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    return result.lab


@pytest.fixture(scope="session")
def demo_lab() -> Lab:
    return load_ok(EXAMPLES / "demo")


@pytest.fixture(scope="session")
def blumeops_lab() -> Lab:
    return load_ok(EXAMPLES / "blumeops")


def write_lab(directory: Path, data: dict[str, Any] | str, name: str = "lab.yaml") -> Path:
    path = directory / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


def load_data(tmp_path: Path, data: dict[str, Any] | str) -> LoadResult:
    return load_lab(write_lab(tmp_path, data))


def check_golden(name: str, text: str) -> None:
    """Compare `text` with tests/golden/NAME (or rewrite it under UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if UPDATE_GOLDEN or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not UPDATE_GOLDEN:
            pytest.fail(f"golden file {name} did not exist; wrote it, check and commit it")
    assert text == path.read_text(), f"{name} differs from its golden file"


def check_golden_tree(folder: str, resources: Iterable[Resource]) -> None:
    """Every resource matches its golden file under tests/golden/, and no golden file
    under `folder` is left over from a resource that is gone."""
    written = set()
    for res in resources:
        check_golden(res.path, res.body)
        written.add(res.path)
    on_disk = {str(p.relative_to(GOLDEN)) for p in (GOLDEN / folder).rglob("*.yaml")}
    assert on_disk == written, "stale golden files: remove them"
