"""Scheduled jobs on the embedded default: a real supervisord runs blumeops-scheduler.

Through the real CLI: a job every 2 s runs and each run is recorded (start, end, exit
code, output); a failing job turns Degraded with its exit code and output in `status`;
a job removed from the catalog stops running; a no-op plan stays empty between runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from demolab import DemoLab, reap

from blumeops.scheduler import Supervisor, read_state, supervisor_socket
from polling import wait_for

pytestmark = pytest.mark.slow

LAB = """\
lab: jobs
hosts:
  box: {role: compute, os: linux, service_manager: supervisor, local: true, address: 127.0.0.1}
services:
  tick:
    native: box
    command: [sh, -c, "echo tick; date +%s >> runs.txt"]
    schedule: {every: 2s}
  boom:
    native: box
    command: [sh, -c, "echo about to fail; exit 3"]
    schedule: 2s
"""


@pytest.fixture(name="lab")
def lab_fixture() -> Iterator[DemoLab]:
    root = Path(tempfile.mkdtemp(prefix="bo-", dir="/tmp"))
    (root / "lab").mkdir()
    (root / "lab" / "lab.yaml").write_text(LAB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env["BLUMEOPS_AGE_KEY"] = str(root / "age.key")
    env["XDG_CACHE_HOME"] = str(root / "cache")
    lab = DemoLab(root, {}, env)
    try:
        yield lab
    finally:
        lab.cli("down")
        left = reap(root)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes left behind after down: {left}"


def status(lab: DemoLab) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = lab.cli("status", "-o", "json")
    return proc.returncode, {s["service"]: s for s in json.loads(proc.stdout)["services"]}


def test_jobs_run_are_recorded_fail_and_stop(lab: DemoLab) -> None:
    lab.cli("apply", "--yes", check=True)
    runs = lab.lab / "runs.txt"
    # The interval job runs again and again, each run recorded by the scheduler.
    wait_for(lambda: runs.exists() and len(runs.read_text().split()) >= 2, 30,
             "two runs of tick", every=0.2)
    wait_for(lambda: read_state(lab.state).get("tick", {}).get("last_success"), 30,
             "tick's success recorded", every=0.2)
    tick = read_state(lab.state)["tick"]
    assert tick["output"] == "tick" or tick["running"]
    assert oct((lab.state / "jobs" / "state.json").stat().st_mode & 0o777) == "0o600"

    # status: the failing job is Degraded with its exit code and output, the lab is not
    # Healthy (exit 1), the good one is Healthy with its last and next run.
    def failed() -> Any:
        # Its failed run recorded (under load it may first read Degraded as overdue,
        # before the scheduler's first start of it is recorded).
        code, services = status(lab)
        boom = services["boom"]
        ran = boom["health"] == "Degraded" and boom["job"]["exit_code"] is not None
        return (code, services) if ran else None

    code, services = wait_for(failed, 30, lambda: f"boom's failed run: {status(lab)}",
                              every=0.5)
    assert code == 1
    assert services["boom"]["job"]["exit_code"] == 3
    assert "exit 3" in services["boom"]["detail"]
    assert "about to fail" in services["boom"]["detail"]
    assert services["tick"]["health"] in ("Healthy", "Progressing")
    assert services["tick"]["job"]["last_run"] and services["tick"]["job"]["next_run"]
    assert services["blumeops-scheduler"]["health"] == "Healthy"
    text = lab.cli("status").stdout
    assert "LAST RUN" in text and "NEXT RUN" in text and "EXIT" in text
    # `check` judges a job by its last run, not by a process that is not meant to run.
    checked = lab.cli("check")
    assert checked.returncode == 1
    assert any(line.startswith("FAIL job") and "boom" in line and "exit 3" in line
               for line in checked.stdout.splitlines()), checked.stdout

    # Between runs a job is EXITED, which is as desired: nothing to change.
    plan = lab.cli("plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr

    # Fixed and the failing job removed: boom's program is gone and never runs again;
    # the lab turns Healthy once tick has run under the new table.
    (lab.lab / "lab.yaml").write_text(LAB.split("  boom:")[0])
    applied = lab.cli("apply", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert not (lab.state / "supervisor" / "programs" / "boom.conf").exists()
    assert "boom" not in read_state(lab.state)
    boom_log = lab.state / "logs" / "boom.log"
    size = boom_log.stat().st_size if boom_log.exists() else 0
    count = len(runs.read_text().split())
    wait_for(lambda: len(runs.read_text().split()) >= count + 2, 30, "two more ticks",
             every=0.2)
    assert (boom_log.stat().st_size if boom_log.exists() else 0) == size
    code, services = wait_for(lambda: (st := status(lab))[0] == 0 and st, 30,
                              lambda: f"a Healthy lab: {status(lab)}", every=0.5)
    assert "boom" not in services
    assert services["tick"]["job"]["exit_code"] == 0
    checked = lab.cli("check")
    assert checked.returncode == 0, checked.stdout
    assert any(line.startswith("ok   job") and "tick" in line
               for line in checked.stdout.splitlines()), checked.stdout


def test_a_job_is_not_started_by_apply(lab: DemoLab) -> None:
    """apply adds a job's program and leaves it to the scheduler: its first run comes
    one interval after the schedule starts, never at apply time."""
    (lab.lab / "lab.yaml").write_text(LAB.replace("every: 2s", "every: 1h").split("  boom:")[0])
    lab.cli("apply", "--yes", check=True)
    # The scheduler, started by the supervisord update that added tick, has its table:
    # tick's first time is one interval after the schedule started, not yet come.
    record = wait_for(lambda: read_state(lab.state).get("tick", {}).get("next_run")
                      and read_state(lab.state)["tick"], 30, "the scheduler's record of tick")
    since = datetime.fromisoformat(record["scheduled_since"])
    assert datetime.fromisoformat(record["next_run"]) - since == timedelta(hours=1), record
    assert not record.get("last_start"), record
    # Nor did supervisord start it in that update: it has never spawned it.
    rpc = Supervisor(lab.state, supervisor_socket(lab.state)).rpc
    info = rpc.supervisor.getProcessInfo("tick")
    assert info["start"] == 0 and info["statename"] == "STOPPED", info
    assert not (lab.lab / "runs.txt").exists()
    code, services = status(lab)
    assert code == 0, services
    assert services["tick"]["health"] == "Healthy"
    assert services["tick"]["detail"].startswith("no run yet; first at")
    assert services["tick"]["job"]["last_run"] is None
