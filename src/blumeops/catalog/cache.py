"""A cache of valid catalogs, so commands that run often (a no-op apply, status) skip
parsing and validation when no catalog file changed.

An entry holds the validated model and its warnings, keyed by the lab's path and checked
against the sha256 of every file the lab was read from: any edit, include added or file
removed misses. Entries live in the user's cache directory; a broken or foreign entry is
ignored and rewritten. Only valid labs are cached, so every error is always found afresh.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from blumeops.catalog.diagnostics import Mark, Marks

VERSION = 1


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "blumeops" / "catalogs"


def _model_digest() -> str:
    """Entries are only good for the model classes that made them."""
    from blumeops.catalog import model

    return hashlib.sha256(Path(model.__file__).read_bytes()).hexdigest()[:16]


def _entry_path(path: Path, strict: bool) -> Path:
    key = hashlib.sha256(f"{path.resolve()}\0{strict}\0{VERSION}\0{_model_digest()}"
                         .encode()).hexdigest()[:32]
    return cache_dir() / f"{key}.pickle"


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def lookup(path: Path, strict: bool) -> Any:
    """The cached LoadResult for `path`, or None when any of its files changed."""
    from blumeops.catalog.loader import LoadResult

    try:
        with _entry_path(path, strict).open("rb") as handle:
            entry = pickle.load(handle)
        files: dict[str, str] = entry["files"]
        if any(_digest(Path(f)) != digest for f, digest in files.items()):
            return None
        return LoadResult(path, entry["lab"], entry["diagnostics"],
                          Marks(Mark(str(path), 1, 1)), [Path(f) for f in files])
    except Exception:  # missing, stale, from another version: a miss, never an error
        return None


def store(result: Any, strict: bool) -> None:
    """Remember a valid result; failures to write are ignored (it is only a cache)."""
    if not result.ok:
        return
    files = {str(f): _digest(f) for f in result.files}
    if None in files.values():
        return
    entry = {"lab": result.lab, "diagnostics": result.diagnostics, "files": files}
    target = _entry_path(result.path, strict)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".entry.")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(entry, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
    except OSError:
        return
