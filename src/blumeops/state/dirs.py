"""The state directory is the operator's alone: 0700, created so, tightened if wider.

It holds the control sockets (supervisord, Caddy's admin API), the state database,
resolved secrets and logs. Everything below it may keep ordinary modes: no other user
can reach inside.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Make `path` exist with mode 0700 and return it.

    Created with the mode (never wider for an instant); an existing directory with any
    group or other bits, such as one an older blumeops made 0755, is tightened.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
    return path
