"""The systemd manager over the REAL SSH transport, against a `systemctl` TEST DOUBLE.

systemd cannot run in this machine, so each test host (a real sshd on 127.0.1.x whose
python3 is 3.9) gets `doubles/systemctl.py` first on its PATH. The double records every
call and keeps unit state in files; it is not systemd. What is real: sshd, the transport,
the agent's batches and atomic writes, the unit text the renderer makes (checked with
`systemd-analyze verify`), and the exact commands the manager sends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from blumeops.catalog.model import SecretRef, Service
from blumeops.drivers.systemd import SystemdManager, expand, parse_show, unit_state
from blumeops.drivers.units import health_word
from blumeops.render import RenderContext
from blumeops.render.systemd import unit_text
from requires import needs
from transports.sshhost import (
    SshHost,
    SshLab,
    needs_sshd,
    ssh_lab_fixture,  # noqa: F401 (fixture "ssh_lab")
)

pytestmark = [needs_sshd, pytest.mark.slow]

DOUBLE = Path(__file__).parent / "doubles" / "systemctl.py"
CANARY = "CANARY-s3cr3t \"q\" $HOME `x` \\ end\nline2"


def app(port: int = 1, secrets: bool = False, command: str = "/bin/sleep") -> str:
    svc = Service(native="node", command=[command, str(port)],
                  secrets={"TOKEN": SecretRef(ref="vault:a/b")} if secrets else {})
    return unit_text("app", svc, RenderContext())


def web() -> str:
    return unit_text("web", Service(native="node", command=["/bin/sleep", "2"],
                                    depends_on=["app"]), RenderContext())


def install_double(host: SshHost, failing: tuple[str, ...] = ()) -> Path:
    """Put the systemctl double first on the host's PATH; returns its state dir."""
    target = host.root / "bin" / "systemctl"
    shutil.copy(DOUBLE, target)
    target.chmod(0o755)
    state = host.root / ".systemctl-double"
    state.mkdir(exist_ok=True)
    config = {"system_unit_dir": str(host.root / "etc/systemd/system"),
              "failing": list(failing)}
    (state / "config.json").write_text(json.dumps(config))
    return state


def calls(state: Path) -> list[list[str]]:
    """Every argv the double saw since the last `forget`."""
    log = state / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def forget(state: Path) -> None:
    (state / "calls.jsonl").unlink(missing_ok=True)


SHOW = ["show", "-p", "Id,LoadState,ActiveState,SubState,MainPID,Result,UnitFileState,"
        "NeedDaemonReload"]


def system_manager(ssh_lab: SshLab, host: SshHost) -> SystemdManager:
    # System units under the host's root dir: this machine's real /etc/systemd is not ours.
    return SystemdManager(ssh_lab.transport(host.name), user_mode=False,
                          unit_dir=str(host.root / "etc/systemd/system"),
                          state_root=str(host.root / "var/lib"))


