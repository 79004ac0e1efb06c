"""The files driver: configuration files a native service needs, on this machine.

Each file is written atomically (temp file + rename) so a service never reads half a
file; files of a service with secrets get mode 0600. Relative paths resolve against the
service's working directory (the lab directory by default) and must stay inside the lab
directory, symlinks resolved: `validate` refuses such catalogs, and this driver refuses
again (defence in depth) rather than write anywhere else. What was written is listed in
STATE/files.json so files dropped from the catalog can be removed. (Hosts reached over
SSH: drivers/remote_files.py.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from blumeops.catalog.paths import inside
from blumeops.core.plan import Change, Live
from blumeops.drivers.base import Driver, Secrets
from blumeops.fileio import write_atomic

if TYPE_CHECKING:
    from blumeops.transports.types import JSON


class PathEscape(PermissionError):
    """A file destination outside the lab directory: never written."""


class FilesDriver:
    def __init__(self, state_dir: Path, lab_dir: Path) -> None:
        self.lab_dir = Path(lab_dir).resolve()
        self.index_path = Path(state_dir) / "files.json"

    def resolve(self, dest: str, workdir: str | None) -> Path:
        """Where `dest` is written; PathEscape when that is outside the lab directory."""
        base = self.lab_dir / workdir if workdir else self.lab_dir
        path = (base / dest).resolve()
        self.check(path)
        return path

    def check(self, path: Path) -> None:
        if not inside(path, self.lab_dir):
            raise PathEscape(f"refusing to write {path}: outside the lab directory "
                             f"{self.lab_dir}")

    def _index(self) -> dict[str, str]:
        try:
            data = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save_index(self, index: dict[str, str]) -> None:
        write_atomic(self.index_path, json.dumps(index, indent=2, sort_keys=True), 0o600)

    def observe(self) -> dict[str, str]:
        """Resource name -> current content, for every file this driver wrote."""
        out: dict[str, str] = {}
        for name, path in self._index().items():
            try:
                out[name] = Path(path).read_text()
            except OSError:
                continue  # deleted by hand: the plan will create it again
        return out

    def apply(self, write: dict[str, tuple[Path, str, bool]], remove: list[str]) -> dict[str, str]:
        """Write (path, content, private) per name; remove named files. Returns errors."""
        index = self._index()
        errors: dict[str, str] = {}
        for name, (path, content, private) in sorted(write.items()):
            try:
                self.check(path)
                write_atomic(path, content, 0o600 if private else 0o644)
                index[name] = str(path)
            except PathEscape as exc:
                errors[name] = str(exc)
            except OSError as exc:
                errors[name] = f"cannot write {path}: {exc.strerror or exc}"
        for name in remove:
            path_text = index.pop(name, None)
            if path_text:
                Path(path_text).unlink(missing_ok=True)
        self._save_index(index)
        return errors


class LocalFiles(Driver):
    """`files@HOST` for local hosts: FilesDriver, in-process."""

    kind = "files"
    order = 10

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        # One index of written files per state dir: it belongs to the first local host.
        runtime = self.ctx.runtime
        return {f"files@{runtime.local_hosts[0]}/file/{name}": Live(content)
                for name, content in runtime.files.observe().items()}

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        runtime = self.ctx.runtime
        write = {}
        remove = []
        for c in changes:
            if c.desired is None:
                remove.append(c.name)
                continue
            svc = runtime.spec.services.get(c.desired.service or "")
            dest = runtime.files.resolve(c.desired.meta.get("dest", c.name),
                                         svc.workdir if svc else None)
            write[c.name] = (dest, c.desired.body, bool(svc and svc.has_secrets))
        errors = runtime.files.apply(write, remove)
        return {c.id: errors[c.name] for c in changes if c.name in errors}

