"""What went wrong with the state database, said so a person knows what to do.

The advice differs by cause, so the cause is established, not guessed:
- corrupt: SQLite itself says so (SQLITE_CORRUPT, SQLITE_NOTADB). The file can go:
  plans compare the catalog with what the drivers observe, so a new database is
  rebuilt from live state.
- no space: SQLite failed to write (SQLITE_FULL, an I/O error) and a probe write in the
  same directory fails with ENOSPC, EDQUOT or EFBIG. SQLite rolled the write back, so
  the database is intact: the advice is to free space, never to move it aside.
- anything else: SQLite's own words, and no advice that could lose state.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

# SQLite primary result codes (the low byte of an extended code).
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
PROBE_MARGIN = 1 << 20  # a probe larger than any write SQLite was about to make
PROBE_CAP = 1 << 30


class StateError(Exception):
    """The state database cannot be opened or used; the message is for a person."""


def corrupt(path: Path, why: object) -> StateError:
    return StateError(f"{path.name} is corrupt: move it aside, blumeops rebuilds from live "
                      f"state ({path}; SQLite said: {why})")


def no_space(path: Path, why: object) -> StateError:
    return StateError(f"no space left on device writing {path.parent} ({why}): free some "
                      f"space there and run the command again; {path.name} is intact "
                      f"(SQLite rolled the write back)")


def explain(exc: sqlite3.Error | OSError, path: Path) -> StateError:
    """The StateError for `exc`, raised while using the database at `path`."""
    if isinstance(exc, OSError):
        if exc.errno in NO_SPACE:
            return no_space(path, exc.strerror)
        return StateError(f"cannot use {path}: {exc.strerror or exc}")
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return corrupt(path, exc)
    if code in (SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN):
        short = space_probe(path.parent, _probe_size(path))
        if short is not None:
            return no_space(path, f"{exc}: {short}")
        if code == SQLITE_FULL:
            return no_space(path, exc)
    return StateError(f"cannot use {path}: {exc}")


def _probe_size(path: Path) -> int:
    total = PROBE_MARGIN
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    return min(total, PROBE_CAP)


def space_probe(directory: Path, size: int) -> str | None:
    """Why `size` bytes cannot be written in `directory` (ENOSPC, EDQUOT, EFBIG), or
    None when they can. The probe file is removed either way."""
    probe = directory / f".space-probe-{os.getpid()}"
    fd = -1
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
        else:  # macOS: write it
            chunk = b"\0" * (1 << 20)
            for offset in range(0, size, len(chunk)):
                os.pwrite(fd, chunk[: size - offset], offset)
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno in NO_SPACE and exc.errno else None
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()
    return None
