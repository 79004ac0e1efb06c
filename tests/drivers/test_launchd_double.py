"""The launchd manager over the REAL SSH transport, against a `launchctl` TEST DOUBLE.

launchd exists only on macOS, so each test host (a real sshd on 127.0.1.x whose python3
is 3.9, as on a Mac) gets `doubles/launchctl.py` first on its PATH. The double records
every call and keeps job state in files; it is not launchd. What is real: sshd, the
transport, the agent's batches and atomic writes, the plists the renderer makes (they
must round-trip through plistlib), the secrets wrapper (run here on python3.9), and the
exact commands the manager sends.
"""

from __future__ import annotations

import json
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from blumeops.catalog.model import SecretRef, Service
from blumeops.drivers.launchd import LaunchdManager, parse_print
from blumeops.drivers.units import WRAPPER_SOURCE, health_word
from blumeops.render.launchd import STATE_DIR, plist_data
from transports.sshhost import (
    PY39,
    SshHost,
    SshLab,
    needs_sshd,
    ssh_lab_fixture,  # noqa: F401 (fixture "ssh_lab")
)

pytestmark = [needs_sshd, pytest.mark.slow]

DOUBLE = Path(__file__).parent / "doubles" / "launchctl.py"
CANARY = "CANARY-s3cr3t \"q\" $HOME `x` \\ end\nline2"
DOMAIN = "gui/501"
APP, WEB = "me.blumeops.app", "me.blumeops.web"


def plist(host: SshHost, name: str = "app", port: int = 1, secrets: bool = False,
          command: tuple[str, ...] = ("/bin/sleep",)) -> str:
    """The renderer's plist, with its state dir moved under the test host's root."""
    svc = Service(native="mac", command=[*command, str(port)],
                  environment={"MODE": "test"},
                  secrets={"TOKEN": SecretRef(ref="vault:a/b")} if secrets else {})
    text = json.dumps(plist_data(name, svc)).replace(STATE_DIR, str(host.root / "state"))
    return plistlib.dumps(json.loads(text), sort_keys=True).decode()


def install_double(host: SshHost, **config: object) -> Path:
    """Put the launchctl double first on the host's PATH; returns its state dir."""
    target = host.root / "bin" / "launchctl"
    shutil.copy(DOUBLE, target)
    target.chmod(0o755)
    state = host.root / ".launchctl-double"
    state.mkdir(exist_ok=True)
    (state / "config.json").write_text(json.dumps(config))
    return state


def calls(state: Path) -> list[list[str]]:
    log = state / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def forget(state: Path) -> None:
    (state / "calls.jsonl").unlink(missing_ok=True)


def manager(ssh_lab: SshLab, host: SshHost, domain: str = DOMAIN) -> LaunchdManager:
    plist_dir = str(host.root / "Library/LaunchDaemons") if domain == "system" else None
    return LaunchdManager(ssh_lab.transport(host.name), domain=domain, plist_dir=plist_dir,
                          state_dir=str(host.root / "state"))


def p(*labels: str) -> list[list[str]]:
    return [["print", f"{DOMAIN}/{label}"] for label in labels]


