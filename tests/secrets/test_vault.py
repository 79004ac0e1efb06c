"""The age vault: real encryption round trips and the errors a person will meet."""

from __future__ import annotations

import stat
from pathlib import Path

import pyrage
import pytest
from pyrage import x25519

from blumeops.secrets.errors import SecretError
from blumeops.secrets.vault import Vault, check_name, create_identity


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / "age.key"
    monkeypatch.setenv("BLUMEOPS_AGE_KEY", str(path))
    return path


def test_round_trip_creates_identity_and_recipients(tmp_path: Path, key: Path) -> None:
    vault = Vault(tmp_path)
    assert vault.set("demo/api-token", "s3cret") is True
    assert vault.set("demo/api-token", "s3cret2") is False
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert any("Back it up" in n for n in vault.notes)
    assert (tmp_path / "vault.recipients").read_text().count("age1") == 1
    # A fresh object (no cache) reads what was written, and so does plain age.
    assert Vault(tmp_path).get("demo/api-token") == "s3cret2"
    identity = x25519.Identity.from_str(key.read_text().splitlines()[-1])
    assert b"s3cret2" in pyrage.decrypt((tmp_path / "vault.age").read_bytes(), [identity])


def test_names_and_remove(tmp_path: Path, key: Path) -> None:
    vault = Vault(tmp_path)
    vault.set("b", "2")
    vault.set("a/x", "1")
    assert vault.names() == ["a/x", "b"]
    vault.remove("b")
    assert Vault(tmp_path).names() == ["a/x"]
    with pytest.raises(SecretError, match="blumeops secret set"):
        vault.remove("b")


def test_empty_lab_reads_empty(tmp_path: Path, key: Path) -> None:
    assert Vault(tmp_path).names() == []
    assert not key.exists()  # reading never creates a key


def test_wrong_key_names_the_key_file(tmp_path: Path, key: Path) -> None:
    Vault(tmp_path).set("x", "1")
    other = tmp_path / "other.key"
    create_identity(other)
    with pytest.raises(SecretError) as err:
        Vault(tmp_path, other).get("x")
    assert str(other) in str(err.value)
    assert "not one of the vault's recipients" in str(err.value)


def test_missing_identity(tmp_path: Path, key: Path) -> None:
    Vault(tmp_path).set("x", "1")
    key.unlink()
    with pytest.raises(SecretError, match="no age identity"):
        Vault(tmp_path).get("x")
    with pytest.raises(SecretError, match="no age identity"):
        Vault(tmp_path).set("y", "2")  # an existing vault never gets a fresh key
    assert not key.exists()


def test_bad_identity_file_does_not_echo_it(tmp_path: Path, key: Path) -> None:
    Vault(tmp_path).set("x", "1")
    key.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    with pytest.raises(SecretError) as err:
        Vault(tmp_path).get("x")
    assert "NOTAKEY" not in str(err.value)


@pytest.mark.parametrize("blob", [b"garbage", b"age-encryption.org/v1\n-> X25519 junk\n"])
def test_corrupt_vault(tmp_path: Path, key: Path, blob: bytes) -> None:
    Vault(tmp_path).set("x", "1")
    (tmp_path / "vault.age").write_bytes(blob)
    with pytest.raises(SecretError, match="corrupt"):
        Vault(tmp_path).get("x")


def test_vault_holding_non_object(tmp_path: Path, key: Path) -> None:
    vault = Vault(tmp_path)
    vault.set("x", "1")
    (tmp_path / "vault.age").write_bytes(pyrage.encrypt(b"[1, 2]", vault.recipients()))
    with pytest.raises(SecretError, match="not a JSON object"):
        Vault(tmp_path).get("x")


def test_extra_recipient_can_read(tmp_path: Path, key: Path) -> None:
    Vault(tmp_path).set("x", "1")
    teammate = tmp_path / "teammate.key"
    public = create_identity(teammate).to_public()
    with (tmp_path / "vault.recipients").open("a") as f:
        f.write(f"{public}\n")
    Vault(tmp_path).set("y", "2")  # any write re-encrypts to every recipient
    assert Vault(tmp_path, teammate).get("x") == "1"


def test_bad_recipients_line(tmp_path: Path, key: Path) -> None:
    Vault(tmp_path).set("x", "1")
    (tmp_path / "vault.recipients").write_text("age1nope\n")
    with pytest.raises(SecretError, match=r"vault.recipients:1"):
        Vault(tmp_path).set("y", "2")


@pytest.mark.parametrize("name", ["", "a b", "/x", "x/", "a//b", "x=y", "ä"])
def test_bad_names(name: str) -> None:
    with pytest.raises(SecretError, match="invalid secret name"):
        check_name(name)


def test_good_names() -> None:
    for name in ["demo/api-token", "A_B.c-1", "x"]:
        assert check_name(name) == name
