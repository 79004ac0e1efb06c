"""Borgmatic per host: golden output, borgmatic's own validator, path rules."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext, borgmatic
from conftest import ROOT, check_golden
from requires import require


def bodies(lab: Lab) -> dict[str, str]:
    out = {}
    for res in borgmatic.render(lab, RenderContext()):
        if res.kind == "file":  # the backup job's copy, delivered to its host
            continue
        assert (res.target, res.kind, res.name) == ("files@lab", "artifact", res.path)
        out[res.path] = res.body
    return out


def debian_validator() -> list[str] | None:
    """Debian's borgmatic 1.7 (`make tools`): the validator of the old sectioned format."""
    if shutil.which("borgmatic") is None:
        return None
    probe = subprocess.run(["borgmatic", "config", "validate", "--help"],
                           capture_output=True, text=True, check=False)
    if probe.returncode == 0 and "usage: borgmatic config validate" in probe.stdout:
        return ["borgmatic", "config", "validate", "-c"]
    script = shutil.which("validate-borgmatic-config")
    return [script, "-c"] if script else None


def borgmatic2() -> list[str]:
    """Current borgmatic (PyPI 2.x, its own venv from `make tools`)."""
    path = ROOT / ".venv-borgmatic" / "bin" / "borgmatic"
    require(path.exists(), f"borgmatic 2 ({path})")
    return [str(path), "config", "validate", "-c"]


def validate(command: list[str], files: dict[str, str], tmp_path: Path) -> str:
    """Validate each file; return the validator's words (it must exit 0)."""
    env = {**os.environ, "BLUMEOPS_LAB_DIR": str(tmp_path)}
    said = []
    for path, text in files.items():
        file = tmp_path / Path(path).name
        file.write_text(text)
        result = subprocess.run([*command, str(file)], capture_output=True, text=True,
                                env=env, check=False)
        assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"
        said.append(result.stdout + result.stderr)
    return "\n".join(said)


def pinned(lab: Lab, version: str) -> Lab:
    """The lab on an old borgmatic (Debian 12's 1.7.7: no SQLite hook, so no such dumps)."""
    data = lab.model_dump(mode="json", by_alias=True)
    data["backups"]["borgmatic"] = version
    for svc in data["services"].values():
        svc["backup_databases"] = [d for d in svc["backup_databases"]
                                   if d["kind"] != "sqlite"]
    return Lab.model_validate(data)


