"""`blumeops apply` through the CLI on a lab of a systemd host and a launchd host, each a
real sshd on loopback whose PATH has a TEST DOUBLE first:

- `systemctl` / `launchctl` are the DOUBLES in tests/drivers/doubles/: they record every
  call (argv and environment) and keep unit state in files; no process really runs;
- `python3` is a DOUBLE of the host's answer to "what are you": the real python3.9 with
  `os.uname()` saying Darwin (the launchd host) or `/run/systemd/system` present (the
  systemd host), so the facts check passes on this Linux machine.

Real: sshd, the SSH transport and its agent, the engine, the unit managers, the
renderers, the state DB and the round trips. The SSH user is root; the engine is told
(BLUMEOPS_UNITS_AS_USER) to use user units and the gui/UID domain so nothing is written
to this machine's /etc or /Library. The ssh config here names no key: the catalog's
`ssh_identity` must reach ssh, and `mac`'s key is unknown until the catalog's
`accept_new_host_key` lets the first contact record it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex
from typing import Any

import pytest
from demolab import lab_pids, reap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transports"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sshhost import PY39, SshHost, SshLab, needs_sshd

from drivers.test_launchd_double import install_double as install_launchctl
from drivers.test_systemd_double import install_double as install_systemctl

pytestmark = [needs_sshd, pytest.mark.slow]

CANARY = f"CANARY-units-{token_hex(4)}-do-not-leak"  # per run: suites run at once
HOSTS = """\
lab: units
hosts:
  linbox: {{role: compute, os: linux, service_manager: systemd, address: 127.0.1.51,
           ssh: linbox, ssh_identity: "{key}", arch: x86_64}}
  mac: {{role: compute, os: macos, service_manager: launchd, address: 127.0.1.52, ssh: mac,
        ssh_identity: "{key}", accept_new_host_key: true}}
