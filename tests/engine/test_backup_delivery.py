"""The backup job reads the config blumeops renders: delivered to its host, run for real.

On the embedded default (a real supervisord, blumeops-scheduler, the real CLI): the
rendered borgmatic/box.yaml lands where the job's `--config` reads it, 0600 (the job
holds the passphrase), borgmatic 2 (.venv-borgmatic) accepts it, and the job itself runs
borgmatic on it and writes an archive into the repository the config names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from demolab import DemoLab, reap

from blumeops.scheduler import read_state
from polling import wait_for
from requires import require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BORGMATIC = ROOT / ".venv-borgmatic" / "bin" / "borgmatic"
PASSPHRASE = "CANARY-borg-passphrase-5d1e"

LAB = f"""\
lab: backups
hosts:
  box: {{role: compute, os: linux, service_manager: supervisor, local: true, address: 127.0.0.1}}
backups: {{to: box, path: backups, job: borgmatic}}
services:
  borgmatic:
    native: box
    command: [{BORGMATIC}, --config, conf/borgmatic.yaml, --verbosity, "1"]
    schedule: {{every: 3s, max_age: 1h}}
    environment: {{BORG_BASE_DIR: "{{root}}/borg-home"}}  # borg's cache: not in $HOME
    secrets: {{BORG_PASSPHRASE: "vault:backups/borg"}}
    backup: [data/]
"""


@pytest.fixture(name="lab")
def lab_fixture() -> Iterator[DemoLab]:
    require(BORGMATIC.exists(), f"borgmatic 2 ({BORGMATIC})")
    require(shutil.which("borg"), "borg (Debian borgbackup)")
    root = Path(tempfile.mkdtemp(prefix="bo-", dir="/tmp"))
    (root / "lab" / "data").mkdir(parents=True)
    (root / "lab" / "data" / "precious.txt").write_text("keep me\n")
    (root / "lab" / "lab.yaml").write_text(LAB.replace("{root}", str(root)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env["BLUMEOPS_AGE_KEY"] = str(root / "age.key")
    env["XDG_CACHE_HOME"] = str(root / "cache")
    lab = DemoLab(root, {}, env)
    lab.run("secret", "set", str(lab.lab), "backups/borg", input=PASSPHRASE + "\n", check=True)
    try:
        yield lab
    finally:
        lab.cli("down")
        left = reap(root)
        assert not left, f"processes left behind after down: {left}"


def borg_env(lab: DemoLab) -> dict[str, str]:
    """What the job has: the lab dir (for ${BLUMEOPS_LAB_DIR}) and the passphrase."""
    return {**lab.env, "BLUMEOPS_LAB_DIR": str(lab.lab), "BORG_PASSPHRASE": PASSPHRASE,
            "BORG_BASE_DIR": str(lab.root / "borg-home")}


def test_the_backup_job_reads_the_delivered_config_and_archives(lab: DemoLab,
                                                                tmp_path: Path) -> None:
    plan = lab.cli("plan")
    assert "+ create files@box/file/borgmatic:conf/borgmatic.yaml" in plan.stdout, plan.stdout
    lab.cli("apply", "--yes", check=True)
    delivered = lab.lab / "conf" / "borgmatic.yaml"
    lab.run("render", str(lab.lab), "--out", str(tmp_path / "out"), check=True)
    rendered = (tmp_path / "out" / "borgmatic" / "box.yaml").read_text()
    assert delivered.read_text() == rendered
    assert delivered.stat().st_mode & 0o777 == 0o600
    assert PASSPHRASE not in rendered
    # borgmatic 2 accepts the very file the job reads.
    check = subprocess.run([str(BORGMATIC), "config", "validate", "-c", str(delivered)],
                           capture_output=True, text=True, env=borg_env(lab), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert lab.cli("plan").returncode == 0  # delivered: nothing left to change

    # The repository the config names, created as a user would; then the job's own runs
    # (started by blumeops-scheduler, reading conf/borgmatic.yaml) write archives to it.
    (lab.lab / "backups").mkdir()
    init = subprocess.run([str(BORGMATIC), "--config", str(delivered), "repo-create",
                           "--encryption", "repokey"], capture_output=True, text=True,
                          env=borg_env(lab), check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    created = datetime.now().astimezone()  # runs before this found no repository yet

    def finished_since_created() -> dict[str, Any] | None:
        run: dict[str, Any] = read_state(lab.state).get("borgmatic", {})
        start, end = run.get("last_start"), run.get("last_end")
        fresh = start and datetime.fromisoformat(start) > created
        return run if fresh and end and not run.get("running") else None

    run = wait_for(finished_since_created, 60, "a run of the job after the repository exists")
    assert run.get("exit_code") == 0, run.get("output")
    listed = subprocess.run(["borg", "list", "--short", str(lab.lab / "backups" / "box")],
                            capture_output=True, text=True, env=borg_env(lab), check=False)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip(), "the job wrote no archive"
    archive = listed.stdout.split()[0]
    files = subprocess.run(["borg", "list", "--short",
                            f"{lab.lab / 'backups' / 'box'}::{archive}"],
                           capture_output=True, text=True, env=borg_env(lab), check=True)
    assert any(line.endswith("data/precious.txt") for line in files.stdout.splitlines())
