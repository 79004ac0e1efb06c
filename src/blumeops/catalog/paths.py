"""Where a lab's catalog is: cheap to import (no parser, no model)."""

from __future__ import annotations

from pathlib import Path


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