services:
"""
SERVICES = {
    "api": 'native: linbox, command: [/bin/sleep, "{api}"], '
           'secrets: {{API_TOKEN: "vault:units/api-token"}}',
    "worker": 'native: linbox, command: [/bin/sleep, "200"], '
              "names: {{systemd: acme-worker.service}}",
    "agent": 'native: mac, command: [/bin/sleep, "{agent}"]',
    "helper": 'native: mac, command: [/bin/sleep, "300"], '
              "names: {{launchd: org.example.helper}}",
}

# The host double of python3: the real interpreter, one answer changed.
HOST_PYTHON = '''#!{python}
"""A TEST DOUBLE of a {what} host's python3 (blumeops's agent runs in it)."""
import os
import sys

real_isdir, real_uname = os.path.isdir, os.uname
if {darwin}:
    u = real_uname()
    os.uname = lambda: os.uname_result(("Darwin", u.nodename, u.release, u.version,
                                         u.machine))
if {systemd}:
    os.path.isdir = lambda p: p == "/run/systemd/system" or real_isdir(p)
if "-c" not in sys.argv:
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
code = sys.argv[sys.argv.index("-c") + 1]
sys.argv = ["-c"]
exec(compile(code, "<string>", "exec"), {{"__name__": "__main__"}})
'''


@dataclass
class UnitLab:
    ssh: SshLab
    root: Path
    env: dict[str, str]
    hosts: dict[str, SshHost]
    doubles: dict[str, Path]  # host -> the double's state dir

    @property
    def lab(self) -> Path:
        return self.root / "lab"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def write(self, api_seconds: int = 100, agent_seconds: int = 100,
              drop: tuple[str, ...] = ()) -> None:
        text = HOSTS.format(key=self.ssh.client_key) + "".join(
            f"  {name}: {{{body.format(api=api_seconds, agent=agent_seconds)}}}\n"
            for name, body in SERVICES.items() if name not in drop)
        (self.lab / "lab.yaml").write_text(text)

    def cli(self, command: str, *args: str, input: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "blumeops", command, str(self.lab),
                               "--state-dir", str(self.state), *args], capture_output=True,
                              text=True, env=self.env, input=input, timeout=180,
                              check=False, cwd=self.root)

    def calls(self, host: str) -> list[list[str]]:
        log = self.doubles[host] / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line)["argv"] for line in log.read_text().splitlines()]

    def forget(self) -> None:
        for state in self.doubles.values():
            (state / "calls.jsonl").unlink(missing_ok=True)

    def sessions(self) -> dict[str, int]:
        return {name: host.sessions() for name, host in self.hosts.items()}


def host_python(root: Path, name: str, *, darwin: bool, systemd: bool) -> str:
    path = root / f"python3-{name}"
    path.write_text(HOST_PYTHON.format(python=PY39, what="macOS" if darwin else "systemd",
                                       darwin=darwin, systemd=systemd))
    path.chmod(0o755)
    return str(path)


@contextlib.contextmanager
def launchd_paths() -> Iterator[None]:
    """Turns at launchd's fixed paths (/usr/local/var/blumeops): the "Mac" shares this
    machine's file system, so two suites run at once would write and remove each other's."""
    with open("/tmp/blumeops-tests-launchd-paths.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(name="units")
def units_fixture() -> Iterator[UnitLab]:
    with launchd_paths():
        yield from _units()


def _units() -> Iterator[UnitLab]:
    ssh = SshLab(Path(tempfile.mkdtemp(prefix="bo-un-", dir="/tmp")))
    ssh.setup()
    created_logs = not Path("/usr/local/var/blumeops").exists()
    linbox = ssh.add_host("linbox", address="127.0.1.51",
                          python=host_python(ssh.dir, "linbox", darwin=False, systemd=True))
    mac = ssh.add_host("mac", address="127.0.1.52", known=False,
                       python=host_python(ssh.dir, "mac", darwin=True, systemd=False))
    # This lab's ssh config names no key: the catalog's ssh_identity is what logs in.
    config = ssh.dir / "units_ssh_config"
    config.write_text("".join(
        f"Host {h.name}\n  HostName {h.address}\n  Port {h.port}\n  User root\n"
        for h in (linbox, mac)) + f"Host *\n  IdentitiesOnly yes\n  IdentityFile none\n"
        f"  UserKnownHostsFile {ssh.known_hosts}\n  GlobalKnownHostsFile /dev/null\n")
    doubles = {"linbox": install_systemctl(linbox), "mac": install_launchctl(mac)}
    root = ssh.dir / "ctl"
    (root / "lab").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env.update(BLUMEOPS_AGE_KEY=str(root / "age.key"), XDG_CACHE_HOME=str(root / "cache"),
               BLUMEOPS_SSH_CONFIG=str(config), BLUMEOPS_UNITS_AS_USER="1")
    lab = UnitLab(ssh, root, env, {"linbox": linbox, "mac": mac}, doubles)
    lab.write()
    done = subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(lab.lab),
                           "units/api-token", "--value", CANARY], env=env, cwd=root,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    try:
        yield lab
    finally:
        for pid in lab_pids(str(ssh.dir)):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "ssh":
                os.kill(pid, 15)
        ssh.close()
        reap(ssh.dir)
        if created_logs:  # the launchd renderer's fixed log dir, made by the manager
            shutil.rmtree("/usr/local/var/blumeops", ignore_errors=True)


def changes(units: UnitLab) -> list[Any]:
    plan = units.cli("plan", "--output", "json")
    assert plan.returncode in (0, 2), plan.stdout + plan.stderr
    return list(json.loads(plan.stdout)["changes"])


def only(calls: list[list[str]]) -> list[list[str]]:
    """The calls that change something (not the observing show/print)."""
    return [c for c in calls if not set(c[:2]) & {"show", "print"}]


def test_apply_drives_systemd_and_launchd_doubles_over_ssh(units: UnitLab) -> None:
    linbox, mac = units.hosts["linbox"], units.hosts["mac"]
    user_units = linbox.root / ".config/systemd/user"
    agents = mac.root / "Library/LaunchAgents"

    first = units.cli("apply", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    # Unit files and plists, named as the renderer names them (`names:` kept).
    assert sorted(p.name for p in user_units.iterdir()) == [
        "acme-worker.service", "blumeops-api.service"]
    assert sorted(p.name for p in agents.iterdir()) == [
        "me.blumeops.agent.plist", "org.example.helper.plist"]
    assert "ExecStart=/bin/sleep 100" in (user_units / "blumeops-api.service").read_text()
    # The exact commands: systemd reloads once and enables both with --now; launchd
    # bootstraps each plist into the SSH user's gui domain.
    assert only(units.calls("linbox")) == [
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", "blumeops-api.service", "acme-worker.service"]]
    assert only(units.calls("mac")) == [
        ["bootstrap", "gui/0", str(agents / "me.blumeops.agent.plist")],
        ["bootstrap", "gui/0", str(agents / "org.example.helper.plist")]]
    # The secret reached api's EnvironmentFile (0600) on linbox, and nowhere else.
    env_file = linbox.root / ".local/state/blumeops/secrets/api.env"
    assert env_file.read_text() == f'API_TOKEN="{CANARY}"\n'
    assert env_file.stat().st_mode & 0o777 == 0o600
    status = json.loads(units.cli("status", "--output", "json").stdout)
    assert {s["service"]: (s["host"], s["state"]) for s in status["services"]} == {
        "api": ("linbox", "active"), "worker": ("linbox", "active"),
        "agent": ("mac", "running"), "helper": ("mac", "running")}

    # A second apply: nothing to do, one round trip per host, only the observing calls.
    assert changes(units) == []
    units.forget()
    before = units.sessions()
    again = units.cli("apply", "--yes")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr
    after = units.sessions()
    assert {h: after[h] - before[h] for h in after} == {"linbox": 1, "mac": 1}
    assert only(units.calls("linbox")) == [] and only(units.calls("mac")) == []

    # A changed command: systemd reloads and restarts that unit; launchd boots the job
    # out and in again (it rereads a plist only on bootstrap).
    units.write(api_seconds=101, agent_seconds=101)
    units.forget()
    changed = units.cli("apply", "--yes")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert only(units.calls("linbox")) == [["--user", "daemon-reload"],
                                           ["--user", "restart", "blumeops-api.service"]]
    agent = str(agents / "me.blumeops.agent.plist")
    assert only(units.calls("mac")) == [["bootout", "gui/0/me.blumeops.agent"],
                                        ["bootstrap", "gui/0", agent]]
    # A job found stopped on the mac: kickstarted.
    jobs = units.doubles["mac"] / "state.json"
    data = json.loads(jobs.read_text())
    for job in data["jobs"].values():
        if job["label"] == "org.example.helper":
            job.update(running=False, pid=None, last_exit=1)
    jobs.write_text(json.dumps(data))
    units.forget()
    healed = units.cli("apply", "--yes")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert only(units.calls("mac")) == [["kickstart", "-k", "gui/0/org.example.helper"]]

    # Removed from the catalog: disabled / booted out, files gone.
    units.write(api_seconds=101, agent_seconds=101, drop=("worker", "helper"))
    units.forget()
    removed = units.cli("apply", "--yes")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert only(units.calls("linbox")) == [
        ["--user", "disable", "--now", "acme-worker.service"], ["--user", "daemon-reload"]]
    assert only(units.calls("mac")) == [["bootout", "gui/0/org.example.helper"]]
    assert not (user_units / "acme-worker.service").exists()
    assert not (agents / "org.example.helper.plist").exists()
    assert changes(units) == []

    # The canary: in api's env file only; never in the doubles' argv/env, ps, CLI output
    # or any file on this side (the state DB among them).
    outputs = [first, again, changed, healed, removed, units.cli("status"),
               units.cli("plan", "--output", "json")]
    for proc in outputs:
        assert CANARY not in proc.stdout + proc.stderr
    for state in units.doubles.values():
        log = state / "calls.jsonl"
        assert not log.exists() or CANARY not in log.read_text()
    ps = subprocess.run(["ps", "auxwwe"], capture_output=True, text=True, check=True).stdout
    assert CANARY not in ps
    hits = [p for p in units.ssh.dir.rglob("*") if p.is_file() and not p.is_symlink()
            and not p.is_socket() and CANARY.encode() in p.read_bytes()]
    assert hits == [env_file]

    # `down` stops and removes what is left, secrets included.
    units.forget()
    down = units.cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert only(units.calls("linbox")) == [
        ["--user", "disable", "--now", "blumeops-api.service"], ["--user", "daemon-reload"]]
    assert only(units.calls("mac")) == [["bootout", "gui/0/me.blumeops.agent"]]
    assert list(user_units.iterdir()) == [] and list(agents.iterdir()) == []
    assert not env_file.exists()


def test_the_catalog_arch_is_checked_over_ssh(units: UnitLab) -> None:
    """`arch:` reaches the facts check of the engine's remote session."""
    text = (units.lab / "lab.yaml").read_text().replace("arch: x86_64", "arch: arm64")
    (units.lab / "lab.yaml").write_text(text)
    out = units.cli("apply", "--yes")
    assert out.returncode == 1
    assert "host linbox is declared arch: arm64 but answers x86_64" in out.stderr
    assert not (units.hosts["linbox"].root / ".config/systemd/user").exists()
    # The other host is applied (its unknown key accepted by the catalog's opt-in).
    assert (units.hosts["mac"].root / "Library/LaunchAgents/me.blumeops.agent.plist").exists()
