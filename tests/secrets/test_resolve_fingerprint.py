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


def test_op_reference_with_spaces_is_one_argument(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`op read` gets the reference whole. No 1Password here, so `op` is a script that
    prints the argument it was given (it stands for the CLI, not for blumeops)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "op"
    fake.write_text('#!/bin/sh\nprintf "%s|%s" "$#" "$3"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    ref = "op://Lab/Authentik (prod)/client secret"
    assert resolve([("T", ref)], tmp_path) == {"T": f"3|{ref}"}


def test_malformed_op_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SecretError, match="is not a 1Password reference"):
        resolve([("T", "op://Lab/ item/field")], tmp_path)


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


def test_plan_fingerprints_are_keyed_per_lab_state(tmp_path: Path) -> None:
    """The fingerprints apply records (state DB) and plans compare: the same secret value
    under two state directories (two keys) fingerprints differently, and is never a
    plain hash of the value that anyone could recompute offline."""
    import hashlib
    import shutil

    from blumeops.engine.apply import prepare
    from blumeops.engine.local import LocalRuntime
    from blumeops.engine.spec import runtime_spec
    from blumeops.lab.loader import load_lab
    from blumeops.state.store import Store

    lab = tmp_path / "lab"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "demo", lab,
                    ignore=shutil.ignore_patterns("vault.age", "vault.recipients"))
    value = "same-value-in-both"
    Vault(lab).set("demo/api-token", value)
    result = load_lab(lab / "lab.yaml")
    assert result.lab is not None
    spec = runtime_spec(result.lab, result.path.name, result.files)
    prints = []
    for name in ("one", "two", "one"):
        state = tmp_path / name
        store = Store(state)
        try:
            prepared = prepare(LocalRuntime(spec, result.path, state), store)
        finally:
            store.close()
        assert prepared.errors == {}
        fp = prepared.fingerprints["supervisor@box/program/api"]
        assert fp == fingerprint(load_or_create_key(state), {"API_TOKEN": value})
        prints.append(fp)
    assert prints[0] == prints[2]  # stable for one key
    assert prints[0] != prints[1]  # another key: another fingerprint
    unkeyed = {hashlib.sha256(value.encode()).hexdigest(),
               hashlib.sha256(b'[["API_TOKEN", "' + value.encode() + b'"]]').hexdigest()}
    assert not unkeyed & set(prints)
    assert all(value not in fp for fp in prints)
