#!/usr/bin/env python3
"""A TEST DOUBLE of `launchctl`, not launchd: records every call, keeps job state in files.

launchd exists only on macOS, so a test host (a real sshd on Linux) gets this script first
on its PATH as `launchctl`. It understands what the blumeops launchd manager uses
(print, bootstrap, bootout, kickstart [-k]), keeps its state in
~/.launchctl-double/state.json and appends one JSON line per call (argv, environment) to
~/.launchctl-double/calls.jsonl. ~/.launchctl-double/config.json may set `failing`
(labels whose program exits 1 at once) and `bootout_lag` (the first bootstrap after a
bootout fails with 5, as launchd does while it still tears the old job down).

A calendar or interval job (StartCalendarInterval / StartInterval in its plist) runs to
its end when started: `runs` counts it and `last exit code` is 1 for a `failing` label,
else 0. The double keeps no time: a test starts such a job the way launchd would at its
time (`kickstart`), and apply must never do that.

Like launchd: bootstrap reads the plist then and only then (a changed file is ignored
until the next bootstrap), refuses an invalid plist or an already loaded label (exit 5),
and `print`/`bootout`/`kickstart` of an unknown job exit 113. Standard library only,
Python 3.9 (the test host's python3).
"""

import json
import os
import plistlib
import sys

DIR = os.path.join(os.path.expanduser("~"), ".launchctl-double")


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


def split_target(target):
    domain, _, label = target.rpartition("/")
    return domain, label


def main(argv):
    os.makedirs(DIR, exist_ok=True)
    with open(os.path.join(DIR, "calls.jsonl"), "a") as log:
        log.write(json.dumps({"argv": argv, "env": dict(os.environ), "uid": os.getuid()})
                  + "\n")
    config = load("config.json", {})
    state = load("state.json", {"jobs": {}, "next_pid": 7000, "lagging": []})
    jobs = state["jobs"]

    def spawn(key):
        job = jobs[key]
        job["runs"] += 1
        if job["label"] in config.get("failing", []):
            job.update(running=False, pid=None, last_exit=1)
        elif job.get("scheduled"):  # a calendar job runs to its end at once
            job.update(running=False, pid=None, last_exit=0)
        else:
            state["next_pid"] += 1
            job.update(running=True, pid=state["next_pid"])

    def missing(label, domain, verb):
        words = {"print": f'Bad request.\nCould not find service "{label}" in domain for '
                          f"{domain}", "bootout": "Boot-out failed: 113: Could not find "
                          "specified service", "kickstart": "Could not find service"}
        print(words[verb], file=sys.stderr)
        return 113

    rc = 0
    verb, args = (argv[0], argv[1:]) if argv else ("", [])
    if verb == "print" and len(args) == 1:
        domain, label = split_target(args[0])
        job = jobs.get(args[0])
        if job is None:
            rc = missing(label, domain, "print")
        else:
            lines = [f"{args[0]} = {{", "\tactive count = 1" if job["running"] else
                     "\tactive count = 0", f"\tpath = {job['path']}",
                     "\ttype = LaunchAgent" if domain != "system" else "\ttype = LaunchDaemon",
                     "\tstate = running" if job["running"] else "\tstate = not running", "",
                     f"\tprogram = {job['argv'][0]}", "\targuments = {"]
            # Arguments are nested: a value that looks like "state = running" must not count.
            lines += [f"\t\t{a}" for a in job["argv"]] + ["\t}", ""]
            lines += ["\tenvironment = {"] + [f"\t\t{k} => {v}" for k, v in
                                              sorted(job["env"].items())] + ["\t}", ""]
            lines += [f"\tdomain = {domain}", f"\truns = {job['runs']}"]
            if job["running"]:
                lines.append(f"\tpid = {job['pid']}")
            last = job["last_exit"]
            lines.append(f"\tlast exit code = {'(never exited)' if last is None else last}")
            lines.append("}")
            print("\n".join(lines))
    elif verb == "bootstrap" and len(args) >= 2:
        domain = args[0]
        for path in args[1:]:
            try:
                with open(path, "rb") as handle:
                    data = plistlib.load(handle)
                label = data["Label"]
                argv_ = data["ProgramArguments"]
                assert isinstance(label, str) and all(isinstance(a, str) for a in argv_)
            except Exception:
                print("Bootstrap failed: 5: Input/output error", file=sys.stderr)
                rc = 5
                continue
            key = f"{domain}/{label}"
            if key in jobs or key in state["lagging"]:
                if key in state["lagging"]:
                    state["lagging"].remove(key)
                print("Bootstrap failed: 5: Input/output error", file=sys.stderr)
                rc = 5
                continue
            jobs[key] = {"label": label, "path": path, "argv": argv_, "runs": 0, "pid": None,
                         "running": False, "last_exit": None,
                         "env": data.get("EnvironmentVariables", {}),
                         "scheduled": "StartCalendarInterval" in data
                         or "StartInterval" in data}
            if data.get("RunAtLoad"):
                spawn(key)
    elif verb == "bootout" and len(args) == 1:
        domain, label = split_target(args[0])
        if args[0] not in jobs:
            rc = missing(label, domain, "bootout")
        else:
            del jobs[args[0]]
            if config.get("bootout_lag"):
                state["lagging"].append(args[0])
    elif verb == "kickstart" and args:
        target = args[-1]
        if target not in jobs:
            rc = missing(*reversed(split_target(target)), "kickstart")
        elif jobs[target]["running"] and "-k" not in args:
            pass  # already running: kickstart without -k leaves it alone
        else:
            spawn(target)
    else:
        print(f"launchctl double: unsupported call {argv!r}", file=sys.stderr)
        rc = 64
    save("state.json", state)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
