"""Scheduled jobs rendered for every target, each read back by the target's own checker.

Every target fires at the times the catalog's cron reading (blumeops.cronmatch) names,
for the fixed expressions and a sample of random ones (lists, `*`-prefixed fields, `N/S`,
`N-N/S`):
- launchd: plistlib; StartCalendarInterval, matched the way launchd documents it (an
  omitted key is a wildcard; Day and Weekday together match when either does; a named
  stand-in for launchd, which cannot run here), fires at exactly those times; no KeepAlive.
- systemd: `systemd-analyze verify` on the oneshot service and its timer, and the real
  `systemd-analyze calendar` on every OnCalendar= gives the same next times.
- Kubernetes: a CronJob, strictly schema-valid (kubernetes-validate); its schedule is the
  field sets written plainly, weekdays 0-6 as robfig/cron reads them.
- supervisord: its own ServerOptions reads a job program that never starts itself and
  the scheduler program with its job table.
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from systemd_check import systemd_analyze, verify_clean
from test_injection import supervisor_programs

from blumeops.catalog.model import Lab
from blumeops.core.schedule import next_run, parse_cron
from blumeops.kubernetes import render as kubernetes
from blumeops.render import RenderContext, launchd, native, supervisor, systemd
from conftest import check_golden, load_data
from cronexamples import RANDOM


def _passes(cron: str) -> bool:
    try:
        parse_cron(cron)
    except ValueError:
        return False
    return True


CRONS = ["15 3 * * *", "*/20 9-17 * * 1-5", "0 0 1,15 * SUN", "30 4 * 1,7 *", "@weekly",
         "0 */6 * * *", "5 0 * * 0,6", "3-3/2 4 * * *", "0 0 1-31 * 1", "0 0 * * 5-7",
         "5/20 1-1/3 * * *"]
# A sample of the random expressions that pass the catalog (two weeks of launchd minutes
# each is what keeps this small).
SAMPLE = [c for c in RANDOM if _passes(c)][:40]


def job_lab(tmp_path: Path, os_name: str, manager: str, schedules: dict[str, Any],
            commands: dict[str, list[str]] | None = None) -> Lab:
    tmp_path.mkdir(exist_ok=True)
    services = {name: {"native": "h", "command": (commands or {}).get(name, ["/usr/bin/true"]),
                       "schedule": sched, "description": f"job {name}"}
                for name, sched in schedules.items()}
    result = load_data(tmp_path, {
        "lab": "j", "hosts": {"h": {"role": "compute", "os": os_name,
                                    "service_manager": manager, "local": True}},
        "services": services})
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    return result.lab


# --- launchd ---------------------------------------------------------------------------


def launchd_times(entries: list[dict[str, int]], start: datetime, days: int) -> set[datetime]:
    """The minutes after `start`, for `days` days, at which launchd starts the job
    (launchd.plist(5): an omitted key is a wildcard; Day and Weekday in one dict match
    when either does). A stand-in for launchd, which cannot run here."""
    fired = set()
    for offset in range(days + 1):
        day = (start + timedelta(days=offset)).replace(hour=0, minute=0)
        weekday = (day.weekday() + 1) % 7  # launchd/cron: 0 = Sunday
        for entry in entries or [{}]:
            if entry.get("Month", day.month) != day.month:
                continue
            dom, dow = entry.get("Day"), entry.get("Weekday")
            day_ok, wday_ok = dom in (None, day.day), dow is None or dow % 7 == weekday
            if not ((day_ok or wday_ok) if dom is not None and dow is not None
                    else (day_ok and wday_ok)):
                continue
            for hour in [entry["Hour"]] if "Hour" in entry else range(24):
                for minute in [entry["Minute"]] if "Minute" in entry else range(60):
                    fired.add(day.replace(hour=hour, minute=minute))
    return {t for t in fired if start < t < start + timedelta(days=days)}


@pytest.mark.parametrize("cron", CRONS + SAMPLE)
def test_launchd_calendar_fires_when_cron_does(cron: str) -> None:
    entries = launchd.calendar(cron)
    days = 40
    start = datetime(2026, 1, 1)
    expected = set()
    t = start
    while (t := next_run(cron, None, t)) < start + timedelta(days=days):
        expected.add(t)
    assert launchd_times(entries, start, days) == expected


def test_launchd_job_plist(tmp_path: Path) -> None:
    lab = job_lab(tmp_path, "macos", "launchd", {"nightly": "15 3 * * *",
                                                 "often": {"every": "90s"}})
    plists = {r.name: plistlib.loads(r.body.encode())
              for r in native.render(lab, RenderContext()) if r.kind == "plist"}
    nightly, often = plists["nightly"], plists["often"]
    for data in (nightly, often):
        assert "KeepAlive" not in data  # started at its times, left to exit
        assert data["RunAtLoad"] is False
    assert nightly["StartCalendarInterval"] == [{"Minute": 15, "Hour": 3}]
    assert "StartInterval" not in nightly
    assert often["StartInterval"] == 90 and "StartCalendarInterval" not in often


# --- systemd ---------------------------------------------------------------------------


def systemd_next(spec: str, base: datetime, n: int) -> list[datetime]:
    proc = subprocess.run(
        [systemd_analyze(), "calendar", f"--iterations={n}",
         f"--base-time={base.strftime('%Y-%m-%d %H:%M:%S')} UTC", spec],
        capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"})
    out = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith(("Next elapse:", "Iter. #")) and not line.endswith("never"):
            stamp = line.split(": ", 1)[1].rsplit(" ", 1)[0].split(" ", 1)[1]
            out.append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=UTC))
    return out


@pytest.mark.parametrize("cron", CRONS + SAMPLE)
def test_systemd_on_calendar_matches_cron(cron: str) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    specs = systemd.on_calendar(cron)
    union = sorted({t for spec in specs for t in systemd_next(spec, base, 12)})[:12]
    expected, t = [], base
    for _ in range(12):
        t = next_run(cron, None, t)
        expected.append(t)
    assert union == expected


def test_systemd_job_units_verify(tmp_path: Path) -> None:
    lab = job_lab(tmp_path / "lab", "linux", "systemd",
                  {"nightly": "0 0 1 * MON", "often": {"every": "5m"}})
    out = tmp_path / "units"
    out.mkdir()
    resources = [r for r in native.render(lab, RenderContext()) if r.target == "systemd@h"]
    assert sorted(r.path.rsplit("/", 1)[1] for r in resources) == [
        "blumeops-nightly.service", "blumeops-nightly.timer",
        "blumeops-often.service", "blumeops-often.timer"]
    for r in resources:
        (out / r.path.rsplit("/", 1)[1]).write_text(r.body)
    service = (out / "blumeops-nightly.service").read_text()
    assert "Type=oneshot" in service and "Restart=" not in service
    assert "[Install]" not in service  # the timer is what is enabled
    timer = (out / "blumeops-nightly.timer").read_text()
    assert "OnCalendar=Mon *-*-* 00:00:00\nOnCalendar=*-*-01 00:00:00\n" in timer
    assert "Unit=blumeops-nightly.service" in timer and "WantedBy=timers.target" in timer
    often = (out / "blumeops-often.timer").read_text()
    assert "OnActiveSec=300s\nOnUnitActiveSec=300s\n" in often
    verify_clean(sorted(out.iterdir()))
    check_golden("native/jobs/blumeops-nightly.timer", timer)
    check_golden("native/jobs/blumeops-nightly.service", service)


# --- Kubernetes -------------------------------------------------------------------------


def test_kubernetes_cron_job_is_strictly_valid(tmp_path: Path) -> None:
    import kubernetes_validate

    result = load_data(tmp_path, {
        "lab": "j", "hosts": {"h": {"role": "compute", "os": "linux"}},
        "clusters": {"k": {"host": "h", "context": "k"}},
        "services": {
            "report": {"kubernetes": "k", "image": "busybox:1.36", "args": ["date"],
                       "schedule": "@daily", "secrets": {"TOKEN": "vault:report/token"}},
            "sweep": {"kubernetes": "k", "image": "busybox:1.36", "schedule": "15m"}}})
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    jobs = {r.service: r for r in kubernetes.render(result.lab, RenderContext())
            if r.kind == "CronJob"}
    assert sorted(jobs) == ["report", "sweep"]
    for res in jobs.values():
        import yaml

        doc = yaml.safe_load(res.body)
        kubernetes_validate.validate(doc, "1.31.0", strict=True)
        assert doc["spec"]["concurrencyPolicy"] == "Forbid"
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "OnFailure"
    assert yaml.safe_load(jobs["report"].body)["spec"]["schedule"] == "0 0 * * *"
    assert yaml.safe_load(jobs["sweep"].body)["spec"]["schedule"] == "*/15 * * * *"
    rendered = [r.kind for r in kubernetes.render(result.lab, RenderContext())]
    assert "Deployment" not in rendered and "Service" not in rendered


@pytest.mark.parametrize("cron", CRONS + SAMPLE)
def test_kubernetes_schedule_reads_the_same_in_robfig_cron(cron: str) -> None:
    """The CronJob's schedule names the catalog's times, in the form robfig/cron (what the
    Kubernetes controller parses) reads exactly as cron does: weekdays 0-6; the day rule
    by robfig's test, which ANDs the day fields only when one of them is a bare `*`."""
    from blumeops import cronmatch

    wanted, written = parse_cron(cron), parse_cron(cron).standard()
    again = cronmatch.parse(written)
    assert (again.minutes, again.hours, again.months) == (wanted.minutes, wanted.hours,
                                                          wanted.months)
    fields = written.split()
    assert all(0 <= int(v) <= 6 for v in re.findall(r"\d+", fields[4].split("/")[0]))
    robfig_and = "*" in (fields[2], fields[4])

    def matches(days: frozenset[int], weekdays: frozenset[int], either: bool) -> set[
            tuple[int, int]]:
        return {(d, w) for d in range(1, 32) for w in range(7)
                if ((d in days) or (w in weekdays) if either else
                    (d in days) and (w in weekdays))}

    assert matches(again.days, again.weekdays, not robfig_and) == matches(
        wanted.days, wanted.weekdays, wanted.day_or), written


