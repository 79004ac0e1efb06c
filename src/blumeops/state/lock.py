"""One writer per lab: an advisory lock on STATE/apply.lock.

`blumeops apply`, `up`, `down` and the controller may run at once against one state
directory; each change to the lab happens under this lock so two of them never start
supervisord twice or interleave their plans. Readers (plan, status) do not take it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from blumeops.state.dirs import private_dir


@contextmanager
def lab_lock(state_dir: Path, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lab's lock; call `waiting` once if another process holds it first."""
    private_dir(state_dir)
    path = state_dir / "apply.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if waiting is not None:
                waiting(f"another blumeops (pid {holder}) is changing this lab; waiting")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when the process dies
