"""`blumeops secret` through click, with the identity in tmp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from blumeops.cli import cli

CANARY = "CANARY-xyz"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BLUMEOPS_AGE_KEY", str(tmp_path / "keys" / "age.key"))
    directory = tmp_path / "lab"
    directory.mkdir()
    (directory / "lab.yaml").write_text("lab: t\n")
    return directory


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["secret", *args], input=input, catch_exceptions=False)


def test_set_get_ls_rm(lab: Path) -> None:
    r = run("set", str(lab), "demo/api-token", "--value", "v1")
    assert r.exit_code == 0, r.output
    assert "added demo/api-token" in r.output
    assert "Back it up" in r.output  # the created key is announced (on stderr)
    r = run("get", str(lab), "demo/api-token")
    assert (r.exit_code, r.stdout) == (0, "v1\n")
    assert run("get", str(lab), "demo/api-token", "-n").stdout == "v1"
    assert "updated" in run("set", str(lab), "demo/api-token", "--value", "v2").output
    run("set", str(lab), "b", "--value", "x")
    assert run("ls", str(lab)).stdout == "b\ndemo/api-token\n"
    data = json.loads(run("ls", str(lab), "-o", "json").stdout)
    assert data["names"] == ["b", "demo/api-token"]
    assert run("rm", str(lab), "b").exit_code == 0
    assert run("ls", str(lab)).stdout == "demo/api-token\n"


def test_ls_reports_names_the_catalog_misses(lab: Path) -> None:
    (lab / "lab.yaml").write_text(
        "lab: t\nhosts:\n  box: {role: compute, os: linux, service_manager: supervisor}\n"
        "services:\n  api:\n    native: box\n    command: [python3, api.py]\n"
        "    secrets: {API_TOKEN: 'vault:demo/api-token', OTHER: 'vault:present'}\n")
    run("set", str(lab), "present", "--value", "v")
    r = run("ls", str(lab))
    assert r.stdout == "present\n"
    assert "missing: demo/api-token (used by api)" in r.stderr
    data = json.loads(run("ls", str(lab), "-o", "json").stdout)
    assert data["missing"] == [{"name": "demo/api-token", "services": ["api"]}]


def test_stdin_value_strips_one_newline(lab: Path) -> None:
    assert run("set", str(lab), "s", input="from stdin\n").exit_code == 0
    assert run("get", str(lab), "s", "-n").stdout == "from stdin"


def test_lab_defaults_to_cwd(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(lab)
    assert run("set", "only-name", "--value", "v").exit_code == 0
    assert run("get", "only-name").stdout == "v\n"
    assert run("ls").stdout == "only-name\n"
    assert (lab / "vault.age").exists()


def test_generate_never_prints(lab: Path) -> None:
    r = run("set", str(lab), "gen", "--generate")
    assert r.exit_code == 0
    value = run("get", str(lab), "gen", "-n").stdout
    assert len(value) >= 43 and value not in r.output
    assert value not in run("ls", str(lab), "-o", "json").output


def test_errors_are_messages(lab: Path, tmp_path: Path) -> None:
    r = run("get", str(lab), "missing")
    assert r.exit_code == 1
    assert "blumeops secret set" in r.stderr and "Traceback" not in r.output
    assert run("rm", str(lab), "missing").exit_code == 1
    assert "invalid secret name" in run("set", str(lab), "a b", "--value", "x").stderr
    assert "empty value" in run("set", str(lab), "e", input="").stderr
    assert "not both" in run("set", str(lab), "e", "--value", "x", "--generate").stderr
    assert "no lab at" in run("ls", str(tmp_path / "nowhere")).stderr


def test_wrong_key_via_cli(lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("set", str(lab), "x", "--value", "1")
    other = tmp_path / "other.key"
    monkeypatch.setenv("BLUMEOPS_AGE_KEY", str(other))
    r = run("ls", str(lab))  # no key there: an error, and no key is created by reading
    assert r.exit_code == 1 and "no age identity" in r.stderr and not other.exists()
    from blumeops.secrets.vault import create_identity

    create_identity(other)
    r = run("get", str(lab), "x")
    assert r.exit_code == 1 and str(other) in r.stderr


def test_canary_never_leaks(lab: Path) -> None:
    outputs = [run("set", str(lab), "demo/api-token", "--value", CANARY).output,
               run("set", str(lab), "other", input=CANARY + "\n").output,
               run("ls", str(lab)).output,
               run("ls", str(lab), "-o", "json").output,
               run("rm", str(lab), "other").output]
    for text in outputs:
        assert CANARY not in text
    for name in ("vault.age", "vault.recipients"):
        assert CANARY.encode() not in (lab / name).read_bytes()
    assert run("get", str(lab), "demo/api-token").stdout == CANARY + "\n"
