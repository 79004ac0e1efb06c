"""A cache of what was derived from a valid catalog, so commands that run often (a no-op
apply, status) skip parsing, validation and rendering when no catalog file changed.

An entry is checked against the sha256 of every file the lab was read from (any edit,
include added or file removed misses), against the expansion of every include glob (a
new file matching `services/*.yaml` misses too) and against blumeops's own code, so an upgrade
never serves what older code derived. Entries live in the user's cache directory; a
broken or foreign entry is a miss and is rewritten. Only valid labs are cached, so every
error is always found afresh. This module imports nothing heavy: a hit must stay cheap.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
from pathlib import Path
from typing import Any

from blumeops.catalog.paths import MAX_CATALOG_BYTES, CatalogFiles, expand_include, lab_dir
from blumeops.fileio import write_atomic

VERSION = 3
_PACKAGE = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "blumeops" / "catalogs"


def _code_digest() -> str:
    """Changes whenever any module of blumeops changes (size or mtime)."""
    h = hashlib.sha256(str(VERSION).encode())
    for root, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(root, name))
                h.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _entry_path(kind: str, path: Path) -> Path:
    key = hashlib.sha256(f"{kind}\0{path.resolve()}\0{_code_digest()}".encode()).hexdigest()
    return cache_dir() / f"{key[:32]}.pickle"


def _digest(path: Path) -> str | None:
    """sha256 of a regular file of at most MAX_CATALOG_BYTES; None otherwise (a miss).

    Opened without blocking: a catalog file swapped for a FIFO must not hang a lookup.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if len(data) > MAX_CATALOG_BYTES else hashlib.sha256(data).hexdigest()


def lookup(kind: str, path: Path) -> Any:
    """The payload stored for (kind, lab path), or None when any of its files changed."""
    try:
        with _entry_path(kind, path).open("rb") as handle:
            entry = pickle.load(handle)
        if any(_digest(Path(f)) != digest for f, digest in entry["files"].items()):
            return None
        root = lab_dir(path)
        for base, pattern, matches in entry["globs"]:
            found, problem = expand_include(Path(base), pattern, root)
            if problem is not None or tuple(str(m) for m in found) != tuple(matches):
                return None
        return entry["payload"]
    except Exception:  # missing, stale, from another version: a miss, never an error
        return None


def store(kind: str, path: Path, files: list[Path], payload: Any) -> None:
    """Remember a payload derived from `files`; failures to write are ignored."""
    digests = {str(f): _digest(f) for f in files}
    if None in digests.values():
        return
    globs = files.globs if isinstance(files, CatalogFiles) else []
    data = pickle.dumps({"files": digests, "globs": globs, "payload": payload},
                        protocol=pickle.HIGHEST_PROTOCOL)
    try:
        write_atomic(_entry_path(kind, path), data, 0o600)
    except OSError:
        return
