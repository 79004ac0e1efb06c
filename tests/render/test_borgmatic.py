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
from conftest import check_golden


def bodies(lab: Lab) -> dict[str, str]:
    out = {}
    for res in borgmatic.render(lab, RenderContext()):
        assert (res.target, res.kind, res.name) == ("files@lab", "artifact", res.path)
        out[res.path] = res.body
    return out


def validate_command() -> list[str] | None:
    """`borgmatic config validate` (>= 1.7.15), else Debian 1.7's separate script."""
    if shutil.which("borgmatic") is None:
        return None
    probe = subprocess.run(["borgmatic", "config", "validate", "--help"],
                           capture_output=True, text=True, check=False)
    if probe.returncode == 0 and "usage: borgmatic config validate" in probe.stdout:
        return ["borgmatic", "config", "validate", "-c"]
    script = shutil.which("validate-borgmatic-config")
    return [script, "-c"] if script else None


@pytest.mark.parametrize("lab_name", ["demo_lab", "blumeops_lab"])
def test_borgmatic_validates(lab_name: str, request: pytest.FixtureRequest,
                             tmp_path: Path) -> None:
    command = validate_command()
    if command is None:
        pytest.skip("borgmatic is not installed")
    out = bodies(request.getfixturevalue(lab_name))
    assert out
    env = {**os.environ, "BLUMEOPS_LAB_DIR": str(tmp_path)}
    for path, text in out.items():
        file = tmp_path / Path(path).name
        file.write_text(text)
        result = subprocess.run([*command, str(file)], capture_output=True, text=True,
                                env=env, check=False)
        assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"


def test_golden_demo(demo_lab: Lab) -> None:
    out = bodies(demo_lab)
    assert list(out) == ["borgmatic/box.yaml"]
    check_golden("borgmatic/box.yaml", out["borgmatic/box.yaml"])


def test_demo_paths_are_lab_relative(demo_lab: Lab) -> None:
    data = yaml.safe_load(bodies(demo_lab)["borgmatic/box.yaml"])
    # notes declares `data/` and no workdir; backups go to the same host, a local path.
    assert data["location"]["source_directories"] == ["${BLUMEOPS_LAB_DIR}/data"]
    assert data["location"]["repositories"] == ["${BLUMEOPS_LAB_DIR}/backups/box"]
    assert data["retention"] == {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6}
    assert data["storage"]["encryption_passcommand"] == "printenv BORG_PASSPHRASE"


def test_blumeops_goes_to_the_nas(blumeops_lab: Lab) -> None:
    out = bodies(blumeops_lab)
    assert list(out) == ["borgmatic/indri.yaml"]
    data = yaml.safe_load(out["borgmatic/indri.yaml"])
    assert data["location"]["repositories"] == [
        "ssh://erich@sifaka.tail8d86e.ts.net/volume1/backups/borg/indri"]
    assert data["location"]["source_directories"] == [
        "/Users/erich/.local/share/jellyfin/data", "/opt/homebrew/var/forgejo",
        "/opt/homebrew/var/zot"]


def test_default_target_and_workdir(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["backups"] = None
    data["hosts"]["nas"] = {"role": "storage", "os": "linux"}
    data["services"]["notes"]["workdir"] = "/srv/notes"
    data["services"]["web"]["backup"] = ["/srv/notes/data/", "site"]
    out = bodies(Lab.model_validate(data))
    parsed = yaml.safe_load(out["borgmatic/box.yaml"])
    assert parsed["location"]["repositories"] == ["ssh://nas.tailnet.invalid/backups/borg/box"]
    # The same path from two services is backed up once.
    assert parsed["location"]["source_directories"] == [
        "${BLUMEOPS_LAB_DIR}/site", "/srv/notes/data"]
    assert "/srv/notes/data\"  # notes, web" in out["borgmatic/box.yaml"]


def test_no_backups_no_files(demo_lab: Lab) -> None:
    data = demo_lab.model_dump(mode="json")
    data["services"]["notes"]["backup"] = []
    assert bodies(Lab.model_validate(data)) == {}


def test_deterministic(blumeops_lab: Lab) -> None:
    assert bodies(blumeops_lab) == bodies(blumeops_lab)
