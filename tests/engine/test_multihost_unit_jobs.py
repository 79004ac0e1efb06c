"""Scheduled jobs on a systemd host and a launchd host over real sshd, whose `systemctl` /
`launchctl` are the TEST DOUBLES of tests/drivers/doubles/ (see test_multihost_managers.py).

The doubles keep unit state but no time: a timer or calendar job never fires by itself.
Where systemd's timer or launchd would start a job at its time, the test starts it the
same way over SSH (`systemctl --user start blumeops-X.service`, `launchctl kickstart`),
and asserts that `apply` itself never does: it enables the TIMER (not the service) and
bootstraps the plist (no kickstart), restarts nothing, and judges health from what the
manager shows of the last run.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_multihost_managers import (  # noqa: F401
    UnitLab,
    changes,
    needs_sshd,
    only,
    units_fixture,
)

from polling import wait_for

pytestmark = [needs_sshd, pytest.mark.slow]

LAB = """\
lab: units
hosts:
  linbox: {{role: compute, os: linux, service_manager: systemd, address: 127.0.1.51,
           ssh: linbox, ssh_identity: "{key}"}}
  mac: {{role: compute, os: macos, service_manager: launchd, address: 127.0.1.52, ssh: mac,
        ssh_identity: "{key}", accept_new_host_key: true}}
services:
  api: {{native: linbox, command: [/bin/sleep, "100"]}}
