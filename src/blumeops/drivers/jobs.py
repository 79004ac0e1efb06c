"""Job health as each manager reports it: supervisord with blumeops-scheduler's run record
(STATE/jobs/state.json), a systemd timer and its service, a launchd job. Each turns what
its manager says into a run record and judges it by core/jobs.py's rules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blumeops.core.health import Health, JobRun, ServiceHealth
from blumeops.core.jobs import judge
from blumeops.core.schedule import SCHEDULER, next_run
from blumeops.scheduler import read_state

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.core.spec import ServiceSpec
    from blumeops.drivers.supervisor import ProgramStatus
    from blumeops.drivers.units import UnitState


def job_health(name: str, svc: ServiceSpec, state_dir: Path,
               status: dict[str, ProgramStatus]) -> ServiceHealth:
    """A local supervisor job's health (see the module docstring)."""

    st = status.get(name)
    sched = status.get(SCHEDULER)
    return program_job_health(name, svc, st.state if st else None, st.pid if st else None,
                              sched.state if sched else None,
                              read_state(state_dir).get(name))


def program_job_health(name: str, svc: ServiceSpec, state: str | None, pid: int | None,
                       scheduler: str | None, record: dict[str, Any] | None,
                       where: str = "") -> ServiceHealth:
    """A job run by blumeops-scheduler under supervisord (this machine's or a host's over
    SSH): `state` is its program's supervisord state (None: not loaded), `scheduler` the
    scheduler's, `record` its run record from STATE/jobs/state.json."""

    assert svc.job is not None
    run = JobRun((record or {}).get("last_start"), (record or {}).get("next_run"),
                 (record or {}).get("exit_code"), bool((record or {}).get("running")))
    at = f" {where}" if where else ""
    if state is None:
        return ServiceHealth(name, Health.missing, f"job not loaded in supervisord{at}",
                             job=run)
    if scheduler not in ("RUNNING", "STARTING"):
        word = scheduler or "not loaded"
        return ServiceHealth(name, Health.missing, f"{SCHEDULER} is {word}{at}: nothing "
                             "starts this job", state, pid, job=run)
    health, detail = judge(svc.job, record, datetime.now().astimezone())
    # supervisord runs it: Progressing, unless the recorded run hangs past `max_age`
    # (judge's Degraded for a running record), which must show and be notified.
    hung = health is Health.degraded and bool((record or {}).get("running"))
    if state in ("RUNNING", "STARTING") and health is not Health.progressing and not hung:
        health, detail = Health.progressing, "running"
    return ServiceHealth(name, health, detail + at, state, pid, job=run)


def scheduler_health(name: str, status: dict[str, ProgramStatus], state_dir: Path
                     ) -> ServiceHealth:
    """blumeops-scheduler is Healthy while supervisord runs it."""

    st = status.get(name)
    if st is None:
        return ServiceHealth(name, Health.missing, "not running under supervisord")
    if st.state == "STARTING":
        return ServiceHealth(name, Health.progressing, "starting", st.state, st.pid)
    if st.state != "RUNNING":
        return ServiceHealth(name, Health.degraded, f"{st.state}: {st.spawnerr or st.description}"
                             f"; log: logs/{name}.log", st.state, st.pid)
    jobs = read_state(state_dir)
    return ServiceHealth(name, Health.healthy, f"running {len(jobs)} jobs", st.state, st.pid)


def systemd_job_health(name: str, svc: ServiceSpec, st: UnitState, host: str
                       ) -> ServiceHealth:
    """A job on a systemd host: its timer must be active (else nothing starts it); the
    rest is `judge` on a record made of `systemctl show` (the timer's activation is when
    it was scheduled; the service's ExecMain* are the last run; NextElapseUSecRealtime the
    next). systemd keeps only the last run: a success before a failure is not known, so
    `max_age` is judged only while the last run succeeds."""
    # lazy: keeps pydantic out of start-up
    from blumeops.drivers.systemd import show_time

    assert svc.job is not None
    props = st.job or {}
    timer = props.get("timer:ActiveState", "unknown")
    start = show_time(props.get("service:ExecMainStartTimestamp"))
    running = st.running
    code: int | None = None
    status = props.get("service:ExecMainStatus", "")
    if start and not running and status.lstrip("-").isdigit():
        code = int(status)
        if code == 0 and props.get("service:Result") not in (None, "", "success"):
            code = None  # killed, timed out: it did not run to its end
    upcoming = show_time(props.get("timer:NextElapseUSecRealtime"))
    if upcoming is None and svc.job.cron is not None:  # systemd said none: the schedule's
        upcoming = next_run(svc.job.cron, None, datetime.now().astimezone()).isoformat()
    run = JobRun(start, upcoming, code, running)
    where = f"on {host}"
    if props.get("timer:LoadState") not in ("loaded", None) or not st.exists:
        return ServiceHealth(name, Health.missing, f"no timer loaded {where}", st.state,
                             job=run)
    if timer != "active":
        return ServiceHealth(name, Health.degraded, f"timer {timer} {where}: nothing starts "
                             "this job", st.state, job=run)
    record = {"scheduled_since": show_time(props.get("timer:ActiveEnterTimestamp")),
              "last_start": start, "running": running, "exit_code": code,
              "last_end": show_time(props.get("service:ExecMainExitTimestamp")),
              "last_success": start if code == 0 else None, "next_run": upcoming}
    health, detail = judge(svc.job, record, datetime.now().astimezone())
    return ServiceHealth(name, health, f"{detail} {where}", st.state, st.pid, job=run)


def launchd_job_health(name: str, svc: ServiceSpec, st: UnitState, host: str
                       ) -> ServiceHealth:
    """A job on a launchd host, from `launchctl print`: loaded or not, running, `runs`
    and `last exit code`. launchd records no time of a run, so whether a job is overdue
    or its last success older than `max_age` cannot be told: the detail says so. The
    next run is the schedule's next time (a cron job); launchd does not say it."""

    assert svc.job is not None
    props = st.job or {}
    at = datetime.now().astimezone()
    upcoming = (next_run(svc.job.cron, None, at).isoformat()
                if svc.job.cron is not None else None)
    last = props.get("last exit code", "")
    code = int(last) if last.lstrip("-").isdigit() else None
    runs = int(props["runs"]) if props.get("runs", "").isdigit() else 0
    run = JobRun(None, upcoming, code, st.running)
    where = f"on {host}"
    if not st.exists or st.state == "not loaded":
        return ServiceHealth(name, Health.missing, f"job not loaded in launchd {where}",
                             st.state, job=run)
    if st.running:
        return ServiceHealth(name, Health.progressing, f"running {where}", st.state, st.pid,
                             job=run)
    untold = "launchd records no run times, so overdue and max_age are not judged"
    if code is None or runs == 0:
        first = f"; first at {upcoming}" if upcoming else ""
        return ServiceHealth(name, Health.healthy, f"no run yet{first} {where}", st.state,
                             job=run)
    if code != 0:
        return ServiceHealth(name, Health.degraded, f"last run: exit {code} ({runs} runs) "
                             f"{where}", st.state, job=run)
    return ServiceHealth(name, Health.healthy, f"last run: exit 0 ({runs} runs) {where}; "
                         f"{untold}", st.state, job=run)


