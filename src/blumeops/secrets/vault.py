"""The embedded secrets store: one age-encrypted JSON object beside the lab file.

Layout, in the lab directory (both safe to commit):

- ``vault.age``: age ciphertext of ``{"NAME": "value", ...}``;
- ``vault.recipients``: the age public keys it is encrypted to, one a line. Created from
  your identity on the first ``set``; add a teammate's or a server's key here and run any
  ``set`` to re-encrypt for them.

The identity (private key) stays outside the repository: the file named by
``BLUMEOPS_AGE_KEY``, else ``~/.config/blumeops/age.key``. The format is age-keygen's,
so ``age -d -i KEYFILE vault.age`` reads the vault without blumeops.

Names are encrypted too: listing needs the key, and a clone of the repository reveals
only how many bytes the vault holds.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from blumeops.fileio import write_atomic
from blumeops.secrets.errors import SecretError

VAULT_FILE = "vault.age"
RECIPIENTS_FILE = "vault.recipients"
KEY_ENV = "BLUMEOPS_AGE_KEY"
DEFAULT_KEY = Path("~/.config/blumeops/age.key")
NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")
AGE_HEADER = b"age-encryption.org/v1\n"


def check_name(name: str) -> str:
    """Return `name` if it is a valid secret name (the part after ``vault:``)."""
    if not NAME.match(name) or name.startswith("/") or name.endswith("/") or "//" in name:
        raise SecretError(
            f"invalid secret name {name!r}: use letters, digits and _ . - / "
            "(e.g. demo/api-token)"
        )
    return name


def identity_path() -> Path:
    """Where the identity is read from (and created by the first `set`)."""
    env = os.environ.get(KEY_ENV)
    return Path(env).expanduser() if env else DEFAULT_KEY.expanduser()


def _parse_identities(path: Path, text: str) -> list[Any]:
    keys = [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    identities = []
    for key in keys:
        try:
            identities.append(x25519.Identity.from_str(key))
        except Exception:
            # Never echo the line: it is a private key, or a typo of one.
            raise SecretError(f"{path}: not an age identity file (expected lines "
                              "starting AGE-SECRET-KEY-1)") from None
    if not identities:
        raise SecretError(f"{path}: holds no age identity (AGE-SECRET-KEY-1...)")
    return identities


def load_identities(path: Path | None = None) -> list[Any]:
    """The x25519 identities in the key file; SecretError if there is none."""
    path = path or identity_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretError(
            f"no age identity at {path}: set {KEY_ENV} to your key file, or run "
            "`blumeops secret set` once to create one"
        ) from None
    except OSError as exc:
        raise SecretError(f"cannot read age identity {path}: {exc.strerror}") from None
    return _parse_identities(path, text)


def create_identity(path: Path) -> Any:
    """Write a fresh identity to `path` (0600, dir 0700), age-keygen format."""
    identity = x25519.Identity.generate()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    text = (f"# created: {now} by blumeops\n"
            f"# public key: {identity.to_public()}\n{identity}\n")
    # O_EXCL: never overwrite a key someone else just created (that would lose a vault).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return identity


class Vault:
    """The vault of one lab directory. Reads decrypt; writes re-encrypt atomically.

    `notes` collects things a person should hear about (a key was created, your key
    is not a recipient); the CLI prints them to stderr.
    """

    def __init__(self, lab_dir: Path, key_file: Path | None = None) -> None:
        self.dir = Path(lab_dir)
        self.path = self.dir / VAULT_FILE
        self.recipients_path = self.dir / RECIPIENTS_FILE
        self.key_file = key_file or identity_path()
        self.notes: list[str] = []
        self._identities: list[Any] | None = None

    # identity and recipients

    def identities(self, create: bool = False) -> list[Any]:
        if self._identities is None:
            if create and not self.key_file.exists():
                identity = create_identity(self.key_file)
                self.notes.append(
                    f"created age identity {self.key_file} (public key "
                    f"{identity.to_public()}). Back it up somewhere safe: without it "
                    f"{self.path} cannot be decrypted."
                )
                self._identities = [identity]
            elif not self.key_file.exists() and self.path.exists():
                raise SecretError(
                    f"no age identity at {self.key_file}, so {self.path} cannot be "
                    f"decrypted: set {KEY_ENV} to the key file it was encrypted to"
                )
            else:
                self._identities = load_identities(self.key_file)
        return self._identities

    def recipients(self) -> list[Any]:
        """Public keys from vault.recipients; created from the identity if absent."""
        if not self.recipients_path.exists():
            publics = [str(i.to_public()) for i in self.identities(create=True)]
            text = ("# age public keys vault.age is encrypted to, one a line\n"
                    + "\n".join(publics) + "\n")
            write_atomic(self.recipients_path, text.encode())
            self.notes.append(f"created {self.recipients_path}")
        text = self.recipients_path.read_text(encoding="utf-8")
        recipients = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                recipients.append(x25519.Recipient.from_str(line))
            except Exception:
                raise SecretError(f"{self.recipients_path}:{n}: not an age public key "
                                  "(expected age1...)") from None
        if not recipients:
            raise SecretError(f"{self.recipients_path}: lists no age public key")
        return recipients

    # contents

    def read(self) -> dict[str, str]:
        """All secrets; an empty dict if there is no vault yet."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SecretError(f"cannot read {self.path}: {exc.strerror}") from None
        if not blob.startswith(AGE_HEADER):
            raise SecretError(f"{self.path} is not an age-encrypted file (corrupt vault?)")
        identities = self.identities()
        try:
            plain = pyrage.decrypt(blob, identities)
        except pyrage.DecryptError as exc:
            if "no matching keys" in str(exc).lower():
                publics = ", ".join(str(i.to_public()) for i in identities)
                raise SecretError(
                    f"cannot decrypt {self.path} with the key in {self.key_file} "
                    f"({publics}): that key is not one of the vault's recipients. "
                    f"Use the right key ({KEY_ENV}=PATH), or ask a holder of the vault to "
                    f"add your public key to {self.recipients_path} and re-save it."
                ) from None
            raise SecretError(f"{self.path} is corrupt: cannot decrypt it") from None
        try:
            data = json.loads(plain)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise SecretError(f"{self.path} decrypts but is not a JSON object of strings "
                              "(corrupt vault?)")
        return data

    def write(self, data: dict[str, str]) -> None:
        """Encrypt `data` to the recipients and replace the vault atomically."""
        recipients = self.recipients()
        mine = {str(i.to_public()) for i in self.identities(create=True)}
        if not mine & {str(r) for r in recipients}:
            self.notes.append(
                f"warning: your key {self.key_file} is not in {self.recipients_path}; "
                "you will not be able to read the vault you just wrote"
            )
        plain = json.dumps(dict(sorted(data.items())), indent=1).encode()
        write_atomic(self.path, pyrage.encrypt(plain, recipients))

    def names(self) -> list[str]:
        return sorted(self.read())

    def get(self, name: str) -> str:
        data = self.read()
        if name not in data:
            raise SecretError(missing_message(name, self.dir))
        return data[name]

    def set(self, name: str, value: str) -> bool:
        """Store `value` under `name`; True if the name is new."""
        check_name(name)
        if not value:
            raise SecretError(f"refusing to store an empty value for {name}")
        # A new vault may create the identity; an existing one must be readable first.
        self.identities(create=not self.path.exists())
        data = self.read()
        new = name not in data
        data[name] = value
        self.write(data)
        return new

    def remove(self, name: str) -> None:
        data = self.read()
        if name not in data:
            raise SecretError(missing_message(name, self.dir))
        del data[name]
        self.write(data)


def missing_message(name: str, lab_dir: Path) -> str:
    return (f"secret {name!r} is not in {Path(lab_dir) / VAULT_FILE}; add it with "
            f"`blumeops secret set {lab_dir} {name}`")
