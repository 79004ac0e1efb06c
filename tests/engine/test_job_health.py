"""Job health from a run record at a given time (core/jobs.py `judge`), and schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from blumeops.core.health import Health
from blumeops.core.jobs import judge
from blumeops.core.schedule import as_kubernetes, next_run, parse_cron, parse_duration
from blumeops.core.spec import JobSpec

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DAILY = JobSpec(cron="15 3 * * *")
HOURLY = JobSpec(every=3600)


def at(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


def record(**fields: object) -> dict[str, object]:
    out: dict[str, object] = {"scheduled_since": T0.isoformat()}
    out.update({k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()})
    return out


def test_before_the_scheduler_takes_it_is_progressing() -> None:
    assert judge(DAILY, None, T0)[0] is Health.progressing


def test_no_run_yet_is_healthy_until_its_first_time_passes() -> None:
    health, detail = judge(DAILY, record(), at(hours=10))
    assert health is Health.healthy
    assert detail == "no run yet; first at 2026-11-28T03:15:00+00:00"
    # Its first time passed ten minutes ago (the grace) and nothing ran: overdue.
    health, detail = judge(DAILY, record(), at(hours=15, minutes=25, seconds=1))
    assert health is Health.degraded
    assert detail.startswith("overdue: due at 2026-11-28T03:15:00")


def test_last_exit_decides() -> None:
    ok = record(last_start=at(hours=15, minutes=15), exit_code=0,
                last_success=at(hours=15, minutes=15))
    assert judge(DAILY, ok, at(hours=16)) == (
        Health.healthy, "last run 2026-11-28T03:15:00+00:00: exit 0")
    bad = record(last_start=at(hours=15, minutes=15), exit_code=2, output="a\nb\nno space")
    health, detail = judge(DAILY, bad, at(hours=16))
    assert health is Health.degraded
    assert detail == "last run 2026-11-28T03:15:00+00:00: exit 2; output: a | b | no space"
    never = record(last_start=at(minutes=1), exit_code=None, output="could not start: ENOENT")
    assert judge(HOURLY, never, at(minutes=2))[0] is Health.degraded


def test_running_is_progressing_even_when_late() -> None:
    busy = record(last_start=at(minutes=1), running=True)
    assert judge(HOURLY, busy, at(hours=5))[0] is Health.progressing


def test_a_run_that_hangs_past_max_age_is_degraded() -> None:
    job = JobSpec(cron="15 3 * * *", max_age=26 * 3600)
    hung = record(last_start=at(hours=15, minutes=15), running=True,
                  last_success=at(hours=-9))
    assert judge(job, hung, at(hours=16))[0] is Health.progressing
    health, detail = judge(job, hung, at(hours=17, minutes=1))
    assert health is Health.degraded
    assert detail == ("running since 2026-11-28T03:15:00+00:00, and no successful run "
                      "since 2026-11-27T03:00:00+00:00")


def test_a_run_not_stopped_at_its_timeout_is_degraded() -> None:
    """The scheduler stops a run at its timeout; one still running well past it (the
    scheduler was down) is Degraded, whatever max_age says."""
    job = JobSpec(every=3600, timeout=600)
    busy = record(last_start=at(minutes=1), running=True)
    assert judge(job, busy, at(minutes=11))[0] is Health.progressing
    health, detail = judge(job, busy, at(minutes=12))
    assert health is Health.degraded
    assert detail == "running since 2026-11-27T12:01:00+00:00, longer than its timeout (600s)"


def test_interval_grace_and_overdue() -> None:
    ran = record(last_start=at(minutes=0), exit_code=0, last_success=at(minutes=0))
    # Due at +60 min, grace = the period capped at 10 minutes.
    assert judge(HOURLY, ran, at(minutes=69))[0] is Health.healthy
    assert judge(HOURLY, ran, at(minutes=70, seconds=1))[0] is Health.degraded
    tight = JobSpec(every=3600, grace=30)
    assert judge(tight, ran, at(minutes=60, seconds=31))[0] is Health.degraded


def test_max_age_is_the_age_of_the_last_success() -> None:
    """A backup that runs but keeps failing, then succeeds once: what counts for max_age
    is the last success (the last archive), not the last run."""
    job = JobSpec(every=3600, max_age=2 * 3600)
    old_success = record(last_start=at(hours=3), exit_code=0, last_success=at(minutes=0))
    assert judge(job, old_success, at(hours=3, minutes=5))[0] is Health.degraded
    fresh = record(last_start=at(hours=3), exit_code=0, last_success=at(hours=3))
    assert judge(job, fresh, at(hours=3, minutes=5))[0] is Health.healthy


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h", 3600),
                                               ("1d", 86400), ("2w", 1209600)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "1.5h", "1 h", "h", "10y", "-1m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_cron_fields_and_day_rule() -> None:
    both = parse_cron("0 0 1 * MON")  # the 1st of the month OR a Monday, as cron means
    assert both.day_or and both.weekdays == {1} and both.days == {1}
    assert not parse_cron("0 0 * * 1-5").day_or
    assert parse_cron("0 0 * * 7").weekdays == {0}
    assert parse_cron("@daily").expression == "0 0 * * *"
    # Monday 2026-11-30 and Tuesday 2026-12-01 both fire.
    first = next_run("0 0 1 * MON", None, datetime(2026, 11, 29, 12))
    assert first == datetime(2026, 11, 30)
    assert next_run("0 0 1 * MON", None, first) == datetime(2026, 12, 1)


@pytest.mark.parametrize("text", ["0 0 L * *", "0 0 * * 5#2", "0 0 LW * *", "61 * * * *",
                                  "* * * *", "0 0 ? * *", "@reboot"])
def test_cron_that_not_every_target_reads_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cron(text)


def test_intervals_as_kubernetes_cron() -> None:
    assert as_kubernetes(300) == "*/5 * * * *"
    assert as_kubernetes(60) == "* * * * *"
    assert as_kubernetes(3600) == "0 * * * *"
    assert as_kubernetes(6 * 3600) == "0 */6 * * *"
    assert as_kubernetes(86400) == "0 0 * * *"
    assert as_kubernetes(90) is None and as_kubernetes(7 * 60) is None
    assert as_kubernetes(5 * 3600) is None


def test_backup_job_health_becomes_backup_notices() -> None:
    """The controller turns the backup job's health into backup-* steps; the notify
    rules make one notice per change of them."""
    from blumeops.core.health import ServiceHealth
    from blumeops.core.jobs import backup_events
    from blumeops.core.spec import ServiceSpec
    from blumeops.notify.rules import Rules

    services = {"borgmatic": ServiceSpec("borgmatic", "box", True,
                                         job=JobSpec(cron="15 3 * * *", backup=True)),
                "speedtest": ServiceSpec("speedtest", "box", True, job=JobSpec(every=60))}

    def events(word: Health, detail: str, name: str = "borgmatic") -> list[tuple[str, ...]]:
        return [e[:2] for e in backup_events([ServiceHealth(name, word, detail)], services)]

    assert events(Health.degraded, "last run 2026-11-28T03:15:00: exit 2") == [
        ("backup-failed", "borgmatic")]
    assert events(Health.degraded, "overdue: due at 2026-11-28T03:15:00, no run since") == [
        ("backup-overdue", "borgmatic")]
    assert events(Health.degraded, "running since X, and no successful run since Y") == [
        ("backup-overdue", "borgmatic")]
    assert events(Health.healthy, "last run ...: exit 0") == [("backup-ok", "borgmatic")]
    assert events(Health.progressing, "running since X") == []
    assert events(Health.degraded, "exit 1", name="speedtest") == []  # not the backup job

    rules = Rules()
    [notice] = rules.step("backup-failed", {"job": "borgmatic", "detail": "exit 2"}, 0.0)
    assert (notice.event, notice.title) == ("backup-failed", "backup borgmatic failed")
    assert rules.step("backup-failed", {"job": "borgmatic", "detail": "exit 2"}, 10.0) == []
    [ok] = rules.step("backup-ok", {"job": "borgmatic"}, 20.0)
    assert ok.title == "backup borgmatic is fine again"
