"""`files:` of services on systemd and launchd hosts land in the directory their units run
in (%S/blumeops/lab for systemd user units, /usr/local/var/blumeops/lab for launchd),
over real sshd with the `systemctl` / `launchctl` TEST DOUBLES of tests/drivers/doubles/
(see test_multihost_managers.py: no unit really runs, so a health command that tests the
file, run in that directory, is what shows the service would find it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_multihost_managers import UnitLab, needs_sshd, units_fixture  # noqa: F401

pytestmark = [needs_sshd, pytest.mark.slow]

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
    workdir: app
    files: {{conf/api.ini: "port = 1\\n"}}
    health: {{command: [test, -f, conf/api.ini]}}
  agent:
    native: mac
    command: [/bin/sleep, "100"]
    files: {{agent.conf: "{agent}\\n"}}
    health: {{command: [test, -f, agent.conf]}}
"""


def test_files_land_in_the_units_working_directory(units: UnitLab) -> None:
    mac_lab = Path("/usr/local/var/blumeops/lab")  # launchd's fixed lab dir, on the "Mac"
    agent_conf = mac_lab / "agent.conf"
    existed = agent_conf.exists()
    (units.lab / "lab.yaml").write_text(LAB.format(key=units.ssh.client_key, agent="one"))
    try:
        first = units.cli("apply", "--yes")
        assert first.returncode == 0, first.stdout + first.stderr
        linbox = units.hosts["linbox"].root
        unit = (linbox / ".config/systemd/user/blumeops-api.service").read_text()
        assert "WorkingDirectory=%S/blumeops/lab/app" in unit
        conf = linbox / ".local/state/blumeops/lab/app/conf/api.ini"  # %S = ~/.local/state
        assert conf.read_text() == "port = 1\n"
        assert not (linbox / ".local/state/blumeops/units/lab").exists()
        assert agent_conf.read_text() == "one\n"
        # The health commands run where the units run, and find the files.
        got = json.loads(units.cli("status", "--output", "json").stdout)["services"]
        assert {s["service"]: s["health"] for s in got} == {"api": "Healthy",
                                                            "agent": "Healthy"}
        plan = units.cli("plan", "--output", "json")
        assert json.loads(plan.stdout)["changes"] == [], plan.stdout
        # A change is written there too; a dropped file is removed from there.
        (units.lab / "lab.yaml").write_text(
            LAB.format(key=units.ssh.client_key, agent="two")
            .replace('    files: {conf/api.ini: "port = 1\\n"}\n', ""))
        again = units.cli("apply", "--yes")
        assert "- delete files@linbox/file/api:conf/api.ini" in again.stdout, again.stdout
        assert agent_conf.read_text() == "two\n"
        assert not conf.exists()
        got = json.loads(units.cli("status", "--output", "json").stdout)["services"]
        assert {s["service"]: s["health"] for s in got} == {"api": "Degraded",
                                                            "agent": "Healthy"}
    finally:
        if not existed:
            agent_conf.unlink(missing_ok=True)
