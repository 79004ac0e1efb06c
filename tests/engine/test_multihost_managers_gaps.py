"""File secrets and health commands on systemd and launchd hosts over real sshd, whose
`systemctl` / `launchctl` are the TEST DOUBLES of tests/drivers/doubles/ (see
test_multihost_managers.py: they record calls and keep unit state; no process runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from secrets import token_hex

import pytest
from test_multihost_managers import UnitLab, needs_sshd, units_fixture  # noqa: F401

pytestmark = [needs_sshd, pytest.mark.slow]

KEY_CANARY = f"CANARY-unit-file-secret-{token_hex(4)}-do-not-leak"  # per run
LAB = """\
lab: units
hosts:
  linbox: {{role: compute, os: linux, service_manager: systemd, address: 127.0.1.51,
           ssh: linbox, ssh_identity: "{key}"}}
  mac: {{role: compute, os: macos, service_manager: launchd, address: 127.0.1.52, ssh: mac,
        ssh_identity: "{key}", accept_new_host_key: true}}
services:
  api:
    native: linbox
    command: [/bin/sleep, "100"]
    health: {{command: [test, -f, keys/api.key]}}
    secrets:
      API_TOKEN: "vault:units/api-token"
      API_KEY: {api_key}
  agent:
    native: mac
    command: [/bin/sleep, "100"]
    health: {{command: [test, -f, never-there]}}
"""


def write(units: UnitLab, api_key: str) -> None:
    (units.lab / "lab.yaml").write_text(LAB.format(key=units.ssh.client_key, api_key=api_key))


def status(units: UnitLab) -> dict[str, tuple[str, str]]:
    got = json.loads(units.cli("status", "--output", "json").stdout)["services"]
    return {s["service"]: (s["health"], s["detail"]) for s in got}


def test_unit_hosts_get_file_secrets_as_0600_files_and_run_health_commands(
        units: UnitLab) -> None:
    done = subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(units.lab),
                           "units/api-key", "--value", KEY_CANARY], env=units.env,
                          cwd=units.root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    write(units, '{ref: "vault:units/api-key", file: keys/api.key}')
    first = units.cli("apply", "--yes")
    assert "api: healthy" in first.stderr, first.stdout + first.stderr
    linbox = units.hosts["linbox"].root / ".local/state/blumeops"
    key = linbox / "lab" / "keys" / "api.key"  # %S/blumeops/lab: the unit's directory
    assert key.read_text() == KEY_CANARY
    assert key.stat().st_mode & 0o777 == 0o600
    env = (linbox / "secrets" / "api.env").read_text()
    assert env.startswith('API_TOKEN="') and "API_KEY" not in env
    # The health command ran on each host, in the unit's lab dir there.
    assert status(units) == {"api": ("Healthy", "exit 0 on linbox"),
                             "agent": ("Degraded", "exit 1 on mac")}
    hits = [p for p in units.ssh.dir.rglob("*") if p.is_file() and not p.is_symlink()
            and not p.is_socket() and KEY_CANARY.encode() in p.read_bytes()]
    assert hits == [key]
    for state in units.doubles.values():
        log = state / "calls.jsonl"
        assert not log.exists() or KEY_CANARY not in log.read_text()

    # The secret loses its file (a new value, so the unit is updated): the file goes.
    subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(units.lab),
                    "units/api-key", "--value", KEY_CANARY + "-2"], env=units.env,
                   cwd=units.root, capture_output=True, text=True, check=True)
    write(units, '"vault:units/api-key"')
    again = units.cli("apply", "--yes")
    assert "~ update systemd@linbox/unit/api" in again.stdout, again.stdout + again.stderr
    assert not key.exists()
    assert 'API_KEY="' in (linbox / "secrets" / "api.env").read_text()
    assert status(units)["api"] == ("Degraded", "exit 1 on linbox")


def test_a_degraded_unit_names_its_log_and_launchd_shows_the_tail(units: UnitLab) -> None:
    """launchd writes the job's output to the plist's StandardOutPath: its last lines are
    shown; systemd keeps it in the journal: the command to read it is named."""
    write(units, '"vault:units/api-token"')
    for host, label in (("linbox", "blumeops-api.service"), ("mac", "me.blumeops.agent")):
        (units.doubles[host] / "config.json").write_text(json.dumps({"failing": [label]}))
    units.cli("apply", "--yes")
    log = Path("/usr/local/var/blumeops/logs/agent.log")  # the renderer's, on the "Mac"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(1, 26)))
    try:
        got = status(units)
    finally:
        log.unlink()
    health, detail = got["agent"]
    assert health == "Degraded" and detail.startswith("exited 1 on mac"), detail
    assert detail.endswith(f"; log: {log}: " + " | ".join(f"line {i}" for i in range(6, 26)))
    health, detail = got["api"]
    assert health == "Degraded" and detail.startswith("failed on linbox"), detail
    assert detail.endswith("; log: journalctl --user-unit blumeops-api.service"), detail