"""
JOBS = {
    "tick": 'native: linbox, command: [/bin/true], schedule: {{every: "{every}"}}',
    "boom": 'native: linbox, command: [/bin/false], schedule: "*/5 * * * *"',
    "mtick": 'native: mac, command: [/usr/bin/true], schedule: {{every: "{every}"}}',
    "mboom": 'native: mac, command: [/usr/bin/false], schedule: "15 3 * * *"',
}


def write(units: UnitLab, every: str = "2s", drop: tuple[str, ...] = ()) -> None:
    text = LAB.format(key=units.ssh.client_key) + "".join(
        f"  {name}: {{{body.format(every=every)}}}\n" for name, body in JOBS.items()
        if name not in drop)
    (units.lab / "lab.yaml").write_text(text)


def fail(units: UnitLab) -> None:
    (units.doubles["linbox"] / "config.json").write_text(json.dumps({
        "system_unit_dir": "/nonexistent", "failing": ["blumeops-boom.service"]}))
    (units.doubles["mac"] / "config.json").write_text(
        json.dumps({"failing": ["me.blumeops.mboom"]}))


def fire(units: UnitLab, host: str, argv: list[str]) -> None:
    """Start a job the way its timer / launchd would at its time (the doubles keep no time)."""
    transport = units.ssh.transport(host, accept_new=True)
    try:
        transport.run(argv)
    finally:
        transport.close()


def status(units: UnitLab) -> dict[str, dict[str, Any]]:
    got = json.loads(units.cli("status", "--output", "json").stdout)["services"]
    return {s["service"]: s for s in got}


def test_systemd_jobs_enable_timers_and_are_judged_by_their_last_run(units: UnitLab) -> None:
    fail(units)
    # Hourly at first: "no run yet" stays Healthy however slowly the steps below go.
    write(units, every="1h", drop=("mtick", "mboom"))
    unit_dir = units.hosts["linbox"].root / ".config/systemd/user"
    first = units.cli("apply", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "rendered, not applied" not in first.stdout + first.stderr
    assert sorted(p.name for p in unit_dir.iterdir()) == [
        "blumeops-api.service", "blumeops-boom.service", "blumeops-boom.timer",
        "blumeops-tick.service", "blumeops-tick.timer"]
    # One reload; the daemon and the two TIMERS enabled with --now; no job service started.
    assert only(units.calls("linbox")) == [
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", "blumeops-api.service", "blumeops-boom.timer",
         "blumeops-tick.timer"]]
    got = status(units)
    assert got["tick"]["health"] == "Healthy", got["tick"]
    assert got["tick"]["detail"].startswith("no run yet; first at "), got["tick"]
    assert got["tick"]["state"] == "waiting"
    assert got["tick"]["job"]["last_run"] is None and got["tick"]["job"]["next_run"]

    # A no-op: one round trip, nothing but the observing `show`s.
    assert changes(units) == []
    units.forget()
    before = units.sessions()["linbox"]
    again = units.cli("apply", "--yes")
    assert "No changes" in again.stdout, again.stdout + again.stderr
    assert units.sessions()["linbox"] - before == 1
    assert only(units.calls("linbox")) == []

    # The timers fire (the test starts the services as the timers would).
    fire(units, "linbox", ["systemctl", "--user", "start", "blumeops-tick.service"])
    fire(units, "linbox", ["systemctl", "--user", "start", "blumeops-boom.service"])
    got = status(units)
    assert got["tick"]["health"] == "Healthy", got["tick"]
    assert got["tick"]["detail"].startswith("last run ") and "exit 0" in got["tick"]["detail"]
    assert got["tick"]["job"]["exit_code"] == 0 and got["tick"]["job"]["last_run"]
    assert got["boom"]["health"] == "Degraded", got["boom"]
    assert "exit 1" in got["boom"]["detail"], got["boom"]
    assert got["boom"]["detail"].endswith("log: journalctl --user-unit blumeops-boom.service")
    assert got["boom"]["job"]["exit_code"] == 1
    assert got["boom"]["job"]["next_run"], got["boom"]  # the double says none: computed
    # A failed run is not healed by starting the job: apply changes nothing.
    units.forget()
    assert changes(units) == []
    assert only(units.calls("linbox")) == []

    # Every 2 s and no run since: overdue after its grace, Degraded.
    write(units, every="2s", drop=("mtick", "mboom"))
    sped = units.cli("apply", "--yes")
    assert "~ update systemd@linbox/timer/tick" in sped.stdout, sped.stdout + sped.stderr
    got = wait_for(lambda: (g := status(units))["tick"]["health"] == "Degraded" and g, 60,
                   lambda: f"tick overdue: {status(units)['tick']}", every=1.0)
    assert got["tick"]["detail"].startswith("overdue: due at "), got["tick"]

    # A changed schedule: the timer is rewritten and restarted (re-armed), not the job.
    write(units, every="3s", drop=("mtick", "mboom"))
    units.forget()
    changed = units.cli("apply", "--yes")
    assert "~ update systemd@linbox/timer/tick" in changed.stdout, changed.stdout
    assert only(units.calls("linbox")) == [["--user", "daemon-reload"],
                                           ["--user", "restart", "blumeops-tick.timer"]]
    assert "OnUnitActiveSec=3s" in (unit_dir / "blumeops-tick.timer").read_text()

    # A timer stopped by hand is enabled again.
    fire(units, "linbox", ["systemctl", "--user", "disable", "--now", "blumeops-boom.timer"])
    units.forget()
    healed = units.cli("apply", "--yes")
    assert "systemd@linbox/timer/boom" in healed.stdout, healed.stdout
    assert only(units.calls("linbox")) == [["--user", "enable", "--now", "blumeops-boom.timer"]]

    # A removed job: its timer and service disabled and stopped, both files gone.
    write(units, every="3s", drop=("tick", "mtick", "mboom"))
    units.forget()
    removed = units.cli("apply", "--yes")
    assert "- delete systemd@linbox/unit/tick" in removed.stdout, removed.stdout
    assert only(units.calls("linbox")) == [
        ["--user", "disable", "--now", "blumeops-tick.timer", "blumeops-tick.service"],
        ["--user", "daemon-reload"]]
    assert not (unit_dir / "blumeops-tick.timer").exists()
    assert not (unit_dir / "blumeops-tick.service").exists()
    assert changes(units) == []


def test_launchd_jobs_are_bootstrapped_never_kickstarted(units: UnitLab) -> None:
    fail(units)
    write(units, drop=("tick", "boom"))
    agents = units.hosts["mac"].root / "Library/LaunchAgents"
    first = units.cli("apply", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    assert only(units.calls("mac")) == [
        ["bootstrap", "gui/0", str(agents / "me.blumeops.mboom.plist")],
        ["bootstrap", "gui/0", str(agents / "me.blumeops.mtick.plist")]]
    got = status(units)
    assert got["mtick"]["health"] == "Healthy" and got["mtick"]["detail"] == "no run yet on mac"
    assert got["mboom"]["detail"].startswith("no run yet; first at "), got["mboom"]
    assert got["mboom"]["job"]["next_run"].endswith(got["mboom"]["job"]["next_run"][-6:])

    # launchd starts them at their times (the test, as launchd would).
    fire(units, "mac", ["launchctl", "kickstart", "gui/0/me.blumeops.mtick"])
    fire(units, "mac", ["launchctl", "kickstart", "gui/0/me.blumeops.mboom"])
    got = status(units)
    assert got["mtick"]["health"] == "Healthy", got["mtick"]
    assert got["mtick"]["detail"].startswith("last run: exit 0 (1 runs) on mac; launchd "
                                             "records no run times"), got["mtick"]
    assert got["mboom"]["health"] == "Degraded", got["mboom"]
    assert got["mboom"]["detail"].startswith("last run: exit 1 (1 runs) on mac"), got["mboom"]
    assert got["mboom"]["job"]["exit_code"] == 1
    # Not running between runs is converged: no kickstart, nothing at all.
    units.forget()
    assert changes(units) == []
    again = units.cli("apply", "--yes")
    assert "No changes" in again.stdout, again.stdout + again.stderr
    assert only(units.calls("mac")) == []

    # A changed schedule: bootout + bootstrap (launchd rereads a plist only then).
    write(units, every="3s", drop=("tick", "boom"))
    units.forget()
    changed = units.cli("apply", "--yes")
    assert "~ update launchd@mac/plist/mtick" in changed.stdout, changed.stdout
    plist = agents / "me.blumeops.mtick.plist"
    assert only(units.calls("mac")) == [["bootout", "gui/0/me.blumeops.mtick"],
                                        ["bootstrap", "gui/0", str(plist)]]
    assert "<integer>3</integer>" in plist.read_text()

    # Removed: booted out, plist gone.
    write(units, drop=("tick", "boom", "mtick"))
    units.forget()
    units.cli("apply", "--yes")
    assert only(units.calls("mac")) == [["bootout", "gui/0/me.blumeops.mtick"]]
    assert not plist.exists()
