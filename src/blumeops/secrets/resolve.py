"""Turn a service's secret references into values, at apply time only.

References are ``vault:NAME`` (the lab's age vault, see vault.py) or
``op://VAULT/ITEM/FIELD`` (1Password, read with the ``op`` CLI). Item and vault names
may hold spaces and parentheses (``op://Lab/Authentik (prod)/client-secret``): the
reference is parsed by the pattern the catalog validates with (`secrets.refs`) and handed to
``op`` as one argument, never through a shell. The decrypted vault is
held for the length of one `resolve` call and never cached beyond it.

1Password note: no ``op`` binary or 1Password account exists where this was built, so
the ``op read`` path is tested only for its "op is not installed" error. It is a plain
``op read --no-newline REF`` subprocess; sign in (or set OP_SERVICE_ACCOUNT_TOKEN) first.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from blumeops.secrets.errors import SecretError
from blumeops.secrets.refs import OP_REF
from blumeops.secrets.vault import Vault, missing_message

OP_TIMEOUT_S = 30


def read_op(ref: str) -> str:
    """Read one ``op://`` reference with the 1Password CLI."""
    if OP_REF.match(ref) is None:
        raise SecretError(f"{ref!r} is not a 1Password reference: expected "
                          "op://VAULT/ITEM/FIELD (names may hold spaces, not '/' or '?', and "
                          "do not start or end with a space)")
    op = shutil.which("op")
    if op is None:
        raise SecretError(
            f"{ref} needs the 1Password CLI `op`, which is not installed "
            "(https://developer.1password.com/docs/cli/get-started/); or store the "
            "secret in the lab vault and reference it as vault:NAME"
        )
    try:
        proc = subprocess.run(
            [op, "read", "--no-newline", ref],
            capture_output=True, text=True, timeout=OP_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise SecretError(f"`op read {ref}` timed out after {OP_TIMEOUT_S}s "
                          "(is 1Password signed in?)") from None
    except OSError as exc:
        raise SecretError(f"cannot run {op}: {exc.strerror}") from None
    if proc.returncode != 0:
        # op's stderr explains (not signed in, no such item); it never holds the value.
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        raise SecretError(f"`op read {ref}` failed (exit {proc.returncode})"
                          + (f": {reason}" if reason else ""))
    return proc.stdout


def resolve(refs: Iterable[tuple[str, str]], lab_dir: Path,
            key_file: Path | None = None) -> dict[str, str]:
    """Map each (NAME, reference) to NAME -> value.

    Every unresolvable reference is reported, one a line, in a single SecretError, so a
    person fixes them all at once rather than one apply at a time.
    """
    vault = Vault(lab_dir, key_file)
    contents: dict[str, str] | None = None
    values: dict[str, str] = {}
    problems: list[str] = []
    for name, ref in refs:
        try:
            if ref.startswith("vault:"):
                if contents is None:
                    contents = vault.read()
                key = ref.removeprefix("vault:")
                if key not in contents:
                    raise SecretError(f"{name}: " + missing_message(key, lab_dir))
                values[name] = contents[key]
            elif ref.startswith("op://"):
                values[name] = read_op(ref)
            else:
                raise SecretError(f"{name}: unknown secret reference {ref!r} "
                                  "(expected vault:NAME or op://VAULT/ITEM/FIELD)")
        except SecretError as exc:
            if contents is None and ref.startswith("vault:"):
                raise  # the vault itself is unreadable: every other vault ref would fail
            problems.append(str(exc))
    if problems:
        raise SecretError("\n".join(problems))
    return values