def test_double_new_changed_unchanged_removed_sequences(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("node")
    state = install_double(host)
    mgr = system_manager(ssh_lab, host)
    units = host.root / "etc/systemd/system"
    a, w = "blumeops-app.service", "blumeops-web.service"

    # New units: one observe, then write + daemon-reload + enable --now in one batch.
    sessions = host.sessions()
    assert mgr.apply({"app": app(), "web": web()}) == {}
    assert host.sessions() - sessions == 2
    assert calls(state) == [[*SHOW, a, w], ["daemon-reload"], ["enable", "--now", a, w],
                            [*SHOW, a, w]]
    assert (units / a).read_text() == app() and (units / w).read_text() == web()
    assert oct((units / a).stat().st_mode & 0o777) == "0o644"
    seen = mgr.observe(["app", "web"])
    assert seen["app"].state == "active" and seen["app"].running and seen["app"].pid
    assert seen["app"].enabled and "needs daemon-reload" not in seen["app"].detail
    assert health_word(seen["app"]) == "Healthy"
    first_pid = seen["app"].pid

    # Unchanged: exactly one round trip, and the only command is the observing `show`.
    forget(state)
    sessions = host.sessions()
    assert mgr.apply({"app": app(), "web": web()}) == {}
    assert host.sessions() - sessions == 1
    assert calls(state) == [[*SHOW, a, w]]

    # Changed: write, daemon-reload, restart only that unit.
    forget(state)
    assert mgr.apply({"app": app(port=7), "web": web()}) == {}
    assert calls(state) == [[*SHOW, a, w], ["daemon-reload"], ["restart", a], [*SHOW, a, w]]
    after = mgr.observe(["app", "web"])
    assert after["app"].pid != first_pid and after["app"].running
    assert after["web"].pid == seen["web"].pid  # untouched
    assert "needs daemon-reload" not in after["app"].detail
    assert (units / a).read_text() == app(port=7)

    # Removed: disable --now, delete, daemon-reload.
    forget(state)
    assert mgr.apply({"app": app(port=7)}, remove=["web"]) == {}
    assert calls(state) == [[*SHOW, a, w], ["disable", "--now", w], ["daemon-reload"],
                            [*SHOW, a]]
    assert not (units / w).exists()
    gone = mgr.observe(["web"])["web"]
    assert not gone.exists and not gone.running and health_word(gone) == "Missing"

    # Removing what is already gone costs the observation only.
    forget(state)
    assert mgr.apply({}, remove=["web"]) == {}
    assert calls(state) == [[*SHOW, w]]


def test_double_user_mode_uses_user_units(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("laptop")
    state = install_double(host)
    mgr = SystemdManager(ssh_lab.transport("laptop"), user_mode=True)
    assert mgr.unit_path("app") == "~/.config/systemd/user/blumeops-app.service"
    assert mgr.apply({"app": app(secrets=True)}, secrets={"app": {"TOKEN": "t"}}) == {}
    a = "blumeops-app.service"
    assert calls(state) == [["--user", *SHOW, a], ["--user", "daemon-reload"],
                            ["--user", "enable", "--now", a], ["--user", *SHOW, a]]
    assert (host.root / ".config/systemd/user" / a).read_text() == app(secrets=True)
    # %S of a user manager is ~/.local/state: the env file lands where systemd looks.
    env = host.root / ".local/state/blumeops/secrets/app.env"
    assert env.read_text() == 'TOKEN="t"\n' and env.stat().st_mode & 0o777 == 0o600
    assert not (host.root / "etc").exists()
    assert mgr.observe(["app"])["app"].running
    # Removal under ~ too: the unit and its secrets go, with --user throughout.
    forget(state)
    assert mgr.apply({}, remove=["app"]) == {}
    assert calls(state) == [["--user", *SHOW, a], ["--user", "disable", "--now", a],
                            ["--user", "daemon-reload"]]
    assert not (host.root / ".config/systemd/user" / a).exists() and not env.exists()


def test_double_secrets_stay_off_every_command_line(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("node")
    state = install_double(host)
    mgr = system_manager(ssh_lab, host)
    a = "blumeops-app.service"
    assert mgr.apply({"app": app(secrets=True)}, secrets={"app": {"TOKEN": CANARY}}) == {}
    env = host.root / "var/lib/blumeops/secrets/app.env"
    assert env.stat().st_mode & 0o777 == 0o600 and env.stat().st_uid == os.getuid()
    # The file is what systemd (POSIX double-quote rules) reads back as the exact value.
    got = subprocess.run(["sh", "-c", f'. "{env}"; printf %s "$TOKEN"'],
                         capture_output=True, text=True, check=True).stdout
    assert got == CANARY
    assert "EnvironmentFile=%S/blumeops/secrets/app.env" in (
        host.root / "etc/systemd/system" / a).read_text()

    # Only the secret changes: the env file is rewritten and the unit restarted, with no
    # daemon-reload (the unit file is the same).
    forget(state)
    assert mgr.apply({"app": app(secrets=True)}, secrets={"app": {"TOKEN": CANARY + "2"}}) == {}
    assert calls(state) == [[*SHOW, a], ["restart", a], [*SHOW, a]]
    log = (state / "calls.jsonl").read_text()
    assert "CANARY" not in log  # neither argv nor environment of any call
    assert "CANARY" not in host.log_text()
    # Same values again: nothing to do.
    forget(state)
    assert mgr.apply({"app": app(secrets=True)}, secrets={"app": {"TOKEN": CANARY + "2"}}) == {}
    assert calls(state) == [[*SHOW, a]]

    # Removing the service removes its secrets too.
    assert mgr.apply({}, remove=["app"]) == {}
    assert not env.exists()


def test_double_failed_unit_is_reported_and_degraded(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("node")
    install_double(host, failing=("blumeops-app.service",))
    mgr = system_manager(ssh_lab, host)
    errors = mgr.apply({"app": app(), "web": web()})
    assert list(errors) == ["app"]
    assert "blumeops-app.service" in errors["app"] and "failed" in errors["app"]
    seen = mgr.observe(["app", "web"])
    assert seen["app"].state == "failed" and not seen["app"].running
    assert "exit-code" in seen["app"].detail
    assert health_word(seen["app"]) == "Degraded" and health_word(seen["web"]) == "Healthy"


def test_double_stopped_unit_is_restarted_and_disabled_one_enabled(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("node")
    state = install_double(host)
    mgr = system_manager(ssh_lab, host)
    a = "blumeops-app.service"
    assert mgr.apply({"app": app()}) == {}
    # Someone stops it on the host: the next apply heals it with one restart.
    subprocess.run([str(host.root / "bin/systemctl"), "stop", a], check=True,
                   env={**os.environ, "HOME": str(host.root)})
    forget(state)
    assert mgr.apply({"app": app()}) == {}
    assert calls(state) == [[*SHOW, a], ["restart", a], [*SHOW, a]]
    # Someone disables it: enable --now puts it back.
    subprocess.run([str(host.root / "bin/systemctl"), "disable", a], check=True,
                   env={**os.environ, "HOME": str(host.root)})
    forget(state)
    assert mgr.apply({"app": app()}) == {}
    assert calls(state) == [[*SHOW, a], ["enable", "--now", a], [*SHOW, a]]
    assert mgr.observe(["app"])["app"].enabled


def test_double_observe_is_one_round_trip(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("node")
    install_double(host)
    mgr = system_manager(ssh_lab, host)
    mgr.apply({"app": app()})
    sessions = host.sessions()
    seen = mgr.observe(["app", "web", "db"])
    assert host.sessions() - sessions == 1
    assert seen["app"].exists and seen["app"].running
    assert not seen["web"].exists and seen["web"].state == "inactive"
    assert [health_word(seen[n]) for n in ("app", "web", "db")] == [
        "Healthy", "Missing", "Missing"]


@needs(shutil.which("systemd-analyze"), "systemd-analyze (Debian systemd)")
@pytest.mark.parametrize("user_mode", [False, True])
def test_written_units_pass_systemd_analyze_verify(ssh_lab: SshLab, tmp_path: Path,
                                                   user_mode: bool) -> None:
    host = ssh_lab.add_host("node")
    install_double(host)
    mgr = (SystemdManager(ssh_lab.transport("node"), user_mode=True) if user_mode
           else system_manager(ssh_lab, host))
    assert mgr.apply({"app": app(secrets=True), "web": web()},
                     secrets={"app": {"TOKEN": "x"}}) == {}
    folder = host.root / (".config/systemd/user" if user_mode else "etc/systemd/system")
    written = sorted(str(p) for p in folder.glob("blumeops-*.service"))
    assert len(written) == 2
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    proc = subprocess.run(
        ["systemd-analyze", *(["--user"] if user_mode else []), "verify", "--man=no",
         *written], capture_output=True, text=True, timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning", "XDG_RUNTIME_DIR": str(runtime)})
    assert proc.returncode == 0, proc.stderr
    assert "blumeops-" not in proc.stderr, proc.stderr


def test_show_parsing_specifiers_and_health_words() -> None:
    out = ("Id=blumeops-a.service\nLoadState=loaded\nActiveState=activating\n"
           "SubState=auto-restart\nMainPID=0\nResult=exit-code\nUnitFileState=enabled\n"
           "NeedDaemonReload=no\n\nId=blumeops-b.service\nLoadState=not-found\n"
           "ActiveState=inactive\nSubState=dead\nMainPID=0\n")
    blocks = parse_show(out)
    a = unit_state("a", True, "x", blocks["blumeops-a.service"])
    b = unit_state("b", True, "y", blocks["blumeops-b.service"])
    assert (a.state, a.running, a.pid, a.enabled) == ("activating", False, None, True)
    assert [health_word(a), health_word(b)] == ["Progressing", "Degraded"]
    assert "not-found" in b.detail
    unknown = unit_state("c", True, "z", None, "`systemctl show` exited 1: no bus")
    assert health_word(unknown) == "Unknown" and "no bus" in unknown.detail
    assert expand("%S/blumeops/secrets/100%%.env", "/var/lib") == (
        "/var/lib/blumeops/secrets/100%.env")
    assert expand("%h/x", "/s") == "~/x"
    with pytest.raises(ValueError, match="%n"):
        expand("%n.env", "/s")


def test_double_undeliverable_secrets_leave_the_unit_untouched(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("node")
    state = install_double(host)
    mgr = system_manager(ssh_lab, host)
    errors = mgr.apply({"app": app(), "web": web()}, secrets={"app": {"TOKEN": "x"},
                                                             "web": {}})
    assert list(errors) == ["app"] and "EnvironmentFile" in errors["app"]
    assert not (host.root / "etc/systemd/system/blumeops-app.service").exists()
    assert ["enable", "--now", "blumeops-web.service"] in calls(state)
    bad = mgr.apply({"app": app(secrets=True)}, secrets={"app": {"TOKEN": "a\0b"}})
    assert "NUL" in bad["app"]
    assert not (host.root / "etc/systemd/system/blumeops-app.service").exists()
