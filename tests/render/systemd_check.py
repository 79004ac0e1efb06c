"""`systemd-analyze verify` on rendered units: exit 0 and not one warning about them.

systemd only warns about an unknown key (`Restrat=on-failure`) and exits 0, so checking
the exit code alone, or only for "Failed", lets typos through. Lines about unit files
outside the directory under test are dropped: verify also loads the host's own units
(network-online.target and what it pulls in), and their warnings are not ours.
A missing systemd-analyze fails the test (tests/requires.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from requires import require

_OTHER_FILE = re.compile(r"^(/\S+?):\d+: ")


def systemd_analyze() -> str:
    return require(shutil.which("systemd-analyze"), "systemd-analyze (Debian systemd)")


def verify_clean(units: list[Path], elsewhere: tuple[str, ...] = ()) -> None:
    """Every unit passes `systemd-analyze verify` with no output about it at all.

    `elsewhere` names programs the unit's host has but this machine's systemd search path
    does not (the controller's `blumeops`): only "Command NAME is not executable" about
    exactly those is let through.
    """
    assert units
    folder = str(units[0].parent)
    proc = subprocess.run([systemd_analyze(), "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "info"})
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    absent = tuple(f"Command {name} is not executable" for name in elsewhere)
    ours = [line for line in lines
            if not ((m := _OTHER_FILE.match(line)) and not m.group(1).startswith(folder))
            and not any(a in line for a in absent)]
    assert not ours, proc.stdout + proc.stderr
    assert proc.returncode == 0 or absent, proc.stdout + proc.stderr
