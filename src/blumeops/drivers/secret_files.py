"""File secrets of services run on this machine: written 0600 where the service reads
them, indexed in STATE/secrets/files.json so a moved or dropped secret and `down` leave
no value behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from blumeops.core.spec import ServiceSpec
from blumeops.fileio import write_atomic


def deliver_secret_files(state_dir: Path, name: str, svc: ServiceSpec,
                         resolve: Callable[[str, str | None], Path], values: dict[str, str]
                         ) -> dict[str, str]:
    """Write the service's file secrets (0600); return the rest, for its environment.

    Paths are listed in STATE/secrets/files.json so `down` can remove them. A secret that
    is no longer a file (moved to the environment or dropped) or moved to another path
    loses its old file: the value must not stay behind where the service no longer looks.
    `resolve` places a declared path (relative to the service's workdir) on this machine.
    """
    index_path = state_dir / "secrets" / "files.json"
    if not svc.secret_files and not index_path.exists():
        return values
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    before = dict(index)
    env = dict(values)
    wanted: dict[str, Path] = {}
    for secret, declared in svc.secret_files.items():
        if secret in env:
            wanted[f"{name}:{secret}"] = resolve(declared, svc.workdir)
    for key in [k for k in index if k.startswith(f"{name}:")]:
        if key not in wanted or str(wanted[key]) != index[key]:
            Path(index.pop(key)).unlink(missing_ok=True)
    for key, path in wanted.items():
        write_atomic(path, env.pop(key.partition(":")[2]), 0o600)
        index[key] = str(path)
    if index != before or wanted:
        write_atomic(index_path, json.dumps(index, indent=2, sort_keys=True), 0o600)
    return env


def remove_secret_files(state_dir: Path) -> list[str]:
    """Delete every file secret written by `deliver_secret_files`."""
    index_path = state_dir / "secrets" / "files.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        return []
    for path in index.values():
        Path(path).unlink(missing_ok=True)
    index_path.unlink(missing_ok=True)
    return list(index)
