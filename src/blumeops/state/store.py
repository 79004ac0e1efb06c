"""The lab's memory: one SQLite file (STATE/state.db) of what was applied, when, and how.

Four tables: ``resources`` (per-resource digests and secret fingerprints, so a plan
compares against what was really applied), ``syncs`` (one row per apply: revision,
timing, result, counts), ``events`` (a timeline for status and the UI) and ``kv``
(small facts such as the applied revision).

Why SQLite: one file, transactions, safe readers while an apply writes (WAL), and two
processes (an apply and a `status`) can share it with ``busy_timeout``. Nothing here
ever holds a secret value: ``secrets_fp`` is a keyed fingerprint (secrets/fingerprint.py).

Times are ISO 8601 UTC strings, so the file reads well in the ``sqlite3`` shell.

The file is the operator's alone: created 0600 (SQLite gives its -wal and -shm files the
database's mode) in the 0700 state dir. Every SQLite failure that is not a bug reaches
callers as a StateError whose advice fits its cause (state/errors.py).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from blumeops.state.dirs import private_dir
from blumeops.state.errors import StateError, explain

__all__ = ["EventRow", "ResourceRow", "StateError", "Store", "SyncRow"]

DB_FILE = "state.db"
BUSY_TIMEOUT_MS = 10_000
SYNC_RESULTS = ("ok", "failed", "partial", "invalid")  # invalid: the catalog was rejected
EVENT_KINDS = ("created", "updated", "deleted", "restarted", "healed", "failed", "error",
               "stopped")

# Each entry migrates version i to i+1; append, never edit a released one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE resources (
        id TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        service TEXT,
        digest TEXT NOT NULL,
        secrets_fp TEXT,
        applied_at TEXT NOT NULL
    );
    CREATE INDEX resources_target ON resources (target);
    CREATE TABLE syncs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        revision TEXT NOT NULL,
        catalog_hash TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        duration_s REAL,
        result TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT '{}',
        author TEXT,
        message TEXT,
        pid INTEGER,
        host TEXT
    );
    CREATE INDEX syncs_result ON syncs (result, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        service TEXT,
        resource TEXT,
        message TEXT NOT NULL
    );
    CREATE INDEX events_service ON events (service, id);
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Syncs started and not yet finished in this process, as (database, id): how a sync of
# our own pid is told apart from one a crashed earlier Store in this process left behind.
_ACTIVE: set[tuple[str, int]] = set()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ResourceRow:
    """What was last applied for one resource (id is Resource's stable id)."""

    id: str
    target: str
    kind: str
    name: str
    digest: str
    service: str | None = None
    secrets_fp: str | None = None
    applied_at: str = field(default_factory=now)


@dataclass(frozen=True)
class SyncRow:
    id: int
    revision: str
    catalog_hash: str
    started_at: str
    finished_at: str | None
    duration_s: float | None
    result: str  # ok | failed | partial | running | interrupted
    summary: dict[str, Any]
    author: str | None
    message: str | None


@dataclass(frozen=True)
class EventRow:
    id: int
    at: str
    kind: str
    service: str | None
    resource: str | None
    message: str


class Store:
    """The state database. Open it, use it, close it (or use it as a context manager).

    `path` is the database file, or the state directory (then STATE/state.db): an
    existing directory, or a path that does not exist yet and has no suffix.
    Safe to share between threads of one process and between processes.
    """

    def __init__(self, path: Path) -> None:
        path = Path(path)
        is_dir = path.is_dir() or (not path.exists() and not path.suffix)
        self.path = (path / DB_FILE if is_dir else path).resolve()
        self._lock = threading.RLock()
        self._mine: set[tuple[str, int]] = set()
        self._closed = False
        try:
            private_dir(self.path.parent)
            _create_private(self.path)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                       isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise explain(exc, self.path) from None
        try:
            with self._errors():
                self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL
            self._migrate()
            self.mark_interrupted()
        except StateError:
            self._db.close()
            raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite failures as StateErrors with advice; bugs (a constraint, bad SQL) stay."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.Error as exc:
            raise explain(exc, self.path) from None

    # lifecycle

    def close(self) -> None:
        """Close; a sync this process started and never finished becomes 'interrupted'."""
        with self._lock:
            if self._closed:
                return
            _ACTIVE.difference_update(self._mine)
            self._mine.clear()
            with suppress(sqlite3.Error):  # closing must not fail; next open marks them
                self.mark_interrupted()
            self._db.close()
            self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front, so two
        writers queue on busy_timeout instead of failing on lock upgrade."""
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT may have rolled back already
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock, self._errors():
            cur = self._db.execute(sql, tuple(params))
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    def schema_version(self) -> int:
        rows = self._query("SELECT version FROM schema_version")
        return int(rows[0]["version"]) if rows else 0

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StateError(f"{self.path} has schema version {version}, newer than "
                                 f"this blumeops knows ({SCHEMA_VERSION}): upgrade blumeops")
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif version != SCHEMA_VERSION:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # resources

    def resources(self, target: str | None = None) -> dict[str, ResourceRow]:
        # Plain tuples in dataclass field order: this runs on every plan, over every row.
        sql = ("SELECT id, target, kind, name, digest, service, secrets_fp, applied_at"
               " FROM resources" + (" WHERE target = ?" if target else "") + " ORDER BY id")
        with self._lock, self._errors():
            rows = self._db.execute(sql, (target,) if target else ()).fetchall()
        return {r[0]: ResourceRow(*r) for r in rows}

    def record_resource(self, id: str, target: str, kind: str, name: str, digest: str,
                        service: str | None = None, secrets_fp: str | None = None) -> None:
        self.record_many([ResourceRow(id, target, kind, name, digest, service, secrets_fp)])

    def record_many(self, rows: Iterable[ResourceRow]) -> None:
        """Insert or replace many rows in one transaction (an apply writes hundreds)."""
        values = [(r.id, r.target, r.kind, r.name, r.service, r.digest, r.secrets_fp,
                   r.applied_at) for r in rows]
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO resources (id, target, kind, name, service, digest,"
                " secrets_fp, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)

    def forget_resource(self, id: str) -> None:
        self.forget_many([id])

    def forget_many(self, ids: Iterable[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM resources WHERE id = ?", [(i,) for i in ids])

    # syncs

    def start_sync(self, revision: str, catalog_hash: str, author: str | None = None,
                   message: str | None = None) -> int:
        """Record a sync as running and return its id (marks crashed ones first)."""
        self.mark_interrupted()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO syncs (revision, catalog_hash, started_at, result, author,"
                " message, pid, host) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (revision, catalog_hash, now(), author, message, os.getpid(),
                 socket.gethostname()))
            assert cur.lastrowid is not None
            self._mine.add((str(self.path), cur.lastrowid))
            _ACTIVE.add((str(self.path), cur.lastrowid))
            return cur.lastrowid

    def finish_sync(self, id: int, result: str, summary: dict[str, Any]) -> None:
        """Close sync `id` with ok | failed | partial | invalid and its summary."""
        if result not in SYNC_RESULTS:
            raise ValueError(f"sync result must be one of {SYNC_RESULTS}, not {result!r}")
        finished = now()
        with self.transaction() as db:
            row = db.execute("SELECT started_at FROM syncs WHERE id = ?", (id,)).fetchone()
            if row is None:
                raise StateError(f"no sync {id} in {self.path}")
            duration = (datetime.fromisoformat(finished)
                        - datetime.fromisoformat(row[0])).total_seconds()
            db.execute(
                "UPDATE syncs SET finished_at = ?, duration_s = ?, result = ?, summary = ?"
                " WHERE id = ?",
                (finished, duration, result, json.dumps(summary, sort_keys=True), id))
        _ACTIVE.discard((str(self.path), id))
        self._mine.discard((str(self.path), id))

    def syncs(self, limit: int = 50) -> list[SyncRow]:
        """Newest first."""
        return [_sync(r) for r in self._query(
            "SELECT * FROM syncs ORDER BY id DESC LIMIT ?", [limit])]

    def last_sync(self, result: str | None = None) -> SyncRow | None:
        """The newest sync, or the newest with `result` (e.g. 'ok')."""
        rows = self._query(
            "SELECT * FROM syncs" + (" WHERE result = ?" if result else "")
            + " ORDER BY id DESC LIMIT 1", [result] if result else [])
        return _sync(rows[0]) if rows else None

    def newest_sync_id(self, exclude: int | None = None) -> int:
        """The id of the newest sync (0 if none), not counting `exclude`: a sync that
        started after a plan was made means the plan may be stale."""
        rows = self._query("SELECT max(id) AS id FROM syncs WHERE id != ?",
                           [-1 if exclude is None else exclude])
        return int(rows[0]["id"] or 0)

    def mark_interrupted(self) -> int:
        """Mark 'running' syncs whose process is gone as 'interrupted'; how many.

        A sync still running in another live process on this host is left alone, so a
        `status` during an apply does not declare the apply dead.
        """
        host, me = socket.gethostname(), os.getpid()
        running = self._query("SELECT id, pid, host FROM syncs WHERE result = 'running'")
        dead = [r["id"] for r in running
                if r["host"] != host or r["pid"] is None
                or (r["pid"] == me and (str(self.path), r["id"]) not in _ACTIVE)
                or (r["pid"] != me and not _alive(int(r["pid"])))]
        if dead:
            with self.transaction() as db:
                db.executemany(
                    "UPDATE syncs SET result = 'interrupted', finished_at = ?"
                    " WHERE id = ? AND result = 'running'", [(now(), i) for i in dead])
        return len(dead)

    # events

    def event(self, kind: str, message: str, service: str | None = None,
              resource: str | None = None) -> int:
        """Append to the timeline. `kind` is one of EVENT_KINDS by convention."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO events (at, kind, service, resource, message)"
                " VALUES (?, ?, ?, ?, ?)", (now(), kind, service, resource, message))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def events(self, limit: int = 100, service: str | None = None) -> list[EventRow]:
        """Newest first, optionally for one service."""
        rows = self._query(
            "SELECT * FROM events" + (" WHERE service = ?" if service else "")
            + " ORDER BY id DESC LIMIT ?", ([service] if service else []) + [limit])
        return [EventRow(**dict(r)) for r in rows]

    def prune_events(self, keep: int = 10_000) -> int:
        """Drop all but the newest `keep` events; how many were dropped."""
        with self.transaction() as db:
            cur = db.execute("DELETE FROM events WHERE id <= "
                             "(SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
                             (keep,))
            return cur.rowcount

    # kv

    def get(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM kv WHERE key = ?", [key])
        return str(rows[0]["value"]) if rows else default

    def set(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def delete(self, key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM kv WHERE key = ?", (key,))


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it (SQLite would make it 0644
    and its -wal and -shm files follow the database's mode); tighten older ones."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with suppress(FileNotFoundError):
            mode = name.stat().st_mode & 0o777
            if mode & 0o077:
                name.chmod(mode & 0o600)


def _sync(r: sqlite3.Row) -> SyncRow:
    data = dict(r)
    data.pop("pid", None)
    data.pop("host", None)
    data["summary"] = json.loads(data["summary"] or "{}")
    return SyncRow(**data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
