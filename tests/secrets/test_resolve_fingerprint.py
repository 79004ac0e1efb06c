"""Resolving references at apply time, and keyed fingerprints for plans."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from blumeops.secrets.errors import SecretError
from blumeops.secrets.fingerprint import fingerprint, load_or_create_key
from blumeops.secrets.resolve import resolve
from blumeops.secrets.vault import Vault


@pytest.fixture(autouse=True)
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / "age.key"
    monkeypatch.setenv("BLUMEOPS_AGE_KEY", str(path))
    return path


def test_resolve_vault_refs(tmp_path: Path) -> None:
    Vault(tmp_path).set("demo/api-token", "tok")
    Vault(tmp_path).set("other", "o")
    refs = [("API_TOKEN", "vault:demo/api-token"), ("OTHER", "vault:other")]
    assert resolve(refs, tmp_path) == {"API_TOKEN": "tok", "OTHER": "o"}
    assert resolve([], tmp_path) == {}


def test_resolve_reports_every_missing_name(tmp_path: Path) -> None:
    Vault(tmp_path).set("present", "VALUE-present")
    refs = [("A", "vault:gone/a"), ("B", "vault:present"), ("C", "vault:gone/c")]
    with pytest.raises(SecretError) as err:
        resolve(refs, tmp_path)
    message = str(err.value)
    assert "gone/a" in message and "gone/c" in message
    assert "blumeops secret set" in message
    assert "VALUE-present" not in message


def test_resolve_without_vault_names_missing(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="'x' is not in"):
        resolve([("X", "vault:x")], tmp_path)


def test_op_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the error path: there is no `op` binary or 1Password account here.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SecretError, match="1Password CLI `op`, which is not installed"):
        resolve([("T", "op://Lab/item/field")], tmp_path)


def test_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="unknown secret reference"):
        resolve([("T", "env:HOME")], tmp_path)


def test_fingerprint_stable_and_keyed() -> None:
    k1, k2 = b"1" * 32, b"2" * 32
    a = fingerprint(k1, {"A": "x", "B": "y"})
    assert a == fingerprint(k1, {"B": "y", "A": "x"})  # order does not matter
    assert a != fingerprint(k2, {"A": "x", "B": "y"})  # the key does
    assert a != fingerprint(k1, {"A": "x", "B": "z"})  # and every value
    assert fingerprint(k1, {"A": "x=B", "B": ""}) != fingerprint(k1, {"A": "x", "B": "=B"})
    assert "x" not in a and len(a) == 64


def test_hmac_key_created_once_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = load_or_create_key(state)
    assert len(key) == 32
    assert load_or_create_key(state) == key
    assert stat.S_IMODE((state / "hmac.key").stat().st_mode) == 0o600


def test_hmac_key_damaged(tmp_path: Path) -> None:
    (tmp_path / "hmac.key").write_bytes(b"short")
    with pytest.raises(SecretError, match="delete it"):
        load_or_create_key(tmp_path)
