"""What every service manager on a remote host shares: probes, file secrets, log tails.

The supervisor driver (remote_supervisor.py) and the unit managers' adapter (managed.py)
run services on a host blumeops reaches over a transport. Both probe each service on its
host (HTTP, TCP, or a health command run there), deliver a service's file secrets as
0600 files in its working directory, and show a Degraded service's last log lines.
These are the agent requests and the bookkeeping for that, in one place.

File secrets (`secrets: {X: {ref, file: PATH}}`): the value is written to PATH under the
service's working directory on the host (its lab dir + workdir), mode 0600, owned by the
user the service runs as, by atomic rename, carried only inside the put request's blobs
(SSH stdin). Which files blumeops wrote is kept in an index on the host
(`STATE/secrets/files.json`: "SERVICE:NAME" -> path, no values) so a secret or service
dropped from the catalog, and `down`, remove exactly those files and nothing else.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from blumeops.core.health import Health, ServiceHealth
from blumeops.transports.types import FileWrite

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.core.spec import ServiceSpec
    from blumeops.transports.types import JSON

# A Degraded service's log: the last lines, read from at most this many bytes at the end.
TAIL_LINES = 20
TAIL_BYTES = 4096


def probe_op(svc: ServiceSpec, cwd: str) -> JSON | None:
    """The agent request that probes `svc` on its host; None when it declares none.
    A health command runs in the service's lab dir there (`cwd`), argv as JSON."""
    probe = svc.probe
    if probe is None:
        return None
    if probe.kind == "command":
        if not probe.command:
            return None
        return {"op": "probe", "kind": "command", "argv": list(probe.command), "cwd": cwd,
                "timeout": probe.timeout}
    if not probe.port:
        return None
    return {"op": "probe", "kind": probe.kind, "host": svc.address, "port": probe.port,
            "path": probe.path, "timeout": probe.timeout}


def workdir(lab_dir: str, svc: ServiceSpec | None) -> str:
    """The service's working directory on the host: relative workdirs under its lab dir."""
    if svc is None or not svc.workdir:
        return lab_dir
    return posixpath.normpath(posixpath.join(lab_dir, svc.workdir))