@pytest.mark.parametrize("lab_name", ["demo_lab", "blumeops_lab"])
def test_current_borgmatic_validates_without_deprecation(
        lab_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    out = bodies(request.getfixturevalue(lab_name))
    assert out
    said = validate(borgmatic2(), out, tmp_path)
    assert "deprecated" not in said.lower(), said
    assert "valid" in said


def test_old_format_is_what_current_borgmatic_deprecates(demo_lab: Lab,
                                                         tmp_path: Path) -> None:
    """Guards the guard: borgmatic 2 does warn about the sectioned format."""
    said = validate(borgmatic2(), bodies(pinned(demo_lab, "1.7.7")), tmp_path)
    assert "deprecated" in said


@pytest.mark.parametrize("lab_name", ["demo_lab", "blumeops_lab"])
def test_pinned_old_borgmatic_gets_the_sectioned_format(
        lab_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    lab = pinned(request.getfixturevalue(lab_name), "1.7.7")
    out = bodies(lab)
    for text in out.values():
        data = yaml.safe_load(text)
        assert set(data) >= {"location", "storage", "retention", "consistency"}
    command = require(debian_validator(), "borgmatic 1.7 (Debian borgmatic)")
    validate(command, out, tmp_path)


def test_golden_demo(demo_lab: Lab) -> None:
    out = bodies(demo_lab)
    assert list(out) == ["borgmatic/box.yaml"]
    check_golden("borgmatic/box.yaml", out["borgmatic/box.yaml"])


def test_golden_blumeops(blumeops_lab: Lab) -> None:
    out = bodies(blumeops_lab)
    assert list(out) == ["borgmatic/indri.yaml"]
    check_golden("borgmatic/indri.yaml", out["borgmatic/indri.yaml"])
    check_golden("borgmatic/indri-1.7.yaml",
                 bodies(pinned(blumeops_lab, "1.7.7"))["borgmatic/indri.yaml"])


def test_demo_paths_are_lab_relative(demo_lab: Lab) -> None:
    data = yaml.safe_load(bodies(demo_lab)["borgmatic/box.yaml"])
    # notes declares `data/` and no workdir; backups go to the same host, a local path.
    assert data["source_directories"] == ["${BLUMEOPS_LAB_DIR}/data"]
    assert data["repositories"] == [{"path": "${BLUMEOPS_LAB_DIR}/backups/box",
                                     "label": "box"}]
    assert {k: v for k, v in data.items() if k.startswith("keep_")} == {
        "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}
    assert data["encryption_passcommand"] == "printenv BORG_PASSPHRASE"


def test_blumeops_goes_to_the_nas_and_offsite_with_dumps(blumeops_lab: Lab) -> None:
    out = bodies(blumeops_lab)
    assert list(out) == ["borgmatic/indri.yaml"]
    data = yaml.safe_load(out["borgmatic/indri.yaml"])
    assert data["repositories"] == [
        {"path": "ssh://erich@sifaka.tail8d86e.ts.net/volume1/backups/borg/indri",
         "label": "sifaka"},
        {"path": "ssh://u412345@u412345.your-storagebox.de:23/./borg/indri",
         "label": "offsite"}]
    assert data["source_directories"] == [
        "/Users/erich/.local/share/jellyfin/data", "/opt/homebrew/var/forgejo",
        "/opt/homebrew/var/zot"]
    assert data["keep_yearly"] == 2
    # forgejo (native on indri) and the cluster's PostgreSQL (minikube runs on indri).
    assert data["sqlite_databases"] == [
        {"name": "forgejo", "path": "/opt/homebrew/var/forgejo/data/forgejo.db"}]
    assert data["postgresql_databases"] == [
        {"name": "miniflux", "hostname": "127.0.0.1", "port": 5432, "username": "postgres"}]
    assert "password" not in out["borgmatic/indri.yaml"]  # PGPASSWORD: the job's secret


def test_default_target_and_workdir(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["backups"] = None
    data["hosts"]["nas"] = {"role": "storage", "os": "linux"}
    data["services"]["notes"]["workdir"] = "/srv/notes"
    data["services"]["web"]["backup"] = ["/srv/notes/data/", "site"]
    data["services"]["web"]["backup_databases"] = [
        {"kind": "sqlite", "name": "web", "path": "web.db"}]
    out = bodies(Lab.model_validate(data))
    parsed = yaml.safe_load(out["borgmatic/box.yaml"])
    assert parsed["repositories"] == [{"path": "ssh://nas.tailnet.invalid/backups/borg/box",
                                       "label": "nas"}]
    # The same path from two services is backed up once.
    assert parsed["source_directories"] == ["${BLUMEOPS_LAB_DIR}/site", "/srv/notes/data"]
    assert "/srv/notes/data\"  # notes, web" in out["borgmatic/box.yaml"]
    # A relative database path resolves like a backup path.
    assert parsed["sqlite_databases"] == [{"name": "web", "path": "${BLUMEOPS_LAB_DIR}/web.db"}]


def test_a_host_that_only_dumps_gets_a_config(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["services"]["notes"]["backup"] = []
    data["services"]["api"]["backup_databases"] = [
        {"kind": "postgresql", "name": "api", "username": "api"}]
    parsed = yaml.safe_load(bodies(Lab.model_validate(data))["borgmatic/box.yaml"])
    assert "source_directories" not in parsed
    assert parsed["postgresql_databases"] == [
        {"name": "api", "hostname": "127.0.0.1", "username": "api"}]


def test_no_backups_no_files(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["services"]["notes"]["backup"] = []
    assert bodies(Lab.model_validate(data)) == {}
