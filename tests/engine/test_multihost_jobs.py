"""Scheduled jobs on a supervisor host reached over SSH (examples/multihost, real sshd,
real supervisord there): blumeops-scheduler runs on the host from a stdlib-only copy
(scheduler.py + cronmatch.py under STATE/lib, the host's python3 3.9), starts each job at
its times, records its runs in STATE/jobs/state.json, and job health is read through the
agent in the same observe round trip."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from multihostlab import MultiLab, multihost_fixture, needs_sshd  # noqa: F401

from polling import wait_for

pytestmark = [needs_sshd, pytest.mark.slow]

JOBS = """
  tick:
    native: data
    command: [sh, -c, "date +%s >> ticks.txt"]
    schedule: {every: 2s}
  boom:
    native: data
    command: [sh, -c, "echo about to fail; exit 3"]
    schedule: {every: 2s}
"""


def status(lab: MultiLab) -> dict[str, dict[str, Any]]:
    out = lab.cli("status", "--output", "json")
    return {s["service"]: s for s in json.loads(out.stdout)["services"]}


def test_jobs_run_on_schedule_on_a_remote_supervisor_host(multihost: MultiLab) -> None:
    path = multihost.lab / "lab.yaml"
    path.write_text(path.read_text() + JOBS)
    plan = multihost.cli("plan")
    assert "rendered, not applied" not in plan.stdout + plan.stderr
    assert "+ create supervisor@data/program/blumeops-scheduler" in plan.stdout, plan.stdout
    first = multihost.cli("apply", "--yes")
    state = multihost.remote_state("data")
    # The scheduler runs from the host's copy of the stdlib modules.
    assert (state / "lib" / "blumeops" / "scheduler.py").is_file()
    assert (state / "lib" / "blumeops" / "cronmatch.py").is_file()
    ticks = state / "lab" / "ticks.txt"

    # The job really runs, every 2 s, started by the scheduler on the host.
    wait_for(lambda: ticks.exists() and len(ticks.read_text().split()) >= 3, 30,
             lambda: "3 runs of tick: " + first.stdout + first.stderr
             + (state / "logs" / "blumeops-scheduler.log").read_text(), every=0.5)
    stamps = [int(x) for x in ticks.read_text().split()]
    assert all(1 <= b - a <= 4 for a, b in itertools.pairwise(stamps)), stamps

    def records() -> dict[str, Any]:
        return dict(json.loads((state / "jobs" / "state.json").read_text())["jobs"])

    # Runs recorded as the local scheduler records them (a run going has no exit code yet).
    wait_for(lambda: records()["tick"].get("last_success")
             and records()["boom"].get("exit_code") == 3, 30,
             lambda: f"a success of tick and boom's exit 3: {records()}", every=0.5)
    assert (state / "jobs" / "state.json").stat().st_mode & 0o777 == 0o600

    got = wait_for(lambda: (lambda g: g if g["tick"]["health"] == "Healthy" and
                            g["boom"]["health"] == "Degraded" else None)(status(multihost)),
                   30, lambda: f"tick Healthy, boom Degraded: {status(multihost)}", every=0.5)
    assert got["tick"]["detail"].startswith("last run ") and "exit 0 on data" in \
        got["tick"]["detail"], got["tick"]
    assert got["tick"]["job"]["exit_code"] == 0 and got["tick"]["job"]["next_run"]
    assert "exit 3; output: about to fail" in got["boom"]["detail"], got["boom"]
    assert got["blumeops-scheduler"]["health"] == "Healthy", got["blumeops-scheduler"]
    assert got["blumeops-scheduler"]["host"] == "data"

    # Between runs a job is EXITED: converged; a no-op apply is one round trip per host.
    before = {n: h.sessions() for n, h in multihost.ssh.hosts.items()}
    again = multihost.cli("apply", "--yes")
    assert "No changes" in again.stdout, again.stdout + again.stderr
    after = {n: h.sessions() for n, h in multihost.ssh.hosts.items()}
    assert {n: after[n] - before[n] for n in after} == {n: 1 for n in after}

    # A job dropped from the catalog stops: its program goes, it never runs again.
    path.write_text(path.read_text().replace(
        '  boom:\n    native: data\n    command: [sh, -c, "echo about to fail; exit 3"]\n'
        '    schedule: {every: 2s}\n', ""))
    dropped = multihost.cli("apply", "--yes")
    assert "- delete supervisor@data/program/boom" in dropped.stdout, dropped.stdout
    assert not (state / "supervisor" / "programs" / "boom.conf").exists()
    # The scheduler restarted with the new table: boom's record is dropped, tick goes on.
    wait_for(lambda: "boom" not in records(), 20,
             lambda: f"boom's record dropped: {records()}", every=0.5)
    boom_log = state / "logs" / "boom.log"
    size = boom_log.stat().st_size if boom_log.exists() else 0
    count = len(ticks.read_text().split())
    # Two more runs of tick, on the same 2 s beat boom had: it would have run by now.
    wait_for(lambda: len(ticks.read_text().split()) >= count + 2, 30, "two more ticks",
             every=0.5)
    assert (boom_log.stat().st_size if boom_log.exists() else 0) == size  # never ran again
    assert "boom" not in status(multihost)