def split_secrets(svc: ServiceSpec, values: Mapping[str, str]
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """(environment values, file secrets' values) of one service's secrets, by name."""
    env = {k: v for k, v in values.items() if k not in svc.secret_files}
    files = {k: v for k, v in values.items() if k in svc.secret_files}
    return env, files


def secret_index_path(state: str) -> str:
    return posixpath.join(state, "secrets", "files.json")


def index_op(path: str, stat: bool = False, root: str | None = None) -> JSON:
    """Read an index on the host; with `root`, its entries outside it are left out."""
    op: JSON = {"op": "index", "path": path, "stat": stat}
    if root:
        op["root"] = root
    return op


def index_trouble(answer: JSON | None) -> str:
    """Why an index on the host must be written again ("" when it is sound): unreadable
    (its files would be forgotten), or naming paths outside the lab dir (ignored)."""
    if not answer:
        return ""
    if answer.get("damaged"):
        return "the host's index of the files blumeops wrote is damaged: apply rewrites it"
    outside = answer.get("outside") or {}
    if outside:
        return ("the host's index of the files blumeops wrote names paths outside the lab "
                f"dir (ignored, dropped by apply): {', '.join(sorted(outside)[:5])}")
    return ""


def parse_index(answer: JSON | None) -> dict[str, str]:
    if not answer or "entries" not in answer:
        return {}
    return {str(k): str(v) for k, v in answer["entries"].items()}


def secret_files_missing(answer: JSON, services: Sequence[str],
                         spec: Mapping[str, ServiceSpec]) -> dict[str, str]:
    """Service -> why its file secrets must be delivered again, from the host's secret
    index (read with stat): a file deleted on the host, or an index that is damaged
    (then blumeops cannot tell which are there). "secret ..." reasons restart it."""
    entries = parse_index(answer)
    states = answer.get("files") or {}
    damaged = bool(answer.get("damaged"))
    out: dict[str, str] = {}
    for name in services:
        svc = spec.get(name)
        if svc is None or not svc.secret_files:
            continue
        if damaged:
            out[name] = "secret files to deliver again: the host's index of them is damaged"
            continue
        gone = [key for key in sorted(svc.secret_files)
                if states.get(entries.get(f"{name}:{key}", ""), {}).get("kind") != "file"]
        if gone:
            out[name] = f"secret file missing on the host: {', '.join(gone)}"
    return out


class SecretFiles:
    """The file secrets of one host's services: what to write, what to remove, and the
    new index, for one put batch."""

    def __init__(self, index: Mapping[str, str]) -> None:
        self.before = dict(index)
        self.after = dict(index)
        self.writes: list[FileWrite] = []

    def deliver(self, service: str, svc: ServiceSpec, lab_dir: str,
                values: Mapping[str, str], owner: str | None = None) -> dict[str, str]:
        """Queue the service's file secrets; returns the values left for its environment.
        A secret that lost its `file:` (or the service its secret) is dropped from the
        index, so `removes` deletes its old file."""
        env, files = split_secrets(svc, {str(k): str(v) for k, v in values.items()})
        base = workdir(lab_dir, svc)
        keep = {f"{service}:{name}" for name in files}
        for key in [k for k in self.after if k.startswith(f"{service}:") and k not in keep]:
            del self.after[key]
        for name, value in sorted(files.items()):
            path = posixpath.normpath(posixpath.join(base, svc.secret_files[name]))
            self.writes.append(FileWrite(path, value.encode(), secret=True, owner=owner))
            self.after[f"{service}:{name}"] = path
        return env

    def forget(self, service: str) -> None:
        """The service left the catalog: its secret files go."""
        for key in [k for k in self.after if k.startswith(f"{service}:")]:
            del self.after[key]

    @property
    def removes(self) -> list[str]:
        kept = set(self.after.values())
        return sorted({p for p in self.before.values() if p not in kept})

    @property
    def changed(self) -> bool:
        return self.after != self.before

    def index_write(self, path: str) -> FileWrite:
        return FileWrite(path, json.dumps(self.after, indent=2, sort_keys=True).encode(),
                         secret=True)


def tail_op(log: str, service: str, env_file: str, state: str) -> JSON:
    """The last lines of a service's log, its secret values masked on the host: those of
    its JSON env file and of the file secrets the host's index (under `state`) lists."""
    return {"op": "tail", "paths": [log], "bytes": TAIL_BYTES, "lines": TAIL_LINES,
            "redact_env": [env_file],
            "redact_index": [secret_index_path(state), f"{service}:"]}


def log_hint(text: str | None) -> str:
    """A log tail as one line for the health table, as the local driver shows it."""
    if text is None:
        return "(no log yet)"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines) if lines else "(log is empty)"


def probed_health(svc: ServiceSpec, probe: JSON | None, started: Mapping[str, float],
                  where: str, word: str, pid: Any, up: str = "running") -> ServiceHealth:
    """The health of a service its manager says is up, from its probe on the host: no
    probe is Unknown; a failing one is Progressing while the service is young (startsecs
    + 10 s since blumeops started it), then Degraded."""
    import time


    name = svc.name
    if probe is None:
        return ServiceHealth(name, Health.unknown, f"{up} {where}; no health probe declared",
                             word, pid, svc.urls)
    if probe.get("ok"):
        return ServiceHealth(name, Health.healthy, f"{probe['detail']} {where}", word, pid,
                             svc.urls)
    at = started.get(name)
    young = at is not None and time.monotonic() - at < svc.startsecs + 10
    return ServiceHealth(name, Health.progressing if young else Health.degraded,
                         f"{probe.get('detail') or probe.get('message')} {where}", word, pid,
                         svc.urls)
