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
from collections.abc import Callable, Iterator
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
    # boom fails every 2 s: `check` reads whichever run is the last by then, so the line
    # is FAIL with that run's reason (its exit 3, asserted on status above).
    assert any(line.startswith("FAIL job") and "boom" in line
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


def _lab_with(lab: DemoLab, services: str) -> None:
    head = LAB.split("services:")[0]
    (lab.lab / "lab.yaml").write_text(head + "services:\n" + services)


def test_a_run_hung_past_max_age_is_degraded_and_a_backup_notice(lab: DemoLab) -> None:
    """supervisord says RUNNING for a run that hangs: past `max_age` with no success the
    job is Degraded (not Progressing for ever), and as the backup job that is a
    backup-overdue notice."""
    from blumeops.core.health import Health, ServiceHealth
    from blumeops.core.jobs import backup_events
    from blumeops.core.spec import JobSpec, ServiceSpec

    _lab_with(lab, """\
  hang:
    native: box
    command: [sh, -c, "echo started; exec sleep 600"]
    schedule: {every: 1s, max_age: 4s}
""")
    lab.cli("apply", "--yes", check=True)
    wait_for(lambda: read_state(lab.state).get("hang", {}).get("running"), 30,
             "the hanging run to start")

    def degraded() -> Any:
        hang = status(lab)[1]["hang"]
        return hang if hang["health"] == "Degraded" else None

    hang = wait_for(degraded, 30, "hang to be Degraded")
    assert hang["state"] == "RUNNING" and hang["job"]["running"]
    assert hang["detail"].startswith("running since ")
    assert "no successful run since" in hang["detail"]
    code, _ = status(lab)
    assert code == 1  # the lab is not Healthy
    spec = {"hang": ServiceSpec("hang", "box", True, job=JobSpec(every=1, max_age=4,
                                                                 backup=True))}
    [event] = backup_events([ServiceHealth("hang", Health.degraded, hang["detail"])], spec)
    assert event[0] == "backup-overdue"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_jobs_background_child_is_stopped_with_it(lab: DemoLab) -> None:
    """A run that puts a child in the background and exits: the child (same process
    group) is stopped when the run ends, not left running."""
    _lab_with(lab, """\
  spawn:
    native: box
    command: [sh, -c, "sleep 300 & echo $! >> children.txt; echo spawned"]
    schedule: {every: 2s}
""")
    lab.cli("apply", "--yes", check=True)
    children = lab.lab / "children.txt"
    wait_for(lambda: children.exists() and len(children.read_text().split()) >= 2, 30,
             "two runs to leave a child each")
    first = int(children.read_text().split()[0])
    # The first run has ended (a second has started): its child is gone.
    wait_for(lambda: not _alive(first), 10, "the first run's child to be stopped")
    record = read_state(lab.state)["spawn"]
    assert record.get("exit_code") == 0 or record.get("running")


def test_the_wall_clock_set_back_does_not_stall_jobs(lab: DemoLab,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock goes back an hour (stand-in: the scheduler's clock function is
    shifted; the system clock cannot be stepped here). The real supervisord runs the
    jobs: the interval job keeps its pace, the cron job runs at its next minute on the
    new clock, instead of both waiting an hour for the old times."""
    from datetime import datetime, timedelta

    import blumeops.scheduler as sched
    from blumeops.core.schedule import SCHEDULER

    _lab_with(lab, """\
  tick:
    native: box
    command: [sh, -c, "date +%s >> runs.txt"]
    schedule: {every: 2s}
  minute:
    native: box
    command: [sh, -c, "date +%s >> minutes.txt"]
    schedule: {cron: "* * * * *"}
""")
    lab.cli("apply", "--yes", check=True)
    supervisor = sched.Supervisor(lab.state, sched.supervisor_socket(lab.state))
    supervisor.rpc.supervisor.stopProcess(SCHEDULER)  # this test runs the loop itself
    shift = [timedelta(0)]
    monkeypatch.setattr(sched, "now", lambda: datetime.now().astimezone() + shift[0])
    scheduler = sched.Scheduler(lab.state, [sched.Job("tick", None, 2),
                                            sched.Job("minute", "* * * * *", None)])
    runs, minutes = lab.lab / "runs.txt", lab.lab / "minutes.txt"

    def count(path: Path) -> int:
        return len(path.read_text().split()) if path.exists() else 0

    def ticking(until: Callable[[], bool], seconds: float, what: str) -> None:
        """The test runs the scheduler's loop: tick, then look."""
        wait_for(lambda: scheduler.tick() is not None and until(), seconds, what,
                 every=0.2)

    ticking(lambda: count(runs) >= 1, 10, "the first interval run")
    # Back one hour, to 3 s before a minute on the new clock.
    real = datetime.now().astimezone()
    shift[0] = timedelta(hours=-1, seconds=57 - real.second - real.microsecond / 1e6)
    before_runs, before_minutes = count(runs), count(minutes)
    ticking(lambda: count(runs) >= before_runs + 2 and count(minutes) >= before_minutes + 1,
            12, "two interval runs and a cron run on the clock set back")
    ticking(lambda: not any(r.get("running") for r in scheduler.records.values()), 5,
            "the runs to end")


def test_a_run_past_its_timeout_is_stopped_with_its_children(lab: DemoLab) -> None:
    """`timeout: 2s`: the scheduler has supervisord stop the run (its whole process
    group, the backgrounded child too); the run is recorded as stopped for its timeout
    and the job is Degraded saying so."""
    _lab_with(lab, """\
  slow:
    native: box
    command: [sh, -c, "sleep 300 & echo $! >> children.txt; echo working; sleep 600"]
    schedule: {every: 6s, timeout: 2s}
""")
    lab.cli("apply", "--yes", check=True)
    children = lab.lab / "children.txt"
    wait_for(lambda: children.exists() and children.read_text().split(), 30,
             "the run to start its child")
    child = int(children.read_text().split()[0])

    def stopped() -> Any:
        record = read_state(lab.state).get("slow", {})
        return record if record.get("last_end") and not record.get("running") else None

    record = wait_for(stopped, 30, "the run to be stopped for its timeout")
    assert record["exit_code"] is None
    assert record["output"].startswith("stopped: ran longer than its timeout (2s)"), record
    assert "working" in record["output"]
    assert record["last_state"] == "STOPPED"
    wait_for(lambda: not _alive(child), 10, "the child to be stopped")

    def degraded() -> Any:
        slow = status(lab)[1]["slow"]
        return slow if slow["health"] == "Degraded" else None

    slow = wait_for(degraded, 30, "slow to be Degraded")
    assert "did not run to its end" in slow["detail"]
    assert "ran longer than its timeout (2s)" in slow["detail"]


def test_a_run_too_short_to_be_seen_leaves_no_child(lab: DemoLab,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler never learns the run's pid (it exits before the scheduler looks:
    here the pid lookup is switched off, in a scheduler run by the test against the real
    supervisord): its backgrounded child is still found (supervisord's environment names
    the job and the supervisord) and stopped."""
    import blumeops.scheduler as sched
    from blumeops.core.schedule import SCHEDULER

    _lab_with(lab, """\
  spawn:
    native: box
    command: [sh, -c, "sleep 300 & echo $! >> children.txt"]
    schedule: {every: 1h}
""")
    lab.cli("apply", "--yes", check=True)
    supervisor = sched.Supervisor(lab.state, sched.supervisor_socket(lab.state))
    supervisor.rpc.supervisor.stopProcess(SCHEDULER)  # this test runs the loop itself
    monkeypatch.setattr(sched.Scheduler, "_note_pid", lambda *a, **k: None)
    scheduler = sched.Scheduler(lab.state, [sched.Job("spawn", None, 3600)])
    scheduler.due["spawn"] = sched.now()  # due now
    children = lab.lab / "children.txt"
    wait_for(lambda: scheduler.tick() is not None and children.exists()
             and scheduler.records["spawn"].get("last_end"), 20, "spawn's run to end",
             every=0.2)
    assert scheduler.records["spawn"].get("exit_code") == 0, scheduler.records
    assert not scheduler.pids
    child = int(children.read_text().split()[0])
    wait_for(lambda: not _alive(child), 10, "the child to be stopped")
