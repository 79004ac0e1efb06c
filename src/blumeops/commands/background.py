"""`up --detach` keeps the lab so in the background: the same `up` loop, its own session.

A lab in a git repository gets the loop that follows its branch and serves the API and the
dashboard (as `up` in the foreground does); its pid is kept in STATE/up.pid so `down` can
stop it before stopping the lab. A lab outside git is applied once and left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from blumeops.drivers.process import pid_alive

PIDFILE = "up.pid"


def running_loop(state_dir: Path) -> int | None:
    """The pid of this lab's background loop, if one is alive."""
    try:
        pid = int((state_dir / PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def start_loop(lab: Path, state_dir: Path, interval: float, listen: str,
               timeout: float = 30.0) -> tuple[int, bool]:
    """Start the loop unless one runs; wait until its API answers.

    Returns its pid and whether the API answered (no: see STATE/logs/up.log)."""
    pid = running_loop(state_dir)
    if pid is not None:
        return pid, True
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "up.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "blumeops", "up", str(lab), "--state-dir", str(state_dir),
             "--interval", f"{interval:g}", "--listen", listen, "--yes"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    (state_dir / PIDFILE).write_text(f"{proc.pid}\n")
    return proc.pid, _wait_for_api(listen, proc, timeout)


def _wait_for_api(listen: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    import http.client

    host, _, port = listen.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        conn = http.client.HTTPConnection(host.strip("[]") or "127.0.0.1", int(port), timeout=2)
        try:
            conn.request("GET", "/api/status")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    return False


def stop_loop(state_dir: Path, timeout: float = 60.0) -> bool:
    """SIGTERM the loop (it stops the lab as Ctrl-C does) and wait; True if one ran."""
    pid = running_loop(state_dir)
    (state_dir / PIDFILE).unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True
