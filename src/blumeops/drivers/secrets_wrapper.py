"""`python3 blumeops-secrets-exec ENVFILE -- CMD ARGS...` on a host without blumeops.

The launchd manager writes this file beside the lab's state on a macOS host: launchd has
no environment files, and the host has python3 but not the blumeops package that
`blumeops.secrets.exec` lives in. Same contract as that module: read the JSON env file
(0600, written over SSH stdin), add it to the environment, exec the command, so the
service is the process launchd started and no value is ever in argv or the plist.

Standard library only, Python 3.9 (what a Mac ships). Exit codes: 2 usage, 1 env file
unreadable, 127 command not found, 126 not executable.
"""

from __future__ import annotations

import json
import os
import sys


def read_env(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError("must be a JSON object of strings")
    return data


def main(argv: list[str]) -> int:
    name = "blumeops-secrets-exec"
    if len(argv) < 3 or argv[1] != "--":
        print(f"usage: {name} ENVFILE -- CMD [ARGS...]", file=sys.stderr)
        return 2
    try:
        values = read_env(argv[0])
    except (OSError, ValueError) as exc:  # never print the file's content
        why = exc.strerror if isinstance(exc, OSError) else "not a JSON object of strings"
        print(f"{name}: {argv[0]}: cannot read secrets env file: {why}", file=sys.stderr)
        return 1
    os.environ.update(values)
    command = argv[2:]
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        print(f"{name}: {command[0]}: command not found", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"{name}: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 126
    return 0  # not reached: execvp replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
