"""What the systemd and launchd managers share: a unit's state, health, batched round trips.

Both managers work on a remote host only through a `Transport`, and both keep the
number of round trips fixed whatever the number of services: one to observe (file
hashes and the manager's own view of every unit), one more to change things. `Batch`
is how: it collects agent ops (observe, put, run) and sends them as one `batch` request.
`UnitManager` is what both offer the engine's adapter (drivers/managed.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from blumeops.core.health import Health
from blumeops.transports.base import (
    Transport,
    observe_request,
    parse_observation,
    parse_put,
    parse_run,
    put_request,
    run_request,
)
from blumeops.transports.types import (
    JSON,
    FileBatch,
    FileState,
    HostFacts,
    ObserveRequest,
    PutResult,
    RunResult,
)

# The stdlib-only program a launchd service with secrets starts through (see
# `secrets_wrapper.py`): the host has python3 but not blumeops.
WRAPPER_SOURCE = Path(__file__).with_name("secrets_wrapper.py")


@dataclass(frozen=True)
class UnitState:
    """One unit (systemd) or job (launchd) as its host shows it.

    `state` is the manager's own word: active/inactive/failed/activating... for systemd,
    running/not running/exited N/not loaded for launchd.
    """

    name: str
    exists: bool  # the unit file / plist is present
    sha256: str | None  # of that file
    state: str
    running: bool
    pid: int | None
    detail: str = ""
    enabled: bool = False  # systemd: UnitFileState=enabled; launchd: loaded in the domain
    # A scheduled job: what the manager says of its schedule and last run (systemd: the
    # timer's and the service's `show` properties, plus `TimerSha256`; launchd: the
    # `print` lines). None for a service kept running.
    job: Mapping[str, str] | None = None


_PROGRESSING = {"activating", "reloading", "deactivating", "refreshing", "spawn scheduled",
                "waiting"}


def health_word(unit: UnitState) -> str:
    """The engine's health (engine.health.Health values) for a unit's state."""
    if not unit.exists:
        return Health.missing.value
    if unit.running or unit.state in ("active", "running"):
        return Health.healthy.value
    if unit.state in _PROGRESSING:
        return Health.progressing.value
    if unit.state in ("unknown", ""):
        return Health.unknown.value
    # failed, inactive, exited N, not running, not loaded: it should run and does not.
    return Health.degraded.value


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@dataclass
class Batch:
    """Agent ops collected for one round trip; `send` returns their results in order."""

    ops: list[JSON] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    argvs: list[Sequence[str]] = field(default_factory=list)

    def observe(self, paths: Sequence[str]) -> int:
        self.ops.append(observe_request(ObserveRequest(paths=list(paths))))
        self.argvs.append(())
        return len(self.ops) - 1

    def put(self, batch: FileBatch) -> int:
        request, blobs = put_request(batch)
        self.ops.append(request)
        self.blobs.extend(blobs)
        self.argvs.append(())
        return len(self.ops) - 1

    def run(self, argv: Sequence[str], timeout: float = 120.0) -> int:
        request, _ = run_request(argv, timeout=timeout)
        self.ops.append(request)
        self.argvs.append(tuple(argv))
        return len(self.ops) - 1

    def __len__(self) -> int:
        return len(self.ops)

    def send(self, transport: Transport) -> BatchResult:
        result = transport.call({"op": "batch", "ops": self.ops}, self.blobs)
        return BatchResult(self, list(result["results"]))


@dataclass
class BatchResult:
    batch: Batch
    results: list[JSON]

    def files(self, index: int) -> Mapping[str, FileState]:
        return parse_observation(self.results[index]).files

    def facts(self, index: int) -> HostFacts:
        return parse_observation(self.results[index]).facts

    def put(self, index: int) -> PutResult:
        return parse_put(self.results[index])

    def run(self, index: int) -> RunResult:
        return parse_run(self.batch.argvs[index], self.results[index])


# How to read the units' states from the answers to the ops a manager added to a batch.
StateReader = Callable[[BatchResult], dict[str, UnitState]]


def no_states(result: BatchResult) -> dict[str, UnitState]:
    """The reader of an observation of no unit: nothing was added to the batch."""
    return {}


class UnitManager(Protocol):
    """What a unit manager (systemd.SystemdManager, launchd.LaunchdManager) offers the
    engine's adapter (drivers/managed.py). `name` is always a service's catalog name."""

    @property
    def unit_dir(self) -> str:
        """Where the manager keeps unit files (systemd units, launchd plists)."""
        ...

    def unit_path(self, name: str) -> str:
        """The service's unit file on the host."""
        ...

    def observe_in(self, batch: Batch, names: Sequence[str]) -> StateReader:
        """Add the observation of these units (their files' hashes, the manager's own
        view, a job's last run and schedule) to `batch`; how to read their states from its
        result. `observe` is this in a round trip of its own."""
        ...

    def apply(self, upsert: Mapping[str, str], restart: Sequence[str] = (),
              remove: Sequence[str] = (), *,
              secrets: Mapping[str, Mapping[str, str]] | None = None,
              timers: Mapping[str, str] | None = None) -> dict[str, str]:
        """Make units exist with these texts (and secret values), restart `restart`,
        remove `remove`; name -> error for what did not converge. `timers`: each job's
        timer text (systemd; a launchd plist holds its own schedule)."""
        ...

    def owner(self, text: str) -> str | None:
        """Who the unit with this text runs as, when it says (system units only): the
        owner of its secret files. None: the SSH user."""
        ...


def expand_home(path: str, home: str) -> str:
    """`~/x` as the host's absolute path: what launchctl arguments and put's removal
    root need (the agent expands `~/` in file paths, not there)."""
    return f"{home}{path[1:]}" if path.startswith("~/") and home else path


def failure(result: RunResult) -> str:
    """A short, one-line reason from a failed command (its own words)."""
    said = " / ".join(line.strip() for line in (result.stderr or result.stdout)
                      .strip().splitlines()[-3:] if line.strip())
    return f"`{' '.join(result.argv[:3])}` exited {result.returncode}" + (
        f": {said}" if said else "")


def systemd_env_file(values: Mapping[str, str]) -> str:
    """Secret values as a systemd EnvironmentFile: KEY="value", POSIX double-quote escapes.

    systemd.exec(5): inside double quotes a backslash escapes ` " \\ $ and newlines are
    kept, so any value without NUL round-trips. Sorted, so equal values hash equal.
    """
    lines = []
    for key, value in sorted(values.items()):
        if "\0" in value or "\0" in key:
            raise ValueError(f"secret {key}: a NUL byte cannot be in an environment value")
        escaped = "".join("\\" + c if c in '`"\\$' else c for c in value)
        lines.append(f'{key}="{escaped}"\n')
    return "".join(lines)


def json_env_file(values: Mapping[str, str]) -> str:
    """Secret values in the JSON shape `blumeops.secrets.envfile` writes and the wrapper
    reads (same serialisation, so hashes compare across drivers)."""
    import json

    return json.dumps({str(k): str(v) for k, v in values.items()}, sort_keys=True)