def test_kubernetes_cron_job_schedule_is_the_plain_form(tmp_path: Path) -> None:
    result = load_data(tmp_path, {
        "lab": "j", "hosts": {"h": {"role": "compute", "os": "linux"}},
        "clusters": {"k": {"host": "h", "context": "k"}},
        "services": {"sunday": {"kubernetes": "k", "image": "busybox:1.36",
                                "schedule": "0 3 * * 7"}}})
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    import yaml

    (job,) = [r for r in kubernetes.render(result.lab, RenderContext()) if r.kind == "CronJob"]
    assert yaml.safe_load(job.body)["spec"]["schedule"] == "0 3 * * 0"  # robfig has no 7


# --- supervisord -----------------------------------------------------------------------


def test_supervisor_job_and_scheduler_programs(tmp_path: Path) -> None:
    lab = job_lab(tmp_path / "lab", "linux", "supervisor",
                  {"nightly": "15 3 * * *", "often": {"every": "2m"}, "odd": "0 0 * * *"},
                  {"odd": ["sh", "-c", "echo 100% '; not a comment'"]})
    bodies = {r.name: r.body for r in native.render(lab, RenderContext())
              if r.kind == "program"}
    assert sorted(bodies) == ["blumeops-scheduler", "nightly", "odd", "often"]
    (tmp_path / "sup").mkdir()
    programs = supervisor_programs(bodies, tmp_path / "sup")
    for name in ("nightly", "often", "odd"):
        assert programs[name].autostart is False
        assert programs[name].autorestart is False
        assert programs[name].startsecs == 0
    scheduler = programs["blumeops-scheduler"]
    assert scheduler.autostart is True
    argv = shlex.split(scheduler.command)
    assert argv[1:3] == ["-m", "blumeops.scheduler"]
    table = json.loads(argv[argv.index("--table") + 1])
    assert [r["name"] for r in table] == ["nightly", "odd", "often"]
    assert {r["name"]: r.get("cron", r.get("every")) for r in table} == {
        "nightly": "15 3 * * *", "odd": "0 0 * * *", "often": 120}
    # The odd command reaches the job exactly (supervisord's own reading of it).
    assert shlex.split(programs["odd"].command)[-1] == "echo 100% '; not a comment'"


