"""Where a lab's catalog is, and which paths it may name: cheap to import (no parser, no model).

A catalog is often someone else's commit, so every path it names for blumeops to read
(`include`) or write (`files`) must stay inside the lab directory, symlinks resolved, and
an include glob must not be able to walk the file system. The loader, the catalog cache
and the files driver all use these helpers, so they agree on what "inside" means.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
from pathlib import Path

MAX_CATALOG_BYTES = 4 * 1024 * 1024  # per catalog file
MAX_INCLUDE_MATCHES = 1000  # per include pattern
MAX_GLOB_ENTRIES = 20_000  # directory entries one include pattern may look through


class CatalogFiles(list[Path]):
    """The files a lab was read from, and the include globs that found them.

    `globs` holds (directory, pattern, matches) per glob, so the catalog cache can expand
    each again and miss when a file that matches appears or goes (see lab/cache.py).
    """

    def __init__(self, files: list[Path] | None = None) -> None:
        super().__init__(files or [])
        self.globs: list[tuple[str, str, tuple[str, ...]]] = []


def resolve_lab_path(lab: str | Path | None) -> Path:
    """LAB may be a file or a directory holding lab.yaml; default ./lab.yaml or ./lab/."""
    if lab is None:
        for candidate in (Path("lab.yaml"), Path("lab")):
            if candidate.exists():
                lab = candidate
                break
        else:
            return Path("lab.yaml")
    path = Path(lab)
    if path.is_dir():
        return path / "lab.yaml"
    return path


def lab_dir(lab_file: Path) -> Path:
    """The directory every catalog path is confined to (the lab file's, resolved)."""
    return lab_file.parent.resolve()


def inside(path: Path, root: Path) -> bool:
    """True when `path`, symlinks resolved, is `root` or below it (`root` is resolved)."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop: not inside anything
        return False


def escapes(path: str) -> str | None:
    """Why a relative catalog path could leave its directory, lexically; None when fine."""
    if path.startswith("/") or path.startswith("\\"):
        return "must be relative to the lab directory, not absolute"
    if ".." in path.replace("\\", "/").split("/"):
        return "must not contain '..'"
    return None


def expand_include(base: Path, pattern: str,
                   root: Path) -> tuple[list[Path], tuple[str, str] | None]:
    """The files an include pattern names, sorted, or (rule, reason) it is refused.

    `base` is the including file's directory, `root` the resolved lab directory. The glob
    is walked here, one path component at a time, never into a directory outside `root`
    and never over more than MAX_GLOB_ENTRIES entries. A plain path that does not exist
    comes back as one (missing) path for the caller to report.
    """
    problem = escapes(pattern)
    if problem:
        return [], ("outside-lab", f"include '{pattern}' {problem}")
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    paths = [str(base)]
    budget = MAX_GLOB_ENTRIES
    for i, part in enumerate(parts):
        found: list[str] = []
        for current in paths:
            if not inside(Path(current), root):
                return [], _outside(pattern, current, base)
            if not glob.has_magic(part):
                found.append(os.path.join(current, part))
                continue
            try:
                entries = sorted(os.listdir(current))
            except OSError:
                continue
            budget -= len(entries)
            if budget < 0:
                return [], ("include", f"include '{pattern}' looks through more than "
                            f"{MAX_GLOB_ENTRIES} directory entries; make it narrower")
            hidden = part.startswith(".")
            found += [os.path.join(current, e) for e in entries
                      if (hidden or not e.startswith(".")) and fnmatch.fnmatchcase(e, part)]
            if len(found) > MAX_INCLUDE_MATCHES:
                return [], ("include", f"include '{pattern}' matches more than "
                            f"{MAX_INCLUDE_MATCHES} files; name fewer")
        last = i == len(parts) - 1
        paths = found if last and not glob.has_magic(pattern) else [
            p for p in found if (os.path.lexists(p) if last else os.path.isdir(p))]
    for match in paths:
        if os.path.lexists(match) and not inside(Path(match), root):
            return [], _outside(pattern, match, base)
    return [Path(m) for m in sorted(paths)], None


def _outside(pattern: str, path: str, base: Path) -> tuple[str, str]:
    shown = posixpath.relpath(path, str(base))
    return ("outside-lab", f"include '{pattern}' reaches outside the lab directory ({shown} "
            "leads out of it through a symlink); catalog files must live inside it")
