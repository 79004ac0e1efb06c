#!/usr/bin/env python3
"""A TEST DOUBLE of `systemctl`, not systemd: records every call, keeps unit state in files.

systemd cannot run in the test machine, so a test host (a real sshd) gets this script
first on its PATH as `systemctl`. It understands only what the blumeops systemd manager
uses (show, daemon-reload, enable/disable [--now], start/stop/restart, with --user), keeps
its state in ~/.systemctl-double/state.json and appends one JSON line per call (argv,
environment) to ~/.systemctl-double/calls.jsonl. ~/.systemctl-double/config.json may set
`system_unit_dir` (system units' directory) and `failing` (unit names whose start fails).

Like systemd: a unit file is loaded by daemon-reload (or on first use); a file changed
since then shows NeedDaemonReload=yes and starts stay on the old text; starting a unit
with no file fails with exit 5; enabling one fails with exit 1.

Jobs: starting a `.timer` arms it (active/waiting); its service runs only when started,
which a test does the way the timer would (`systemctl start blumeops-X.service`): the
double does not keep time, so a timer never fires by itself. A `Type=oneshot` service
runs to its end at once: exit 1 if it is `failing`, else 0, recorded as systemd shows
the last run (ExecMainStartTimestamp, ExecMainExitTimestamp, ExecMainStatus, Result) and
as the LastTriggerUSec of the timer named like it. `--timestamp=utc` times look like
systemd's (`Fri 2026-11-27 22:08:16 UTC`); NextElapseUSecRealtime is given for
OnUnitActiveSec= timers only (the double reads no calendars).
Standard library only, Python 3.9 (the test host's python3).
"""

import hashlib
import json
import os
import sys
import time

HOME = os.path.expanduser("~")
DIR = os.path.join(HOME, ".systemctl-double")


def load(name, default):
    try:
        with open(os.path.join(DIR, name)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def save(name, data):
    path = os.path.join(DIR, name)
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def digest(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def stamp(at):
    """A time as `systemctl show --timestamp=utc` prints it; "" when unset."""
    return time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) if at else ""


def unit_setting(path, key):
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key + "="):
                    return line.partition("=")[2].strip()
    except FileNotFoundError:
        pass
    return None


