"""Where a control socket lives (supervisord's, Caddy's admin API): standard library
only, below everything, since blumeops-scheduler finds supervisord's socket by it too."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Linux allows 107 bytes in a unix socket path, macOS 103: stay under both.
MAX_SOCKET_PATH = 100


def socket_path(state_dir: Path, subdir: str, name: str) -> Path:
    """Where a control socket lives: STATE/SUBDIR/NAME, inside the 0700 state dir.

    A deep state dir would overflow sun_path (107 bytes on Linux, 103 on macOS): then a
    short per-state-dir directory under /tmp, named by a hash so two labs never share
    it, which `private_socket_dir` creates 0700 and refuses if another user owns it.
    """
    path = state_dir / subdir / name
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(state_dir)).hexdigest()[:12]
    return Path("/tmp") / f"blumeops-{digest}" / name
