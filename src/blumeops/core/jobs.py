"""Health of scheduled jobs: the result and the age of the last run.

A job is never kept running, so a probe cannot tell whether it works; its record can
(STATE/jobs/state.json, written by blumeops-scheduler). The words:

- Progressing: a run is going on (unless `max_age` passed, or the run is longer than
  its `timeout`: a hung run is Degraded), or the scheduler has not registered the job
  yet (just applied);
- Healthy: the last run exited 0 and the job is not overdue, or it has not run yet and
  its first time has not passed (a daily backup applied at noon is not a failure until
  tomorrow; the detail says when it first runs);
- Degraded: the last run exited non-zero (or could not start); or it is overdue (its
  next time passed more than `grace` ago, default the period, at most 10 minutes, with
  no run); or its last success is older than `max_age`;
- Missing: the job's program or the scheduler is not loaded in supervisord.

`status` shows the last run, the next run and the exit code beside the health.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from blumeops.core.health import Health
from blumeops.core.schedule import next_run, period

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.core.spec import JobSpec, ServiceSpec


MAX_GRACE = 600  # seconds: the default grace is the period, at most this
TIMEOUT_SLACK = 30  # seconds a run past its timeout may take to be stopped


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def grace_seconds(job: JobSpec, around: datetime) -> int:
    if job.grace is not None:
        return job.grace
    return min(period(job.cron, job.every, around), MAX_GRACE)


def judge(job: JobSpec, record: dict[str, Any] | None, at: datetime) -> tuple[Health, str]:
    """The job's health from its record at time `at` (pure: tests give their own clock)."""
    if record is None or _time(record.get("scheduled_since")) is None:
        return Health.progressing, "waiting for the scheduler to take it"
    since = _time(record["scheduled_since"])
    assert since is not None
    last = _time(record.get("last_start"))
    success = _time(record.get("last_success"))
    stale = job.max_age is not None and (success or since) < at - timedelta(
        seconds=job.max_age)
    if record.get("running"):
        running = f"running since {last.isoformat(timespec='seconds') if last else '?'}"
        # Past its timeout by more than a look of the scheduler: it was not stopped.
        if job.timeout is not None and last is not None and at > last + timedelta(
                seconds=job.timeout + TIMEOUT_SLACK):
            return Health.degraded, f"{running}, longer than its timeout ({job.timeout}s)"
        if stale:  # a run that hangs: the archive it should write is overdue
            return Health.degraded, (f"{running}, and no successful run since "
                                     f"{(success or since).isoformat(timespec='seconds')}")
        return Health.progressing, running
    code = record.get("exit_code")
    output = " | ".join(str(record.get("output") or "").strip().splitlines()[-5:])
    if last is not None and code != 0:
        what = f"exit {code}" if code is not None else "did not run to its end"
        return Health.degraded, (f"last run {last.isoformat(timespec='seconds')}: {what}"
                                 + (f"; output: {output}" if output else ""))
    # When the job should have started again after its last run (or first, after it was
    # scheduled): past that by more than the grace, it is overdue.
    due = next_run(job.cron, job.every, last or since)
    if at > due + timedelta(seconds=grace_seconds(job, at)):
        return Health.degraded, (f"overdue: due at {due.isoformat(timespec='seconds')}, "
                                 "no run since" + (" it was scheduled" if last is None else ""))
    if stale:
        return Health.degraded, ("no successful run since "
                                 f"{(success or since).isoformat(timespec='seconds')} "
                                 f"(max_age {job.max_age}s)")
    if last is None:
        return Health.healthy, f"no run yet; first at {due.isoformat(timespec='seconds')}"
    return Health.healthy, f"last run {last.isoformat(timespec='seconds')}: exit 0"


def backup_events(healths: list[ServiceHealth], services: dict[str, ServiceSpec]
                  ) -> list[tuple[str, str, str]]:
    """(event, job, detail) for the backup job's health: `backup-failed` when its last run
    failed, `backup-overdue` when it did not run in time or its archive is too old,
    `backup-ok` when Healthy (the notify rules turn changes into one notice each)."""
    out = []
    for h in healths:
        spec = services.get(h.service)
        if spec is None or spec.job is None or not spec.job.backup:
            continue
        if h.health is Health.healthy:
            out.append(("backup-ok", h.service, h.detail))
        elif h.health is Health.degraded:
            late = h.detail.startswith("overdue") or "no successful run since" in h.detail
            out.append(("backup-overdue" if late else "backup-failed", h.service, h.detail))
    return out
