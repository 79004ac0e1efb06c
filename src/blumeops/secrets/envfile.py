"""The per-service secrets env file: JSON ``{"NAME": "value"}``, mode 0600 from birth.

The supervisor driver writes one per service with secrets; ``blumeops.secrets.exec``
reads it at service start. The file is created 0600 *before* any byte is written (no
chmod after the fact, so there is no window where it is world-readable), written to a
temporary name beside the target and renamed over it, so a reader never sees half a file.

Stdlib only: ``exec`` imports ``read_env_file`` at every service start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from blumeops.fileio import write_atomic
from blumeops.secrets.errors import SecretError


class EnvFileError(SecretError):
    """The env file is missing, unreadable or not a JSON object of strings.

    Messages name the path and the problem, never a value.
    """


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Atomically write `values` to `path` as JSON, mode 0600, parent directory 0700."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # mkdir's mode is masked by umask and skipped if it exists
    data = json.dumps({str(k): str(v) for k, v in values.items()}, sort_keys=True)
    write_atomic(path, data, 0o600)


def read_env_file(path: Path) -> dict[str, str]:
    """Read an env file written by `write_env_file`; EnvFileError if it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot read secrets env file: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise EnvFileError(f"{path}: secrets env file is not valid JSON") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise EnvFileError(f"{path}: secrets env file must be a JSON object of strings")
    return data
