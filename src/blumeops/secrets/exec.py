"""``python -m blumeops.secrets.exec ENVFILE -- CMD ARGS...``: run CMD with secrets.

Reads the JSON env file, adds it to the environment and ``exec``s the command, so the
process supervisord started *is* the service (signals and exit codes pass straight
through) and secret values never appear in argv or in a program file.

Stdlib only and nothing heavy imported: this runs at every service start.
Exit codes: 2 usage, 1 env file unreadable, 127 command not found, 126 not executable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from blumeops.secrets.envfile import EnvFileError, read_env_file

USAGE = "usage: python -m blumeops.secrets.exec ENVFILE -- CMD [ARGS...]"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    envfile, command = Path(argv[0]), argv[2:]
    try:
        values = read_env_file(envfile)
    except EnvFileError as exc:
        print(f"blumeops.secrets.exec: {exc}", file=sys.stderr)
        return 1
    os.environ.update(values)
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        print(f"blumeops.secrets.exec: {command[0]}: command not found", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"blumeops.secrets.exec: {command[0]}: permission denied", file=sys.stderr)
        return 126
    except OSError as exc:
        print(f"blumeops.secrets.exec: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 126
    return 0  # not reached: execvp replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
