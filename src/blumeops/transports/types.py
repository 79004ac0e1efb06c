"""Plain data shared by every transport: what goes to a host and what comes back.

The engine and the drivers speak these types; only `wire.py` and `agent.py` know the
JSON they become. Frozen dataclasses, so a batch or an observation can be passed around
threads without copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

JSON = dict[str, Any]

SECRET_MODE = 0o600
MIN_PYTHON = (3, 9)


class Reason(StrEnum):
    """Why a host could not be reached; each value names a different fix for the user."""

    refused = "connection refused"
    timeout = "timed out"
    auth_failed = "authentication failed"
    host_key_unknown = "host key unknown"
    host_key_changed = "host key changed"
    unresolved = "name not resolved"
    dropped = "connection dropped"
    other = "ssh failed"


@dataclass(frozen=True)
class FileWrite:
    """One file to land on a host, whole, by atomic rename.

    `secret` forces mode 0600 whatever `mode` says. `owner` (a user name) is applied with
    chown, which needs the SSH user to be root or that user.
    """

    path: str
    content: bytes
    mode: int = 0o644
    secret: bool = False
    owner: str | None = None

    @property
    def effective_mode(self) -> int:
        return SECRET_MODE if self.secret else self.mode


@dataclass(frozen=True)
class FileBatch:
    """Writes and removals sent in one round trip.

    Removals must lie under `root` once symlinks are resolved: the agent refuses the whole
    batch otherwise, so a bad path in the catalog cannot delete outside the lab's tree.
    """

    writes: Sequence[FileWrite] = ()
    removes: Sequence[str] = ()
    root: str | None = None
    prune: bool = False  # also remove the directories removals leave empty (below root)


@dataclass(frozen=True)
class PutResult:
    written: tuple[str, ...]
    removed: tuple[str, ...]
    swept: tuple[str, ...] = ()  # temp files left by an earlier dropped connection


@dataclass(frozen=True)
class FileState:
    """What a path is on the host, without its content: enough to diff against a render."""

    path: str
    exists: bool
    kind: str = "missing"  # file, dir, link, other, missing
    sha256: str | None = None
    mode: int | None = None
    size: int | None = None
    owner: str | None = None


@dataclass(frozen=True)
class PortCheck:
    host: str
    port: int


@dataclass(frozen=True)
class ManagerFacts:
    """One service manager as the host shows it."""

    name: str  # systemd, launchd, supervisor
    path: str | None  # its control command on PATH, if any
    running: bool  # systemd is PID 1 / launchd present / supervisor socket answers


@dataclass(frozen=True)
class HostFacts:
    """The host as it answers: compared with its catalog declaration by `facts.check`."""

    system: str  # platform.system(): Linux, Darwin, ...
    machine: str  # x86_64, arm64, aarch64 ...
    python: str | None  # python3's version, None when there is no python3
    hostname: str = ""
    release: str = ""
    user: str = ""
    home: str = ""
    uid: int | None = None  # the SSH user's: launchd's gui/UID domain
    synology: bool = False
    managers: Mapping[str, ManagerFacts] = field(default_factory=dict)

    @property
    def python_ok(self) -> bool:
        if self.python is None:
            return False
        parts = tuple(int(p) for p in self.python.split(".")[:2] if p.isdigit())
        return parts >= MIN_PYTHON


@dataclass(frozen=True)
class ObserveRequest:
    """Everything one observation should look at; a host answers it in one round trip."""

    paths: Sequence[str] = ()
    ports: Sequence[PortCheck] = ()
    pidfiles: Sequence[str] = ()
    supervisor_socket: str | None = None


@dataclass(frozen=True)
class Observation:
    facts: HostFacts
    files: Mapping[str, FileState]
    ports: Mapping[PortCheck, bool]
    pidfiles: Mapping[str, int | None]  # pidfile -> live pid, None when not running


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