def test_services_without_jobs_render_no_scheduler(demo_lab: Lab) -> None:
    assert all(r.name != "blumeops-scheduler" for r in native.render(demo_lab,
                                                                     RenderContext()))
    assert supervisor.SCHEDULER == "blumeops-scheduler"


def test_docs_say_when_a_job_runs(blumeops_lab: Lab) -> None:
    from blumeops.render import docs

    pages = {r.path: r.body for r in docs.render(blumeops_lab, RenderContext())}
    page = pages["docs/services/borgmatic.md"]
    assert ("| Schedule | a job: cron `15 3 * * *` (host's local time), last success at "
            "most 26h old |") in page
    assert "The result and age of its last run" in page
    assert "| Schedule |" not in pages["docs/services/forgejo.md"]


# --- a run's time limit -----------------------------------------------------------------


def test_timeout_reaches_every_target_that_can_stop_a_run(tmp_path: Path) -> None:
    """`timeout` is the scheduler's table entry, systemd's TimeoutStartSec= (a oneshot's
    run is its start), a CronJob's activeDeadlineSeconds; launchd cannot stop a run, so
    validate refuses it there instead of silently ignoring it."""
    import kubernetes_validate
    import yaml

    sched = {"every": "5m", "timeout": "90s"}
    lab = job_lab(tmp_path / "sup", "linux", "supervisor", {"slow": sched})
    [prog] = [r for r in native.render(lab, RenderContext()) if r.name == "blumeops-scheduler"]
    argv = shlex.split(prog.body.split("command=", 1)[1].splitlines()[0])
    table = json.loads(argv[argv.index("--table") + 1].replace("%%", "%"))
    assert table == [{"name": "slow", "every": 300, "timeout": 90}]

    lab = job_lab(tmp_path / "sd", "linux", "systemd", {"slow": sched})
    units = {r.path.rsplit("/", 1)[1]: r.body for r in native.render(lab, RenderContext())
             if r.target == "systemd@h"}
    assert "TimeoutStartSec=90\n" in units["blumeops-slow.service"]
    out = tmp_path / "units"
    out.mkdir()
    for name, body in units.items():
        (out / name).write_text(body)
    verify_clean(sorted(out.iterdir()))

    result = load_data(tmp_path, {
        "lab": "j", "hosts": {"h": {"role": "compute", "os": "linux"}},
        "clusters": {"k": {"host": "h", "context": "k"}},
        "services": {"slow": {"kubernetes": "k", "image": "busybox:1.36",
                              "schedule": {"cron": "@daily", "timeout": "2h"}}}})
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    [job] = [r for r in kubernetes.render(result.lab, RenderContext()) if r.kind == "CronJob"]
    doc = yaml.safe_load(job.body)
    kubernetes_validate.validate(doc, "1.31.0", strict=True)
    assert doc["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 7200

    (tmp_path / "mac").mkdir()
    refused = load_data(tmp_path / "mac", {
        "lab": "j", "hosts": {"h": {"role": "compute", "os": "macos",
                                    "service_manager": "launchd", "local": True}},
        "services": {"slow": {"native": "h", "command": ["/usr/bin/true"],
                              "schedule": sched}}})
    assert refused.lab is None
    assert any("launchd cannot stop a run of 'slow'" in str(d) for d in refused.diagnostics)
