"""What the pages show beyond the controller's status: the applied catalog, its rendered
resources, probe history, and diffs of commits. Cached per applied commit."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blumeops.catalog.paths import resolve_lab_path
from blumeops.secrets.redact import Redactor, redactor_for

if TYPE_CHECKING:
    from blumeops.engine.controller import Controller

PROBES_KEPT = 40
PROBE_REPEAT_S = 60.0
LAST_TTL_S = 2.0
DIFF_MAX = 64 * 1024
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Applied:
    commit: str | None
    lab: Any = None  # catalog.model.Lab, None before the first sync
    resources: list[Any] = field(default_factory=list)
    redact: Redactor = field(default_factory=lambda: Redactor(()))


class LabView:
    def __init__(self, controller: Controller, extra_secrets: tuple[str, ...]) -> None:
        self.controller = controller
        self.extra = extra_secrets
        self._lock = threading.Lock()
        self._applied = Applied(None, redact=Redactor(extra_secrets))
        self._diffs: dict[str, str] = {}
        self.probes: dict[str, deque[dict[str, Any]]] = {}
        self.changes: dict[str, list[dict[str, Any]]] = {}  # commit -> plan changes
        self._next: tuple[str | None, Any, Path] | None = None  # a catalog being applied
        self._last_catalog: str | None = None
        self._generation = 0
        self._last: tuple[int, float, dict[str, dict[str, Any]]] | None = None

    def last_changes(self) -> dict[str, dict[str, Any]]:
        """Each service's newest event; read again after a controller step, or after
        LAST_TTL_S (events the loop records without a step), not on every page view."""
        now = time.monotonic()
        cached = self._last
        if cached is not None and cached[0] == self._generation and now - cached[1] < LAST_TTL_S:
            return cached[2]
        generation = self._generation
        last: dict[str, dict[str, Any]] = {}
        for e in self.controller.store.events(300):
            if e.service and e.service not in last:
                last[e.service] = {"at": e.at, "kind": e.kind}
        self._last = (generation, now, last)
        return last

    # -- listener ----------------------------------------------------------------------------

    def listen(self, kind: str, data: dict[str, Any]) -> None:
        self._generation += 1
        if kind == "catalog":
            # The new commit's secrets are masked from now on, before its apply reports.
            with self._lock:
                self._next = (data.get("commit"), data["lab"], Path(data["lab_dir"]))
        elif kind == "health":
            at = time.time()
            for svc in data.get("services", []):
                ring = self.probes.setdefault(str(svc["service"]), deque(maxlen=PROBES_KEPT))
                last = ring[0] if ring else None
                # A change is kept at once; the same verdict once a minute at most.
                if (last is None or last["health"] != svc["health"]
                        or at - last["at"] >= PROBE_REPEAT_S):
                    ring.appendleft({"at": at, "health": svc["health"],
                                     "detail": svc["detail"]})
        elif kind == "sync-finished":
            commit = str(data.get("commit"))
            self.changes[commit] = [
                {"id": c["id"], "action": c["action"], "reasons": c.get("reasons", []),
                 "diff": c.get("diff", "")}
                for c in data.get("changes", []) if c.get("action") not in ("noop", "unchanged")]
            while len(self.changes) > 200:
                self.changes.pop(next(iter(self.changes)))

    # -- the applied catalog -----------------------------------------------------------------

    def applied(self) -> Applied:
        """The catalog of the applied commit (loaded once per commit; blocking)."""
        commit = self.controller.state.applied
        with self._lock:
            if self._next is not None:  # a sync is applying a new catalog
                new_commit, lab, lab_dir = self._next
                self._next = None
                self._applied = self._from_lab(new_commit, lab, lab_dir)
            # (A dashboard made after the first sync has no catalog yet: load it.)
            if self._applied.commit == commit or (
                    self._last_catalog is not None
                    and self._applied.commit == self._last_catalog):
                return self._applied
            self._applied = self._load(commit)
            return self._applied

    def _from_lab(self, commit: str | None, lab: Any, lab_dir: Path) -> Applied:
        # lazy: keeps pydantic out of start-up
        from blumeops.render import RenderContext, render_lab

        self._last_catalog = commit
        resources = render_lab(lab, RenderContext())
        redact = redactor_for(lab, lab_dir, self.extra).with_values_of(self._applied.redact)
        return Applied(commit, lab, resources, redact)

    def _load(self, commit: str | None) -> Applied:
        # lazy: keeps pydantic out of start-up
        from blumeops.lab.loader import load_lab
        from blumeops.render import RenderContext, render_lab

        ctl = self.controller
        live = ctl.state_dir / "source" / "live" / ctl.config.lab_path
        if commit is None or not live.exists():
            return Applied(commit, redact=Redactor(self.extra))
        try:
            result = load_lab(resolve_lab_path(live))
        except Exception:
            return Applied(commit, redact=Redactor(self.extra))
        if result.lab is None:
            return Applied(commit, redact=Redactor(self.extra))
        resources = render_lab(result.lab, RenderContext(result.path.name))
        redact = redactor_for(result.lab, result.path.parent, self.extra).with_values_of(
            self._applied.redact)
        return Applied(commit, result.lab, resources, redact)

    # -- git ---------------------------------------------------------------------------------

    def diff(self, commit: str) -> str:
        """The commit's change to the lab directory (`git show`), cut at DIFF_MAX."""
        if not _SHA.match(commit):
            return ""
        with self._lock:
            if commit in self._diffs:
                return self._diffs[commit]
        src = self.controller.source
        cmd = ["git", "--git-dir", str(src.cache_dir), "show", "--no-color", "--format=",
               "--no-ext-diff", "--no-textconv", commit, "--", str(src.lab_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                                  check=False, errors="replace")
            text = proc.stdout if proc.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            text = ""
        if len(text) > DIFF_MAX:
            text = text[:DIFF_MAX] + "\n... (cut)\n"
        with self._lock:
            self._diffs[commit] = text
            while len(self._diffs) > 200:
                self._diffs.pop(next(iter(self._diffs)))
        return text

    def log_tail(self, service: str, lines: int = 40) -> list[str]:
        """The service's last log lines, redacted (or withheld when it cannot be)."""
        applied = self.applied()
        if applied.lab is None or service not in applied.lab.services:
            return []
        path = self.controller.state_dir / "logs" / f"{service}.log"
        try:
            with path.open("rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 16 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ["(no log on this machine)"]
        return applied.redact.lines("\n".join(text.splitlines()[-lines:]))


def live_lab_dir(ctl: Controller) -> Path:
    return ctl.state_dir / "source" / "live" / ctl.config.lab_path
