"""What runs is what was applied: a restart lost between writing a program and starting
it again is a pending change (plan), not converged (status), and the next apply does it.

The demo lab with real supervisord and Caddy; the fault is injected in-process at the
exact point: the program and its secrets are written, then the driver raises before
supervisord is told (as a crash or a dropped connection would leave it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from demolab import DemoLab, demo_fixture  # noqa: F401 (fixture "demo")

from blumeops.drivers.process import DriverError
from blumeops.drivers.supervisor import SupervisorDriver

pytestmark = pytest.mark.slow


def environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def api_status(demo: DemoLab) -> tuple[int, dict[str, object]]:
    out = demo.cli("status", "--output", "json")
    assert "Traceback" not in out.stderr, out.stderr
    services = {s["service"]: s for s in json.loads(out.stdout)["services"]}
    return out.returncode, services["api"]



def apply_cut_after_the_write(demo: DemoLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """An apply whose files land but whose reload/restart never happens (the fault)."""
    from blumeops.commands.session import Session
    from blumeops.engine.apply import apply, prepare

    def cut(self: SupervisorDriver, *args: object) -> object:
        raise DriverError("connection lost (injected after the write)")

    with monkeypatch.context() as m:
        m.setattr(SupervisorDriver, "_reload", cut)
        session = Session(demo.lab, demo.state)
        try:
            with pytest.raises(DriverError, match="injected"):
                apply(session.runtime, prepare(session.runtime, session.store),
                      session.store, wait=5)
        finally:
            session.close()

def test_a_restart_lost_after_the_write_is_pending_until_the_next_apply(
        demo: DemoLab, monkeypatch: pytest.MonkeyPatch) -> None:

    for name in ("BLUMEOPS_AGE_KEY", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, demo.env[name])
    demo.cli("apply", "--yes", check=True)
    code, before = api_status(demo)
    assert code == 0 and before["health"] == "Healthy"
    old_pid = before["pid"]
    assert isinstance(old_pid, int) and b"API_NAME=demo" in environ(old_pid)

    # A new environment and a rotated secret; the run dies between write and restart.
    demo.edit("API_NAME: demo", "API_NAME: other")
    demo.run("secret", "set", str(demo.lab), "demo/api-token", "--value", "rotated-v2",
             check=True)

    apply_cut_after_the_write(demo, monkeypatch)
    program = (demo.state / "supervisor" / "programs" / "api.conf").read_text()
    assert "API_NAME=\"other\"" in program or "API_NAME=other" in program
    _, mid = api_status(demo)
    assert mid["pid"] == old_pid and b"API_NAME=demo" in environ(old_pid)

    # plan shows the owed restart; status is not converged and says why.
    plan = demo.cli("plan")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "supervisor@box/program/api" in plan.stdout
    code, mid = api_status(demo)
    assert code == 1 and mid["health"] == "Progressing", mid
    assert "restart pending" in str(mid["detail"])

    # The next apply restarts it with what was written.
    demo.cli("apply", "--yes", check=True)
    code, after = api_status(demo)
    assert code == 0 and after["health"] == "Healthy", after
    new_pid = after["pid"]
    assert isinstance(new_pid, int) and new_pid != old_pid
    env = environ(new_pid)
    assert b"API_NAME=other" in env and b"API_TOKEN=rotated-v2" in env
    assert "No changes" in demo.cli("plan", check=True).stdout


def test_a_restart_lost_with_nothing_else_changed_is_still_seen(
        demo: DemoLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the environment changed (no secret): the state database has nothing to
    compare, only the marks know the process runs the old program."""

    for name in ("BLUMEOPS_AGE_KEY", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, demo.env[name])
    demo.cli("apply", "--yes", check=True)
    demo.edit("API_NAME: demo", "API_NAME: other")

    apply_cut_after_the_write(demo, monkeypatch)
    plan = demo.cli("plan")
    assert plan.returncode == 2 and "restart pending" in plan.stdout, plan.stdout
    demo.cli("apply", "--yes", check=True)
    _, after = api_status(demo)
    assert isinstance(after["pid"], int) and b"API_NAME=other" in environ(after["pid"])
    assert "No changes" in demo.cli("plan", check=True).stdout


CRASHER = """
  crasher:
    native: box
    description: Exits at every start, long before its startsecs (a crash loop)
    command: [python3, -c, "raise SystemExit(3)"]
    startsecs: 10
"""


def test_apply_fails_a_program_that_never_reached_running(
        demo: DemoLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash loop read as STARTING at every poll (polls slowed as on a loaded machine,
    so each lands while supervisord is starting it again) is a failure, not a success."""
    from blumeops.commands.session import Session
    from blumeops.engine.apply import apply, prepare
    from blumeops.engine.local import LocalRuntime

    for name in ("BLUMEOPS_AGE_KEY", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, demo.env[name])
    demo.cli("apply", "--yes", check=True)
    demo.edit("\nservices:\n", "\nservices:\n" + CRASHER)
    real = LocalRuntime.service_health

    def slow_poll(self: LocalRuntime, names: list[str], started: dict[str, float]) -> Any:
        """The real answer, taken only at a moment the crasher reads STARTING."""
        while True:
            out = real(self, names, started)
            if "crasher" not in out or out["crasher"].state != "BACKOFF":
                return out
            time.sleep(0.05)

    monkeypatch.setattr(LocalRuntime, "service_health", slow_poll)
    session = Session(demo.lab, demo.state)
    try:
        report = apply(session.runtime, prepare(session.runtime, session.store),
                       session.store, wait=3)
    finally:
        session.close()
    assert not report.ok and "crasher" in report.failed, report.as_dict()
    assert ("never reached RUNNING" in report.failed["crasher"]
            or "FATAL" in report.failed["crasher"]), report.failed
    monkeypatch.undo()
    # The CLI says so too, and exits non-zero.
    out = demo.cli("apply", "--yes")
    assert out.returncode == 1 and "failed: crasher" in out.stderr, out.stderr
