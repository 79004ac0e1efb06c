"""The controller: follow a git branch, sync each new commit, heal drift in between.

One thread runs the loop; webhooks and API calls only wake it. A sync in progress
finishes, then the loop fetches again and syncs the newest commit once, so a burst of
pushes costs at most two syncs.

Each commit is checked out into `candidate/` and validated there. Only a valid commit is
copied into `live/` (in place, so running services keep their working directories), and
applied from it. An invalid commit is reported with its id and file:line, and the lab
keeps running the last good one.
"""

from __future__ import annotations

import filecmp
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blumeops.catalog.paths import resolve_lab_path
from blumeops.core.health import Health, worst
from blumeops.core.jobs import backup_events
from blumeops.engine.apply import apply, final_health, prepare
from blumeops.engine.heal import changed_services, note_restarts, record_drift
from blumeops.engine.local import LocalRuntime
from blumeops.engine.spec import runtime_spec
from blumeops.engine.targets import target_health
from blumeops.source.git import GitSource, SourceError
from blumeops.state.store import Store

APPLIED_KEY = "controller.applied_commit"
# A listener gets (kind, data) on the loop thread for each step the dashboard and the
# notifier care about; it must return quickly (queue the work) and never raise.
Listener = Callable[[str, dict[str, Any]], None]
PAUSED_KEY = "controller.paused"


@dataclass
class ControllerConfig:
    source_url: str
    branch: str = "main"
    lab_path: str = "."
    state_dir: Path = Path(".")
    interval: float = 60.0
    auto_sync: bool = True
    self_heal: bool = True
    prune: bool = True
    heal_interval: float | None = None  # default: the fetch interval
    # Where `vault:` secrets are read: `up` on your own checkout reads the vault beside
    # your working tree's lab (it is often not committed); None: beside the commit's lab.
    vault_dir: Path | None = None


@dataclass
class ControllerState:
    """What the API reports; replaced whole under the lock, read without it."""

    applied: str | None = None
    newest: str | None = None
    sync_state: str = "idle"  # idle | syncing | error
    paused: bool = False
    last_errors: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    lab_health: str = Health.unknown.value
    last_fetch_error: str | None = None
    newest_seen_at: float | None = None
    rejected: str | None = None  # the last commit whose catalog was invalid
    drift: list[str] = field(default_factory=list)  # resources off the applied commit
    targets: list[dict[str, Any]] = field(default_factory=list)  # clusters', the tailnet's
    # Passes since start: a watcher waits on these to know that a pass has happened.
    fetch_passes: int = 0  # fetches tried; counted once the pass chose to sync or not
    heal_passes: int = 0  # re-observations of the applied commit, counted when done
    wakes: int = 0  # requests for a pass now (webhook, sync, rollback, resume)
    wakes_handled: int = 0  # of those, how many a finished pass began after


