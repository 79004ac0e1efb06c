"""Keyed fingerprints of secret values, so a plan can say "secret changed" safely.

A plain hash of a short secret is guessable offline; an HMAC under a per-lab key kept in
the state directory (0600) is not, so the fingerprint may sit in the state database and
in plan output without exposing anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from blumeops.secrets.errors import SecretError

KEY_FILE = "hmac.key"
KEY_BYTES = 32


def fingerprint(key: bytes, values: Mapping[str, str],
                files: Mapping[str, str] | None = None) -> str:
    """HMAC-SHA256 (hex) over the sorted name/value pairs and how they are delivered.

    The pairs are JSON-encoded, so no choice of names or values can make two different
    sets serialise alike (as ``a=b`` joined with newlines could). `files` names the
    secrets delivered as files (NAME -> path): moving a secret between a file and the
    environment, or to another file, changes what the service gets without changing a
    value, so it must change the fingerprint too. Without file secrets the message is
    the values alone, as it always was, so fingerprints already recorded still match.
    """
    pairs = sorted(values.items())
    shape = sorted((k, v) for k, v in (files or {}).items() if k in values)
    payload: object = {"values": pairs, "files": shape} if shape else pairs
    message = json.dumps(payload, ensure_ascii=False).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def load_or_create_key(state_dir: Path) -> bytes:
    """The lab's fingerprint key, STATE/hmac.key, created 0600 on first use."""
    path = Path(state_dir) / KEY_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_bytes()
        else:
            key = secrets.token_bytes(KEY_BYTES)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        raise SecretError(f"cannot read or create {path}: {exc.strerror}") from None
    if len(key) != KEY_BYTES:
        # Also covers a racing creator that has not written yet; rare enough to ask.
        raise SecretError(f"{path} is not a {KEY_BYTES}-byte key; delete it to make a "
                          "new one (every service will show 'secret changed' once)")
    return key
