"""The lab lock: a second writer waits for the first, and a dead holder frees it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from blumeops.state.lock import lab_lock

HOLD = """
import sys, time
from pathlib import Path
from blumeops.state.lock import lab_lock
with lab_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_second_writer_waits(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "0.8"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    messages: list[str] = []
    start = time.monotonic()
    with lab_lock(tmp_path, messages.append):
        waited = time.monotonic() - start
    holder.wait()
    assert waited > 0.3
    assert messages and f"pid {holder.pid}" in messages[0]


def test_killed_holder_releases(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "60"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with lab_lock(tmp_path):
        pass
