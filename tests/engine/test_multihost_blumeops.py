"""`blumeops plan examples/blumeops` against real hosts: indri over SSH with launchd.

The user's own OpenSSH config maps the catalog's `indri` to its address; here that config
(BLUMEOPS_SSH_CONFIG, as `ssh -F`) maps it to a real sshd on loopback whose `launchctl`
is the TEST DOUBLE of tests/drivers/doubles/ (it records calls and keeps job state; it is
not launchd) and whose python3 is a DOUBLE answering Darwin (see test_multihost_managers).
`fly` (given an `ssh:` here) maps to a closed loopback port (nothing leaves the machine,
no name lookup), and `gilbert` has no `ssh:`: both are reported while indri is planned.
`sifaka` is an appliance (`managed: false`): never contacted, though its ssh config
points at the same closed port.

Changes to the example: indri's SSH user is `root` (the test sshd's only user) instead
of `erich`, and fly gets an `ssh:`; the host aliases, OS, service managers and services
are the example's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from demolab import lab_pids, reap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transports"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sshhost import SshLab, free_port, needs_sshd
from test_multihost_managers import host_python

from drivers.test_launchd_double import calls, install_double

pytestmark = [needs_sshd, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "blumeops"
NATIVE = ("alloy", "borgmatic", "caddy", "forgejo", "jellyfin", "speedtest", "zot")  # jobs too


def test_examples_blumeops_plans_indri_over_ssh_with_launchd() -> None:
    ssh = SshLab(Path(tempfile.mkdtemp(prefix="bo-bo-", dir="/tmp")))
    try:
        ssh.setup()
        indri = ssh.add_host("indri", address="127.0.1.61",
                             python=host_python(ssh.dir, "indri", darwin=True, systemd=False))
        double = install_double(indri)
        closed = free_port("127.0.0.1")  # nothing listens there: connection refused
        config = ssh.dir / "user_ssh_config"
        config.write_text(
            f"Host indri\n  HostName {indri.address}\n  Port {indri.port}\n"
            f"Host sifaka fly\n  HostName 127.0.0.1\n  Port {closed}\n"
            f"Host *\n  IdentityFile {ssh.client_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {ssh.known_hosts}\n  GlobalKnownHostsFile /dev/null\n")
        lab = ssh.dir / "blumeops"
        shutil.copytree(EXAMPLE, lab)
        catalog = lab / "lab.yaml"
        text = catalog.read_text()
        assert "ssh: erich@indri" in text
        fly = "  fly:     {role: compute, os: linux}"
        assert fly in text
        catalog.write_text(text.replace("ssh: erich@indri", "ssh: root@indri").replace(
            fly, "  fly:     {role: compute, os: linux, ssh: root@fly}"))
        # A plist already on indri, older than the catalog's: planned as an update.
        agents = indri.root / "Library" / "LaunchAgents"
        agents.mkdir(parents=True)
        (agents / "me.blumeops.zot.plist").write_text("<plist>an older zot</plist>\n")

        env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
        env.update(BLUMEOPS_SSH_CONFIG=str(config), BLUMEOPS_UNITS_AS_USER="1",
                   XDG_CACHE_HOME=str(ssh.dir / "cache"))
        plan = subprocess.run([sys.executable, "-m", "blumeops", "plan", str(lab),
                               "--state-dir", str(ssh.dir / "state"), "--output", "json"],
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)
        # Exit 1: fly is down and op:// secrets need the 1Password CLI.
        assert plan.returncode == 1, plan.stdout + plan.stderr
        data = json.loads(plan.stdout)
        got = {c["id"]: c for c in data["changes"]}
        plists = {i for i in got if i.startswith("launchd@indri/plist/")}
        assert plists == {f"launchd@indri/plist/{name}" for name in NATIVE}
        assert {got[i]["action"] for i in plists - {"launchd@indri/plist/zot"}} == {"create"}
        zot = got["launchd@indri/plist/zot"]
        assert zot["action"] == "update" and "configuration differs" in zot["reasons"]
        assert "-<plist>an older zot</plist>" in zot["diff"]
        assert "<string>me.blumeops.zot</string>" in zot["diff"]
        notes = data["notes"]
        assert not any("host indri" in n for n in notes), notes
        assert any(n.startswith("host fly not planned:") and "connection refused" in n
                   for n in notes), notes
        assert not any("host sifaka" in n for n in notes), notes  # an appliance
        assert any(n.startswith("host gilbert not planned:") and "no `ssh:`" in n
                   for n in notes), notes
        # indri really answered: launchd was asked about every job, over SSH.
        asked = [c for c in calls(double) if c[0] == "print"]
        assert sorted(c[1] for c in asked) == sorted(
            f"gui/0/{'homebrew.mxcl' if name == 'forgejo' else 'me.blumeops'}.{name}"
            for name in NATIVE)  # forgejo keeps its declared Label (`names:`)
        assert indri.sessions() >= 1
    finally:
        for pid in lab_pids(str(ssh.dir)):  # the shared connection this run's ssh holds
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "ssh":
                    os.kill(pid, 15)
            except OSError:
                continue
        ssh.close()
        reap(ssh.dir)
        shutil.rmtree(ssh.dir, ignore_errors=True)
