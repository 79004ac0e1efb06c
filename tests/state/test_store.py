"""The SQLite state store: round trips, crash recovery, two processes, schema."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from blumeops.state.store import SCHEMA_VERSION, ResourceRow, StateError, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state" / "state.db") as s:
        yield s


def test_dir_or_file(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        assert s.path == (tmp_path / "state.db").resolve()
    assert (tmp_path / "state.db").exists()
    with Store(tmp_path / "new" / "state") as s:  # a state dir not created yet
        assert s.path.name == "state.db" and s.path.parent.name == "state"


def test_schema_version_and_wal(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION == 1
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_reopen_keeps_data_and_version(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        s.set("applied_revision", "abc123")
    with Store(tmp_path) as s:
        assert s.get("applied_revision") == "abc123"
        assert s.schema_version() == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="newer than this blumeops"):
        Store(tmp_path)


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match=r"state\.db is corrupt: move it aside"):
        Store(tmp_path)


def test_resources_round_trip(store: Store) -> None:
    store.record_resource("supervisor@box/program/api", "supervisor@box", "program", "api",
                          "d1", service="api", secrets_fp="fp1")
    store.record_resource("caddy@box/config/box", "caddy@box", "config", "box", "d2")
    rows = store.resources()
    assert set(rows) == {"supervisor@box/program/api", "caddy@box/config/box"}
    api = rows["supervisor@box/program/api"]
    assert (api.digest, api.service, api.secrets_fp) == ("d1", "api", "fp1")
    assert api.applied_at
    store.record_resource("supervisor@box/program/api", "supervisor@box", "program", "api",
                          "d3", service="api")
    assert store.resources()["supervisor@box/program/api"].digest == "d3"
    assert list(store.resources(target="caddy@box")) == ["caddy@box/config/box"]
    store.forget_resource("caddy@box/config/box")
    assert list(store.resources()) == ["supervisor@box/program/api"]


def test_record_many_thousand_rows(store: Store) -> None:
    rows = [ResourceRow(f"files@box/file/svc{i}:x", "files@box", "file", f"svc{i}:x",
                        f"digest{i}", service=f"svc{i}") for i in range(1000)]
    store.record_many(rows)  # one transaction; timed by hand at a few ms
    got = store.resources()
    assert len(got) == 1000 and got["files@box/file/svc999:x"].digest == "digest999"
    store.forget_many(r.id for r in rows[:500])
    assert len(store.resources()) == 500


def test_failed_batch_rolls_back(store: Store) -> None:
    bad = ResourceRow("b", "t", "k", "n", None)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.record_many([ResourceRow("a", "t", "k", "n", "d"), bad])
    assert store.resources() == {}


def test_sync_lifecycle(store: Store) -> None:
    assert store.last_sync() is None
    sid = store.start_sync("abc123", "h1", author="erich", message="first")
    running = store.last_sync()
    assert running is not None and running.result == "running" and running.id == sid
    summary = {"create": 3, "update": 0, "delete": 0, "unchanged": 1, "failed": []}
    store.finish_sync(sid, "ok", summary)
    sync = store.last_sync("ok")
    assert sync is not None
    assert (sync.revision, sync.catalog_hash, sync.author, sync.message) == (
        "abc123", "h1", "erich", "first")
    assert sync.summary == summary and sync.finished_at and sync.duration_s is not None
    assert sync.duration_s >= 0
    sid2 = store.start_sync("def", "h2")
    store.finish_sync(sid2, "failed", {"failed": ["api"]})
    assert [s.id for s in store.syncs()] == [sid2, sid]
    assert [s.id for s in store.syncs(limit=1)] == [sid2]
    last_ok = store.last_sync("ok")
    assert last_ok is not None and last_ok.id == sid
    with pytest.raises(ValueError):
        store.finish_sync(sid2, "running", {})
    with pytest.raises(StateError):
        store.finish_sync(12345, "ok", {})


def test_unfinished_sync_interrupted_on_close(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        sid = s.start_sync("r", "h")
    with Store(tmp_path) as s:
        sync = s.last_sync()
        assert sync is not None and sync.id == sid and sync.result == "interrupted"


CRASH = """
import os, sys
from pathlib import Path
from blumeops.state.store import Store
s = Store(Path(sys.argv[1]))
print(s.start_sync("r", "h"), flush=True)
os._exit(1)  # a crash: no finish, no close
"""


def test_crashed_sync_interrupted_at_next_open(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    sid = int(proc.stdout)
    with Store(tmp_path) as s:
        sync = s.last_sync()
        assert sync is not None and sync.id == sid and sync.result == "interrupted"


def test_live_sync_in_another_process_is_left_running(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        sid = s.start_sync("r", "h")
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            # Pretend the sync belongs to the live other process.
            db = sqlite3.connect(s.path)
            db.execute("UPDATE syncs SET pid = ? WHERE id = ?", (other.pid, sid))
            db.commit()
            db.close()
            with Store(tmp_path) as reader:  # e.g. `blumeops status` during an apply
                sync = reader.last_sync()
                assert sync is not None and sync.result == "running"
        finally:
            other.kill()
            other.wait()
        s.start_sync("r2", "h2")  # the next start notices the other process is gone
        assert [x.result for x in s.syncs()] == ["running", "interrupted"]


def test_second_store_in_process_does_not_kill_first(tmp_path: Path) -> None:
    with Store(tmp_path) as engine:
        sid = engine.start_sync("r", "h")
        Store(tmp_path).close()  # a status read in another thread, say
        engine.finish_sync(sid, "ok", {})
        sync = engine.last_sync()
        assert sync is not None and sync.result == "ok"


def test_events(store: Store) -> None:
    store.event("created", "created api", service="api", resource="supervisor@box/program/api")
    store.event("restarted", "restarted web", service="web")
    store.event("error", "caddy admin unreachable")
    events = store.events()
    assert [e.kind for e in events] == ["error", "restarted", "created"]
    assert [e.message for e in store.events(service="api")] == ["created api"]
    assert store.events(service="api")[0].resource == "supervisor@box/program/api"
    assert len(store.events(limit=2)) == 2
    assert store.prune_events(keep=1) == 2
    assert [e.kind for e in store.events()] == ["error"]


def test_kv(store: Store) -> None:
    assert store.get("missing") is None
    assert store.get("missing", "d") == "d"
    store.set("k", "v1")
    store.set("k", "v2")
    assert store.get("k") == "v2"
    store.delete("k")
    assert store.get("k") is None


WRITER = """
import sys
from pathlib import Path
from blumeops.state.store import ResourceRow, Store
with Store(Path(sys.argv[1])) as s:
    for i in range(50):
        s.record_many([ResourceRow(f"p{i}-{j}", "t", "k", "n", "d") for j in range(20)])
        s.event("updated", f"proc {i}")
"""


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    Store(tmp_path).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
    with Store(tmp_path) as s:
        for i in range(50):
            s.record_many([ResourceRow(f"m{i}-{j}", "t", "k", "n", "d") for j in range(20)])
            s.event("updated", f"main {i}")
            s.resources()
    assert proc.wait(timeout=120) == 0
    with Store(tmp_path) as s:
        assert len(s.resources()) == 2000
        assert len(s.events(limit=1000)) == 100


def test_threads_share_one_store(store: Store) -> None:
    def work(n: int) -> None:
        for i in range(50):
            store.event("updated", f"{n}-{i}")
            store.set(f"k{n}", str(i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.events(limit=1000)) == 200
    assert store.get("k3") == "49"
