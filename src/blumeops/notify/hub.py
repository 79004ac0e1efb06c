"""The notifier a controller carries: its listener turns steps into notices (rules.py),
routes each to the targets that asked for its event, and hands them to the worker.

Target URLs that are secret references are resolved on the worker's thread when sent, held
in memory only, and never written to an event, a log or the state database. Every message
is passed through the lab's redactor first, so a secret in a health detail or an error
cannot travel out either.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blumeops.catalog.paths import resolve_lab_path
from blumeops.notify.rules import Notice, Rules
from blumeops.notify.send import send
from blumeops.notify.worker import Delivery, Worker
from blumeops.secrets.redact import redactor_for

if TYPE_CHECKING:
    from blumeops.engine.controller import Controller
    from blumeops.secrets.redact import Redactor


@dataclass
class _Config:
    commit: str | None
    lab: Any  # catalog.model.Lab
    lab_dir: Path
    urls: dict[str, str] | None = None  # target -> resolved URL (worker thread only)
    redact: Redactor | None = None
    previous: Redactor | None = None  # the last catalog's: its secrets are masked too


class Notifier:
    def __init__(self, controller: Controller, attempts: int = 6, backoff: float = 1.0) -> None:
        self.controller = controller
        self.rules = Rules()
        self._config: _Config | None = None
        self._lock = threading.Lock()
        self.worker = Worker(self._send, self._record, attempts, backoff)

    # -- the controller's listener -----------------------------------------------------------

    def listen(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "catalog":
            with self._lock:
                old = self._config
                self._config = _Config(data.get("commit"), data["lab"], Path(data["lab_dir"]),
                                       previous=old.redact if old else None)
        config = self._current()
        if config is None or config.lab.notify is None:
            return
        self.rules.repeat_after = config.lab.notify.repeat_after
        for notice in self.rules.step(kind, data, time.monotonic()):
            for name, target in config.lab.notify.targets.items():
                if notice.event in target.events:
                    self.worker.submit(Delivery(name, notice))

    def _current(self) -> _Config | None:
        """The applied commit's catalog; read from the live tree after a restart."""
        with self._lock:
            if self._config is None and self.controller.state.applied is not None:
                self._config = self._load()
            return self._config

    def _load(self) -> _Config | None:
        # lazy: keeps pydantic out of start-up
        from blumeops.lab.loader import load_lab

        ctl = self.controller
        live = ctl.state_dir / "source" / "live" / ctl.config.lab_path
        try:
            result = load_lab(resolve_lab_path(live))
        except Exception:
            return None
        if result.lab is None:
            return None
        return _Config(ctl.state.applied, result.lab, result.path.parent)

    # -- the worker's side -------------------------------------------------------------------

    def _send(self, target: str, notice: Notice) -> bool:
        config = self._current()
        if config is None or config.lab.notify is None:
            return True  # the section is gone: nothing to deliver to
        if target not in config.lab.notify.targets:
            return True
        url, redact = self._resolved(config, target)
        return send(url, redact(notice.title), redact(notice.body))

    def _resolved(self, config: _Config, target: str) -> tuple[str, Redactor]:
        if config.urls is None:
            config.urls = resolve_urls(config.lab, config.lab_dir)
        if config.redact is None:
            config.redact = redactor_for(config.lab, config.lab_dir).with_values_of(
                config.previous)
        return config.urls[target], config.redact

    def _record(self, kind: str, message: str) -> None:
        self.controller.store.event(kind, message)

    def close(self) -> None:
        self.worker.stop()


def resolve_urls(lab: Any, lab_dir: Path) -> dict[str, str]:
    """Target name -> Apprise URL, with secret references resolved (raises SecretError)."""
    from blumeops.secrets.resolve import resolve  # lazy: keeps pyrage out of start-up

    targets = lab.notify.targets if lab.notify is not None else {}
    refs = [(n, t.url) for n, t in targets.items() if t.url.startswith(("vault:", "op://"))]
    values = resolve(refs, lab_dir) if refs else {}
    return {n: values.get(n, t.url) for n, t in targets.items()}


def attach(controller: Controller) -> Notifier:
    """Give `controller` a notifier (it sends only when the catalog has `notify:`)."""
    notifier = Notifier(controller)
    controller.listeners.append(notifier.listen)
    return notifier
