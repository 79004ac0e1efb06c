"""The state database is private, and its failures come with the right advice.

Full disk is real here: a child process writes under RLIMIT_FSIZE with SIGXFSZ ignored,
so SQLite's writes fail with EFBIG as they would with ENOSPC on a full file system.
Corruption is real too: garbage written over the file, or over pages in its middle.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from blumeops.state.store import StateError, Store

CORRUPT = "state.db is corrupt: move it aside, blumeops rebuilds from live state"


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_database_wal_and_shm_are_0600_even_with_umask_0(tmp_path: Path,
                                                          umask_zero: None) -> None:
    state = tmp_path / "state"
    with Store(state) as store:
        store.event("created", "x")
        db = state / "state.db"
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()  # WAL mode: both live while it is open
        assert (mode(state), mode(db), mode(wal), mode(shm)) == (0o700, 0o600, 0o600, 0o600)


def test_an_older_wide_state_dir_and_database_are_tightened(tmp_path: Path,
                                                            umask_zero: None) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    db = sqlite3.connect(state / "state.db")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (x)")
    db.close()
    assert mode(state / "state.db") == 0o644  # what SQLite makes on its own
    with Store(state):
        assert mode(state) == 0o700 and mode(state / "state.db") == 0o600


def test_garbage_file_is_called_corrupt(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(StateError) as err:
        Store(tmp_path)
    assert CORRUPT in str(err.value)


def test_damaged_pages_are_called_corrupt_when_read(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        for i in range(3000):
            store.event("created", f"event {i} " + "x" * 100)
    db = tmp_path / "state.db"
    size = db.stat().st_size
    with db.open("r+b") as f:  # leave page 1 (the schema) alone, wreck the middle
        f.seek(size // 2)
        f.write(os.urandom(16 * 4096))
    with pytest.raises(StateError) as err, Store(tmp_path) as store:
        store.events(limit=10_000)
    assert CORRUPT in str(err.value)


# The child: write a little, then hit the file size limit in the middle of a write.
FULL_DISK_CHILD = """
import resource, signal, sys
from blumeops.state.store import StateError, Store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
store = Store(sys.argv[1])
store.event("created", "before the disk filled")
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
try:
    store.event("created", "x" * 500_000)
except StateError as exc:
    print(exc)
    sys.exit(3)
sys.exit(0)
"""


def test_full_disk_says_free_space_and_leaves_the_database_intact(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    message = proc.stdout.strip()
    assert message.startswith(f"no space left on device writing {tmp_path.resolve()}"), message
    assert "free some space" in message and "corrupt" not in message
    assert "move it aside" not in message
    assert "Traceback" not in proc.stderr
    with Store(tmp_path) as store:  # intact: what was written before is all there
        assert [e.message for e in store.events()] == ["before the disk filled"]
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


OPEN_FULL_CHILD = """
import resource, signal, sys
from blumeops.state.store import StateError, Store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
try:
    Store(sys.argv[1]).close()
except StateError as exc:
    print(exc)
    sys.exit(3)
"""


def test_full_disk_at_open_is_not_called_corrupt(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.set("applied", "yes")
    proc = subprocess.run([sys.executable, "-c", OPEN_FULL_CHILD, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.startswith("no space left on device writing"), proc.stdout
    with Store(tmp_path) as store:
        assert store.get("applied") == "yes"
