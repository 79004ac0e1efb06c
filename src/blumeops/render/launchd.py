"""launchd property lists for macOS hosts (rendered for review; not applied yet).

launchd has no variable expansion and no environment files, so paths are fixed here:
blumeops's state on a macOS host lives under STATE_DIR (logs, secrets, the lab checkout).
Secrets reach the service through `SECRETS_WRAPPER`, a stdlib-only twin of the
`blumeops.secrets.exec` wrapper supervisord uses, so values never appear in the plist.
"""

from __future__ import annotations

import plistlib
import posixpath

from blumeops.catalog.model import Service
from blumeops.catalog.resolve import launchd_label
from blumeops.core import schedule as cs
from blumeops.core.resources import Resource
from blumeops.render.unitfields import secret_refs

STATE_DIR = "/usr/local/var/blumeops"
LAB_DIR = f"{STATE_DIR}/lab"  # relative commands and workdirs resolve here
LABEL_PREFIX = "me.blumeops."
# A stdlib-only copy of `blumeops.secrets.exec` the launchd manager writes to the host
# (drivers/secrets_wrapper.py): a Mac has python3, not the blumeops package.
SECRETS_WRAPPER = f"{STATE_DIR}/bin/blumeops-secrets-exec"


def label(name: str, svc: Service | None = None) -> str:
    """The job's launchd Label: the one the service declares (`names.launchd`, kept from
    an existing plist), else me.blumeops.NAME."""
    return launchd_label(name, svc) if svc is not None else f"{LABEL_PREFIX}{name}"


def plist_data(name: str, svc: Service) -> dict[str, object]:
    argv = list(svc.command or [])
    if svc.secrets:
        argv = ["/usr/bin/env", "python3", SECRETS_WRAPPER,
                f"{STATE_DIR}/secrets/{name}.env", "--", *argv]
    log = f"{STATE_DIR}/logs/{name}.log"
    data: dict[str, object] = {
        "Label": label(name, svc),
        "ProgramArguments": argv,
        "WorkingDirectory": posixpath.normpath(posixpath.join(LAB_DIR, svc.workdir or ".")),
        "KeepAlive": {"SuccessfulExit": False},  # restart on failure, like systemd
        "RunAtLoad": True,
        "StandardOutPath": log,
        "StandardErrorPath": log,
    }
    if svc.schedule is not None:
        # A job: launchd starts it at its times and lets it exit (no KeepAlive).
        del data["KeepAlive"]
        data["RunAtLoad"] = False
        every = svc.schedule.every_seconds
        if every is not None:
            data["StartInterval"] = every
        else:
            data["StartCalendarInterval"] = calendar(svc.schedule.cron or "")
    if svc.environment:
        data["EnvironmentVariables"] = dict(sorted(svc.environment.items()))
    return data


# More entries than this make a plist nobody can read: validate says to simplify.
MAX_CALENDAR = 500


def calendar(expression: str) -> list[dict[str, int]]:
    """A cron expression as launchd's StartCalendarInterval: one dict per combination of
    the restricted fields (launchd has no ranges or steps; an omitted key is a wildcard).

    When day-of-month and day-of-week are both restricted, a dict holds both, and launchd
    starts the job when either matches: cron's rule.
    """
    from itertools import product


    cron = cs.parse_cron(expression)
    days, weekdays = cron.days, cron.weekdays
    if cron.day_or and (days == cs.ALL_DAYS or weekdays == cs.ALL_WEEKDAYS):
        days, weekdays = cs.ALL_DAYS, cs.ALL_WEEKDAYS  # either field, one all: every day
    fields = [("Minute", cron.minutes, cs.ALL_MINUTES), ("Hour", cron.hours, cs.ALL_HOURS),
              ("Day", days, cs.ALL_DAYS), ("Month", cron.months, cs.ALL_MONTHS),
              ("Weekday", weekdays, cs.ALL_WEEKDAYS)]
    keys = [(key, sorted(values)) for key, values, full in fields if values != full]
    return [dict(zip([k for k, _ in keys], combo, strict=True))
            for combo in product(*(values for _, values in keys))]


def plist(name: str, svc: Service, host: str) -> Resource:
    body = plistlib.dumps(plist_data(name, svc), sort_keys=True).decode()
    return Resource(f"launchd@{host}", "plist", name, body,
                    f"native/{host}/launchd/{label(name, svc)}.plist", service=name,
                    depends_on=tuple(svc.depends_on), secret_refs=secret_refs(svc))
