"""Moving a secret between a file and the environment, value unchanged, is applied.

On the embedded default through the real CLI: the plan shows the service's update (its
fingerprint covers how each value is delivered, never the value in clear), apply moves
the value (and removes it from where the service no longer looks), and the canary value
is never in a plan, an apply's output or the state database.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from secrets import token_hex

import pytest
from demolab import DemoLab, free_port, lab_pids, reap

pytestmark = pytest.mark.slow

CANARY = f"CANARY-delivery-shape-{token_hex(4)}-do-not-leak"  # per run
ENV_SECRET = '    secrets: {APP_KEY: "vault:shape/app-key"}\n'
FILE_SECRET = '    secrets: {APP_KEY: {ref: "vault:shape/app-key", file: keys/app.key}}\n'
LAB = """\
lab: shape
hosts:
  box: {role: compute, os: linux, service_manager: supervisor, local: true, address: 127.0.0.1}
services:
  app:
    native: box
    command: [python3, -m, http.server, "PORT", --bind, 127.0.0.1]
    ports: {http: PORT}
    health: {http: /}
""" + ENV_SECRET


@pytest.fixture(name="lab")
def lab_fixture() -> Iterator[DemoLab]:
    root = Path(tempfile.mkdtemp(prefix="bo-", dir="/tmp"))
    (root / "lab").mkdir()
    (root / "lab" / "lab.yaml").write_text(LAB.replace("PORT", str(free_port())))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env["BLUMEOPS_AGE_KEY"] = str(root / "age.key")
    env["XDG_CACHE_HOME"] = str(root / "cache")
    lab = DemoLab(root, {}, env)
    lab.run("secret", "set", str(lab.lab), "shape/app-key", input=CANARY + "\n", check=True)
    try:
        yield lab
    finally:
        lab.cli("down")
        left = reap(root)
        assert not left, f"processes left behind after down: {left}"


def app_environ(lab: DemoLab) -> bytes:
    pid = json.loads(lab.cli("status", "--output", "json").stdout)["services"][0]["pid"]
    assert pid and int(pid) in lab_pids(str(lab.root))
    return Path(f"/proc/{pid}/environ").read_bytes()


def test_moving_a_secret_between_file_and_environment_is_applied(lab: DemoLab) -> None:
    outputs = [lab.cli("apply", "--yes", check=True)]
    env_file = lab.state / "secrets" / "app.env"
    key_file = lab.lab / "keys" / "app.key"
    assert json.loads(env_file.read_text()) == {"APP_KEY": CANARY}
    assert CANARY.encode() in app_environ(lab)

    # To a file, same value: planned as an update of the program, and applied.
    lab.edit(ENV_SECRET, FILE_SECRET)
    plan = lab.cli("plan")
    plan_json = lab.cli("plan", "--output", "json")
    outputs += [plan, plan_json]
    assert plan.returncode == 2, plan.stdout + plan.stderr
    [change] = json.loads(plan_json.stdout)["changes"]
    assert (change["action"], change["id"]) == ("update", "supervisor@box/program/app")
    assert any(r.startswith("secret") for r in change["reasons"]), change
    outputs.append(lab.cli("apply", "--yes", check=True))
    assert key_file.read_text() == CANARY
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(env_file.read_text()) == {}
    assert CANARY.encode() not in app_environ(lab)  # restarted: the file, not the env
    outputs.append(lab.cli("plan"))
    assert outputs[-1].returncode == 0, outputs[-1].stdout

    # Back to the environment: the file goes, the value is in the environment again.
    lab.edit(FILE_SECRET, ENV_SECRET)
    outputs.append(lab.cli("plan"))
    assert outputs[-1].returncode == 2, outputs[-1].stdout
    outputs.append(lab.cli("apply", "--yes", check=True))
    assert not key_file.exists()
    assert json.loads(env_file.read_text()) == {"APP_KEY": CANARY}
    assert CANARY.encode() in app_environ(lab)
    outputs.append(lab.cli("plan"))
    assert outputs[-1].returncode == 0, outputs[-1].stdout

    for proc in outputs:
        assert CANARY not in proc.stdout + proc.stderr
    for path in lab.state.glob("state.db*"):
        assert CANARY.encode() not in path.read_bytes(), path