def test_double_bootstrap_bootout_kickstart_sequences(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    state = install_double(host)
    mgr = manager(ssh_lab, host)
    agents = host.root / "Library/LaunchAgents"
    app_plist, web_plist = str(agents / f"{APP}.plist"), str(agents / f"{WEB}.plist")

    # New: write, then bootstrap each plist (launchctl wants the real path, ~ expanded).
    sessions = host.sessions()
    assert mgr.apply({"app": plist(host), "web": plist(host, "web")}) == {}
    assert host.sessions() - sessions == 2
    assert calls(state) == [*p(APP, WEB), ["bootstrap", DOMAIN, app_plist],
                            ["bootstrap", DOMAIN, web_plist], *p(APP, WEB)]
    assert mgr.unit_path("app") == f"~/Library/LaunchAgents/{APP}.plist"
    # The log directory launchd writes to exists (launchd does not create it).
    assert (host.root / "state/logs").is_dir()
    seen = mgr.observe(["app", "web"])
    assert seen["app"].state == "running" and seen["app"].pid and seen["app"].exists
    assert health_word(seen["app"]) == "Healthy"
    first_pid = seen["app"].pid

    # Unchanged: one round trip, nothing but the prints.
    forget(state)
    sessions = host.sessions()
    assert mgr.apply({"app": plist(host), "web": plist(host, "web")}) == {}
    assert host.sessions() - sessions == 1
    assert calls(state) == p(APP, WEB)

    # Changed: launchd rereads a plist only on bootstrap, so bootout then bootstrap.
    forget(state)
    assert mgr.apply({"app": plist(host, port=2), "web": plist(host, "web")}) == {}
    assert calls(state) == [*p(APP, WEB), ["bootout", f"{DOMAIN}/{APP}"],
                            ["bootstrap", DOMAIN, app_plist], *p(APP, WEB)]
    after = mgr.observe(["app", "web"])
    assert after["app"].pid != first_pid and after["web"].pid == seen["web"].pid
    double_state = json.loads((state / "state.json").read_text())
    assert double_state["jobs"][f"{DOMAIN}/{APP}"]["argv"][-1] == "2"  # the new plist

    # Restart only: kickstart -k.
    forget(state)
    assert mgr.apply({"app": plist(host, port=2), "web": plist(host, "web")},
                     restart=["web"]) == {}
    assert calls(state) == [*p(APP, WEB), ["kickstart", "-k", f"{DOMAIN}/{WEB}"],
                            *p(APP, WEB)]
    assert mgr.observe(["web"])["web"].pid != seen["web"].pid

    # Removed: bootout, delete the plist.
    forget(state)
    assert mgr.apply({"app": plist(host, port=2)}, remove=["web"]) == {}
    assert calls(state) == [*p(APP, WEB), ["bootout", f"{DOMAIN}/{WEB}"], *p(APP)]
    assert not Path(web_plist).exists()
    gone = mgr.observe(["web"])["web"]
    assert (gone.exists, gone.state, health_word(gone)) == (False, "not loaded", "Missing")


def test_double_written_plists_round_trip(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    install_double(host)
    mgr = manager(ssh_lab, host)
    texts = {"app": plist(host, secrets=True), "web": plist(host, "web")}
    assert mgr.apply(texts, secrets={"app": {"TOKEN": "t"}}) == {}
    for name, text in texts.items():
        written = (host.root / f"Library/LaunchAgents/me.blumeops.{name}.plist").read_bytes()
        assert written.decode() == text
        data = plistlib.loads(written)
        assert data["Label"] == f"me.blumeops.{name}" and data["RunAtLoad"] is True
        assert plistlib.dumps(data, sort_keys=True) == written


def test_double_secrets_through_wrapper_never_on_a_command_line(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    state = install_double(host)
    mgr = manager(ssh_lab, host)
    text = plist(host, secrets=True)
    assert mgr.apply({"app": text}, secrets={"app": {"TOKEN": CANARY}}) == {}
    wrapper = host.root / "state/bin/blumeops-secrets-exec"
    env = host.root / "state/secrets/app.env"
    assert wrapper.read_bytes() == WRAPPER_SOURCE.read_bytes()
    assert wrapper.stat().st_mode & 0o777 == 0o755
    assert env.stat().st_mode & 0o777 == 0o600
    # What launchd would exec: the plist's own argv up to "--", on the host's python3.9,
    # with a command that prints the secret it received.
    argv = plistlib.loads(text.encode())["ProgramArguments"]
    assert argv[:3] == ["/usr/bin/env", "python3", str(wrapper)] and argv[3] == str(env)
    got = subprocess.run([str(PY39), *argv[2:5], "/usr/bin/printenv", "TOKEN"],
                         capture_output=True, text=True, check=True).stdout
    assert got == CANARY + "\n"

    # Only the value changes: the env file is rewritten and the job kickstarted.
    forget(state)
    assert mgr.apply({"app": text}, secrets={"app": {"TOKEN": CANARY + "2"}}) == {}
    assert calls(state) == [*p(APP), ["kickstart", "-k", f"{DOMAIN}/{APP}"], *p(APP)]
    log = (state / "calls.jsonl").read_text()
    assert "CANARY" not in log and "CANARY" not in host.log_text()
    assert "CANARY" not in (host.root / f"Library/LaunchAgents/{APP}.plist").read_text()

    # Removing the service removes its secrets.
    assert mgr.apply({}, remove=["app"]) == {}
    assert not env.exists()


def test_double_failing_job_is_degraded(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    install_double(host, failing=[APP])
    mgr = manager(ssh_lab, host)
    # Arguments that look like `launchctl print` keys must not be read as the job's state.
    tricky = plist(host, command=("/bin/echo", "state = running", "pid = 99"))
    errors = mgr.apply({"app": tricky, "web": plist(host, "web")})
    assert list(errors) == ["app"] and "exited 1" in errors["app"]
    seen = mgr.observe(["app", "web"])
    assert (seen["app"].state, seen["app"].running, seen["app"].pid) == ("exited 1", False,
                                                                          None)
    assert health_word(seen["app"]) == "Degraded" and health_word(seen["web"]) == "Healthy"


def test_double_bootstrap_retried_while_launchd_still_boots_out(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    state = install_double(host, bootout_lag=True)
    mgr = manager(ssh_lab, host)
    assert mgr.apply({"app": plist(host)}) == {}
    forget(state)
    sessions = host.sessions()
    assert mgr.apply({"app": plist(host, port=3)}) == {}
    path = str(host.root / f"Library/LaunchAgents/{APP}.plist")
    assert calls(state) == [*p(APP), ["bootout", f"{DOMAIN}/{APP}"],
                            ["bootstrap", DOMAIN, path], *p(APP),
                            ["bootstrap", DOMAIN, path], *p(APP)]
    assert host.sessions() - sessions == 3
    assert mgr.observe(["app"])["app"].running


def test_double_system_domain_and_one_round_trip_observe(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    state = install_double(host)
    mgr = manager(ssh_lab, host, domain="system")
    assert mgr.apply({"app": plist(host)}) == {}
    daemon = str(host.root / f"Library/LaunchDaemons/{APP}.plist")
    assert calls(state) == [["print", f"system/{APP}"], ["bootstrap", "system", daemon],
                            ["print", f"system/{APP}"]]
    sessions = host.sessions()
    seen = mgr.observe(["app", "web"])
    assert host.sessions() - sessions == 1
    assert seen["app"].running and not seen["web"].exists
    with pytest.raises(ValueError, match="not a launchd domain"):
        LaunchdManager(ssh_lab.transport("indri"), domain="gui/; rm -rf /")


def test_parse_print_reads_only_the_jobs_own_lines() -> None:
    out = ("gui/501/x = {\n\tstate = not running\n\targuments = {\n\t\tstate = running\n"
           "\t\tpid = 5\n\t}\n\tlast exit code = 78\n}\n")
    assert parse_print(out) == {"state": "not running", "last exit code": "78"}


def test_secrets_wrapper_on_python39_fails_clearly_without_values(tmp_path: Path) -> None:
    """The wrapper a Mac runs (stdlib only): usage, unreadable file, bad JSON, no command."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PY39), str(WRAPPER_SOURCE), *args], capture_output=True,
                              text=True, timeout=30)

    assert run("only-one").returncode == 2
    missing = run(str(tmp_path / "nope.env"), "--", "/bin/true")
    assert missing.returncode == 1 and "nope.env" in missing.stderr
    bad = tmp_path / "bad.env"
    bad.write_text('["CANARY-not-an-object"]')
    out = run(str(bad), "--", "/bin/true")
    assert out.returncode == 1 and "CANARY" not in out.stderr + out.stdout
    good = tmp_path / "good.env"
    good.write_text(json.dumps({"K": "v"}))
    assert run(str(good), "--", "/no/such/program").returncode == 127
    assert run(str(good), "--", "/usr/bin/printenv", "K").stdout == "v\n"


def test_double_undeliverable_secrets_leave_the_job_untouched(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    state = install_double(host)
    errors = manager(ssh_lab, host).apply({"app": plist(host)}, secrets={"app": {"K": "v"}})
    assert list(errors) == ["app"] and "secrets wrapper" in errors["app"]
    assert calls(state) == p(APP)
    assert not (host.root / f"Library/LaunchAgents/{APP}.plist").exists()


def test_double_bad_plists_are_refused_before_anything_runs(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    state = install_double(host)
    wrong = plist(host).replace(APP, "me.blumeops.other")
    errors = manager(ssh_lab, host).apply({"app": wrong, "web": "<plist>not xml"})
    assert sorted(errors) == ["app", "web"] and "Label" in errors["app"]
    assert "not a valid plist" in errors["web"]
    assert calls(state) == p(APP, WEB)  # observed, nothing else
    assert not (host.root / "Library/LaunchAgents").exists()