def main(argv):
    os.makedirs(DIR, exist_ok=True)
    with open(os.path.join(DIR, "calls.jsonl"), "a") as log:
        log.write(json.dumps({"argv": argv, "env": dict(os.environ), "uid": os.getuid()})
                  + "\n")
    config = load("config.json", {})
    user = "--user" in argv
    props, args, flags = [], [], set()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-p":
            props += argv[i + 1].split(",")
            i += 2
            continue
        if a.startswith("-"):
            flags.add(a)
        else:
            args.append(a)
        i += 1
    if not args:
        print("systemctl double: no verb", file=sys.stderr)
        return 1
    verb, units = args[0], args[1:]
    scope = "user" if user else "system"
    unit_dir = (os.path.join(HOME, ".config/systemd/user") if user
                else config.get("system_unit_dir", "/nonexistent-system-unit-dir"))
    state = load("state.json", {})
    units_state = state.setdefault(scope, {})
    state.setdefault("next_pid", 4000)

    def unit(name):
        return units_state.setdefault(name, {"loaded": None, "enabled": False,
                                             "active": "inactive", "sub": "dead", "pid": 0,
                                             "result": "success", "started_from": None})

    def file_of(name):
        return os.path.join(unit_dir, name)

    def start(name):
        u = unit(name)
        now = digest(file_of(name))
        if u["loaded"] is None and now is not None:
            u["loaded"] = now  # loaded on first use, as systemd does
        if u["loaded"] is None:
            print(f"Failed to start {name}: Unit {name} not found.", file=sys.stderr)
            return 5
        u["started_from"] = u["loaded"]
        if name.endswith(".timer"):
            u.update(active="active", sub="waiting", pid=0, result="success",
                     active_enter=time.time())
            return 0
        if unit_setting(file_of(name), "Type") == "oneshot":
            return run_once(name, u)
        if name in config.get("failing", []):
            u.update(active="failed", sub="failed", pid=0, result="exit-code")
            print(f"Job for {name} failed because the control process exited with error "
                  f"code.\nSee \"systemctl status {name}\" for details.", file=sys.stderr)
            return 1
        state["next_pid"] += 1
        u.update(active="active", sub="running", pid=state["next_pid"], result="success")
        return 0

    def run_once(name, u):
        """A oneshot service: runs to its end now, as the timer named like it starts it."""
        failed = name in config.get("failing", [])
        at = time.time()
        u.update(active="failed" if failed else "inactive", sub="failed" if failed else "dead",
                 pid=0, result="exit-code" if failed else "success", exec_start=at,
                 exec_exit=at, exec_status=1 if failed else 0)
        timer = name[:-len(".service")] + ".timer"
        if timer in units_state:
            units_state[timer]["last_trigger"] = at
        if failed:
            print(f"Job for {name} failed because the control process exited with error "
                  f"code.", file=sys.stderr)
            return 1
        return 0

    def next_elapse(name, u):
        every = unit_setting(file_of(name), "OnUnitActiveSec")
        if not name.endswith(".timer") or u["active"] != "active" or not every:
            return ""
        return stamp((u.get("last_trigger") or u.get("active_enter") or 0)
                     + int(every.rstrip("s")))

    def stop(name):
        unit(name).update(active="inactive", sub="dead", pid=0)

    rc = 0
    if verb == "daemon-reload":
        for name, u in units_state.items():
            u["loaded"] = digest(file_of(name))
        if os.path.isdir(unit_dir):
            for name in os.listdir(unit_dir):
                if name.endswith((".service", ".timer")):
                    unit(name)["loaded"] = digest(file_of(name))
    elif verb == "show":
        blocks = []
        for name in units:
            u = unit(name)
            now = digest(file_of(name))
            loaded = u["loaded"] or now
            values = {
                "Id": name,
                "LoadState": "loaded" if loaded else "not-found",
                "ActiveState": u["active"], "SubState": u["sub"], "MainPID": str(u["pid"]),
                "Result": u["result"],
                "UnitFileState": ("enabled" if u["enabled"] else "disabled") if now else "",
                "NeedDaemonReload": "yes" if (u["loaded"] and now != u["loaded"]) else "no",
                "ExecMainStartTimestamp": stamp(u.get("exec_start")),
                "ExecMainExitTimestamp": stamp(u.get("exec_exit")),
                "ExecMainStatus": str(u.get("exec_status", 0)),
                "LastTriggerUSec": stamp(u.get("last_trigger")) or "n/a",
                "NextElapseUSecRealtime": next_elapse(name, u),
                "ActiveEnterTimestamp": stamp(u.get("active_enter")),
            }
            want = props or list(values)
            lines = [f"{k}={values.get(k, '')}" for k in want]
            blocks.append("\n".join(lines))
        print("\n\n".join(blocks))
    elif verb in ("enable", "disable"):
        for name in units:
            if digest(file_of(name)) is None and unit(name)["loaded"] is None:
                print(f"Failed to {verb} unit: Unit file {name} does not exist.",
                      file=sys.stderr)
                rc = 1
                continue
            unit(name)["enabled"] = verb == "enable"
            if "--now" in flags:
                if verb == "enable":
                    if unit(name)["active"] != "active":
                        rc = start(name) or rc
                else:
                    stop(name)
    elif verb in ("start", "restart"):
        for name in units:
            if verb == "start" and unit(name)["active"] == "active":
                continue
            rc = start(name) or rc
    elif verb == "stop":
        for name in units:
            stop(name)
    else:
        print(f"systemctl double: unsupported verb {verb!r}", file=sys.stderr)
        rc = 1
    # Units never loaded and with no file are forgotten, as systemd garbage-collects them.
    for name in [n for n, u in units_state.items()
                 if u["loaded"] is None and not u["enabled"] and u["active"] == "inactive"
                 and digest(file_of(n)) is None]:
        del units_state[name]
    save("state.json", state)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