class Controller:
    def __init__(self, config: ControllerConfig,
                 on_sync: Callable[[str, float, bool], None] | None = None) -> None:
        from blumeops.engine.metrics import Metrics  # lazy: keeps prometheus_client out of start-up

        self.config = config
        self.state_dir = config.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.source = GitSource(config.source_url, config.branch, config.lab_path,
                                self.state_dir / "source" / "repo")
        self.store = Store(self.state_dir)
        self.metrics = Metrics()
        self.state = ControllerState()
        self.state.applied = self.store.get(APPLIED_KEY)
        self.state.paused = self.store.get(PAUSED_KEY) == "1"
        self._wake = threading.Event()
        self._wake_lock = threading.Lock()  # counts wakes exactly under a burst
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one sync at a time
        self._wanted: str | None = None  # an explicit revision (rollback, manual sync)
        self._pids: dict[str, int | None] = {}
        self._spec: Any = None  # RuntimeSpec of the applied commit
        self._on_sync = on_sync
        self._thread: threading.Thread | None = None
        self.listeners: list[Listener] = []

    def _emit(self, kind: str, **data: Any) -> None:
        """Tell every listener; one that fails is skipped, never the loop's problem."""
        for listener in list(self.listeners):
            try:
                listener(kind, data)
            except Exception:  # a broken listener must not stop a sync
                continue

    # -- control ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="blumeops-controller",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.store.close()

    def wake(self) -> None:
        """Fetch and sync now (a webhook arrived, or someone asked)."""
        with self._wake_lock:
            self.state.wakes += 1
            self._wake.set()

    def request_sync(self, revision: str | None = None) -> str:
        """Sync `revision` (or the newest commit) on the loop thread; returns the target."""
        target = self.source.resolve(revision) if revision else self.source.fetch()
        self._wanted = target
        self.wake()
        return target

    def rollback(self, revision: str) -> str:
        """Sync an earlier commit and pause auto-sync until resumed (as ArgoCD does)."""
        target = self.source.resolve(revision)
        self.set_paused(True)
        self.store.event("rollback", f"rollback to {target[:12]}; auto-sync paused")
        self._wanted = target
        self.wake()
        return target

    def set_paused(self, paused: bool) -> None:
        self.state.paused = paused
        self.store.set(PAUSED_KEY, "1" if paused else "0")
        self._emit("paused", paused=paused)
        if not paused:
            self.wake()

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        heal_every = self.config.heal_interval or self.config.interval
        next_heal = time.monotonic() + heal_every
        while not self._stop.is_set():
            woke = self._wake.is_set()
            self._wake.clear()
            with self._wake_lock:  # after the clear: a later wake makes another pass
                seen = self.state.wakes
            try:
                synced = self.tick()
                if synced or (not woke and time.monotonic() >= next_heal):
                    if not synced:
                        self.heal()
                    next_heal = time.monotonic() + heal_every
            except Exception as exc:  # the loop must survive anything; report it
                self._error("loop", f"{type(exc).__name__}: {exc}")
            self.state.wakes_handled = seen
            jitter = random.uniform(0, self.config.interval * 0.1)
            self._wake.wait(min(self.config.interval + jitter, heal_every))

    def tick(self) -> bool:
        """One pass: fetch, and sync when a commit is wanted. True if it synced."""
        try:
            newest = self.source.fetch()
        except SourceError as exc:
            self.metrics.fetch_failures.inc()
            self.state.last_fetch_error = str(exc)
            self.store.event("fetch-failed", str(exc))
            self.state.fetch_passes += 1
            return False
        self.state.last_fetch_error = None
        if newest != self.state.newest:
            self.state.newest = newest
            self.state.newest_seen_at = time.time()
        wanted, self._wanted = self._wanted, None
        if wanted is None and self.config.auto_sync and not self.state.paused:
            # A commit that failed validation is not retried until a newer one arrives.
            done = (self.state.applied, self.state.rejected)
            wanted = newest if newest not in done else None
        self._update_lag()
        if wanted is not None:
            self.state.sync_state = "syncing"  # before the count: a watcher sees either
        self.state.fetch_passes += 1
        if wanted is None:
            return False
        self.sync(wanted)
        return True

    def _update_lag(self) -> None:
        behind = 0
        if self.state.applied and self.state.newest and self.state.applied != self.state.newest:
            ids = [c.id for c in self.source.log(limit=200)]
            behind = ids.index(self.state.applied) if self.state.applied in ids else len(ids)
        self.metrics.commits_behind.set(behind)
        seen = self.state.newest_seen_at
        lag = time.time() - seen if behind and seen else 0.0
        self.metrics.lag_seconds.set(lag)

    # -- sync -------------------------------------------------------------------------------

    def sync(self, commit: str) -> bool:
        """catalog -> render -> plan -> apply for one exact commit. True when applied."""
        # lazy: keeps pydantic out of start-up
        from blumeops.lab.loader import load_lab

        with self._lock:
            started = time.monotonic()
            self.state.sync_state = "syncing"
            self._emit("sync-started", commit=commit)
            candidate_root = self.state_dir / "source" / "candidate"
            live_root = self.state_dir / "source" / "live"
            try:
                info = self.source.commit_info(commit)
                candidate = self.source.checkout(commit, candidate_root)
            except SourceError as exc:
                return self._finish_failed(commit, started, [{"message": str(exc)}])
            result = load_lab(candidate)
            if not result.ok:
                errors = [{"commit": commit, "file": _relative(d.file, candidate_root),
                           "line": d.line, "col": d.col, "rule": d.rule, "message": d.message}
                          for d in result.errors]
                sync_id = self.store.start_sync(commit, "", info.author, info.subject)
                self.store.finish_sync(sync_id, "invalid", {"errors": errors[:50]})
                for e in errors[:20]:
                    self.store.event("invalid", f"{commit[:12]} {e['file']}:{e['line']}:"
                                     f"{e['col']}: {e['message']}")
                self.state.rejected = commit
                self._emit("commit-rejected", commit=commit, errors=errors[:50])
                return self._finish_failed(commit, started, errors, record=False)
            self.state.rejected = None
            sync_tree(candidate_root, live_root)
            # The live tree now holds exactly the candidate's files: reuse what was
            # derived from them rather than parse the catalog a second time.

            assert result.lab is not None
            self._spec = runtime_spec(result.lab, result.path.name, result.files)
            # Before apply: listeners learn the new catalog (its secrets, to redact what
            # the apply reports) before any health of it is published.
            self._emit("catalog", commit=commit, lab=result.lab,
                       lab_dir=self.config.vault_dir or self._lab_file(live_root).parent)
            report = self._apply(commit, info, live_root)
            # lazy: keeps pydantic out of start-up
            from blumeops.kubernetes.hook import after_sync  # the cluster's deploy branch

            after_sync(result.lab, result.path.name, commit, info.subject, self.state_dir,
                       self.store.event, self.source)
            ok = report is not None and report.ok
            duration = time.monotonic() - started
            self.metrics.syncs.labels(result="ok" if ok else "failed").inc()
            self.metrics.sync_duration.observe(duration)
            self.state.applied = commit
            self.state.drift = []
            self.store.set(APPLIED_KEY, commit)
            self.state.last_errors = [] if ok else [
                {"commit": commit, "service": k, "message": v}
                for k, v in (report.failed.items() if report else [])]
            self.state.sync_state = "idle" if ok else "error"
            self.store.prune_events()  # a long-running controller keeps the newest only
            self._update_lag()
            if self._on_sync:
                self._on_sync(commit, duration, ok)
            self._emit("sync-finished", commit=commit, ok=ok, duration=duration,
                       errors=self.state.last_errors,
                       changes=[c.as_dict() for c in report.plan.changes] if report else [])
            return ok

    def _lab_file(self, live_root: Path) -> Path:
        return resolve_lab_path(live_root / self.config.lab_path)

    def _runtime(self, live_root: Path) -> Any:
        """The local runtime for the applied commit; parses the catalog only after a
        restart (a heal before any sync)."""
        # lazy: keeps pydantic out of start-up
        from blumeops.lab.loader import load_lab

        lab_file = self._lab_file(live_root)
        if self._spec is None:
            result = load_lab(lab_file)
            if result.lab is None:
                return None
            self._spec = runtime_spec(result.lab, result.path.name, result.files)
        # Deploy branches are written by after_sync (kubernetes/hook.py), once per commit;
        # what needs a person's choice (a tailnet policy edited elsewhere) waits for one.
        from dataclasses import replace

        runtime = LocalRuntime(replace(self._spec, controller=True), lab_file,
                               self.state_dir)
        if self.config.vault_dir is not None:
            runtime.secrets_dir = self.config.vault_dir
        return runtime

    def _apply(self, commit: str, info: Any, live_root: Path) -> Any:
        runtime = self._runtime(live_root)
        prepared = prepare(runtime, self.store)
        if not self.config.prune:
            prepared.plan.changes = [c for c in prepared.plan.changes if c.action != "delete"]
        report = apply(runtime, prepared, self.store, revision=commit,
                       author=info.author if info else None,
                       message=info.subject if info else None)
        report.health = final_health(runtime)
        self._record_health(report.health, runtime)
        return report

    def _finish_failed(self, commit: str, started: float, errors: list[dict[str, Any]],
                       record: bool = True) -> bool:
        self.state.sync_state = "error"
        self.state.last_errors = errors
        self.metrics.syncs.labels(result="invalid" if not record else "failed").inc()
        self.metrics.sync_duration.observe(time.monotonic() - started)
        if record:
            self.store.event("sync-failed", f"{commit[:12]}: {errors[0]['message']}")
            self._emit("sync-failed", commit=commit, errors=errors)
        return False

    def _error(self, where: str, message: str) -> None:
        self.state.sync_state = "error"
        self.state.last_errors = [{"where": where, "message": message}]
        self.store.event("error", f"{where}: {message}")
        self._emit("sync-failed", commit=self.state.newest, errors=self.state.last_errors)

    # -- drift ------------------------------------------------------------------------------

    def heal(self) -> int:
        """Re-observe the applied commit; repair drift when self-heal is on. Returns fixes."""

        if self.state.applied is None:
            return 0
        live_root = self.state_dir / "source" / "live"
        with self._lock:
            runtime = self._runtime(live_root)
            if runtime is None:
                return 0
            restarted, known = note_restarts(runtime, self.store, self._pids)
            prepared = prepare(runtime, self.store)
            if not self.config.prune:
                prepared.plan.changes = [c for c in prepared.plan.changes
                                         if c.action != "delete"]
            fixes = len(prepared.plan.pending)
            # --no-self-heal reports drift (status "drift") instead of repairing it.
            self.state.drift = [] if self.config.self_heal else [
                c.id for c in prepared.plan.pending]
            ours: set[str] = set()
            if fixes and self.config.self_heal:
                self.metrics.drift_heals.inc(record_drift(self.store, prepared.plan))
                apply(runtime, prepared, self.store, revision=self.state.applied)
                ours = changed_services(prepared.plan)
            # A process killed while this pass ran is restarted by supervisord before the
            # pass ends: look again, or the new pid would become the baseline unnoted.
            late, self._pids = note_restarts(runtime, self.store, {
                n: p for n, p in known.items() if n not in ours})
            restarted += late
            self.metrics.drift_heals.inc(len(restarted))
            if (fixes and self.config.self_heal) or restarted:
                self._emit("drift-healed", resources=[c.id for c in prepared.plan.pending],
                           restarted=sorted(r[0] for r in restarted))
            self._record_health(final_health(runtime), runtime)
            self.state.heal_passes += 1
            return fixes if self.config.self_heal else 0

    def _record_health(self, healths: list[Any], runtime: Any) -> None:
        targets = target_health(runtime)  # ArgoCD's Applications, the tailnet policy
        self.state.services = [h.as_dict() for h in healths]
        self.state.targets = [t.as_dict() for t in targets]
        self.state.lab_health = worst([*(h.health for h in healths),
                                       *(t.health for t in targets)]).value
        self.metrics.set_health({h.service: h.health.value for h in healths})
        self.metrics.set_target_health({(t.target, t.name): t.health.value for t in targets})
        self._emit("health", services=self.state.services, lab_health=self.state.lab_health)

        for kind, job, detail in backup_events(healths, runtime.spec.services):
            self._emit(kind, job=job, detail=detail)
        # Each remote host, every pass: notifications turn the changes into one notice.
        down = runtime.unreachable()
        for session in runtime.unique_sessions():
            if session.remote:
                self._emit("host-unreachable" if session.name in down else "host-reachable",
                           host=session.name, detail=down.get(session.name, ""))

    # -- reading ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        s = self.state
        return {
            "source": {"url": self.source.shown_url, "branch": self.config.branch,
                       "lab_path": self.config.lab_path},
            "applied": s.applied, "newest": s.newest,
            "in_sync": s.applied is not None and s.applied == s.newest,
            "sync_state": s.sync_state, "auto_sync": self.config.auto_sync and not s.paused,
            "paused": s.paused, "self_heal": self.config.self_heal, "prune": self.config.prune,
            "health": s.lab_health, "services": s.services, "targets": s.targets,
            "last_errors": s.last_errors,
            "last_fetch_error": s.last_fetch_error, "drift": s.drift,
            "fetch_passes": s.fetch_passes, "heal_passes": s.heal_passes,
            "wakes": s.wakes, "wakes_handled": s.wakes_handled,
        }

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        return [{
            "id": r.id, "commit": r.revision, "author": r.author, "message": r.message,
            "started_at": r.started_at, "finished_at": r.finished_at,
            "duration_s": r.duration_s, "result": r.result, "changes": r.summary,
        } for r in self.store.syncs(limit)]

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{"id": e.id, "at": e.at, "kind": e.kind, "service": e.service,
                 "resource": e.resource, "message": e.message}
                for e in self.store.events(limit)]


def _relative(file: str, root: Path) -> str:
    """A path as the user knows it: relative to the repository's root."""
    try:
        return str(Path(file).resolve().relative_to(root.resolve()))
    except ValueError:
        return file


def sync_tree(src: Path, dest: Path) -> None:
    """Make `dest` a copy of `src`, in place: changed files replaced, extra ones removed.

    In place (not a rename of a new tree) so services whose working directory is in
    `dest` keep a valid one.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        target = dest / rel
        if path.is_dir():
            target.mkdir(exist_ok=True)
        elif not target.exists() or not filecmp.cmp(path, target, shallow=False):
            tmp = target.with_name(f".{target.name}.blumeops-tmp")
            shutil.copy2(path, tmp)
            tmp.replace(target)
    for path in sorted(dest.rglob("*"), reverse=True):
        if not (src / path.relative_to(dest)).exists():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
