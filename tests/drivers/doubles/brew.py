#!/usr/bin/env python3
"""A TEST DOUBLE of Homebrew's `brew`, not Homebrew: records every call, keeps state in a file.

Homebrew cannot run in the test machine, so a test host (a real sshd) gets this script
first on its PATH as `brew`. It understands only what the blumeops brew driver uses:
`install F`, `services start|stop|restart F` and `services info --all --json` (the
fields Homebrew 4 prints: name, service_name, running, loaded, status, pid, exit_code,
user, file). State lives in ~/.brew-double/state.json; each call appends one JSON line
(argv) to ~/.brew-double/calls.jsonl. ~/.brew-double/config.json may set `available`
(formulae `install` knows; others fail as Homebrew does) and `failing` (formulae whose
service errors when started). It runs no process.
Standard library only, Python 3.9 (the test host's python3).
"""

import json
import os
import sys

HOME = os.path.expanduser("~")
DIR = os.path.join(HOME, ".brew-double")


def load(name, default):
    try:
        with open(os.path.join(DIR, name)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def save(state):
    path = os.path.join(DIR, "state.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def no_formula(name):
    sys.stderr.write(f'Error: No available formula with the name "{name}".\n')
    return 1


def entry(name, info):
    status = info.get("status", "none")
    return {
        "name": name, "service_name": "homebrew.mxcl." + name,
        "running": status == "started", "loaded": status in ("started", "error"),
        "schedulable": False, "pid": info.get("pid"), "exit_code": info.get("exit_code"),
        "user": os.environ.get("USER", "root") if status != "none" else None,
        "status": status,
        "file": os.path.join(HOME, f"Library/LaunchAgents/homebrew.mxcl.{name}.plist"),
    }


def main(argv):
    os.makedirs(DIR, exist_ok=True)
    with open(os.path.join(DIR, "calls.jsonl"), "a") as log:
        log.write(json.dumps({"argv": argv}) + "\n")
    config = load("config.json", {})
    state = load("state.json", {"installed": {}, "next_pid": 4000})
    installed = state["installed"]
    if argv[:1] == ["install"] and len(argv) == 2:
        name = argv[1]
        if name not in config.get("available", []):
            return no_formula(name)
        installed.setdefault(name, {"status": "none"})
        save(state)
        print(f"==> Pouring {name}--1.0.arm64_sonoma.bottle.tar.gz")
        return 0
    if argv[:1] != ["services"] or len(argv) < 2:
        sys.stderr.write(f"brew double: unsupported command {argv!r}\n")
        return 64
    verb = argv[1]
    if verb == "info" and argv[2:] == ["--all", "--json"]:
        print(json.dumps([entry(n, i) for n, i in sorted(installed.items())]))
        return 0
    if verb in ("start", "stop", "restart") and len(argv) == 3:
        name = argv[2]
        if name not in installed:
            return no_formula(name)
        info = installed[name]
        if verb == "stop":
            info.update(status="none", pid=None, exit_code=None)
            print(f"==> Successfully stopped `{name}` (label: homebrew.mxcl.{name})")
        elif name in config.get("failing", []):
            info.update(status="error", pid=None, exit_code=1)
            print(f"==> Successfully started `{name}` (label: homebrew.mxcl.{name})")
        else:
            state["next_pid"] += 1
            info.update(status="started", pid=state["next_pid"], exit_code=None)
            done = {"start": "started", "restart": "restarted"}[verb]
            print(f"==> Successfully {done} `{name}` (label: homebrew.mxcl.{name})")
        save(state)
        return 0
    sys.stderr.write(f"brew double: unsupported command {argv!r}\n")
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
