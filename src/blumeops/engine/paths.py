"""Where a lab's state lives: --state-dir, BLUMEOPS_STATE_DIR, or the XDG default."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir(lab_name: str, override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("BLUMEOPS_STATE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "blumeops" / lab_name
