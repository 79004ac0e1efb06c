"""Small process helpers the runtime drivers share: pidfiles, liveness, waiting, cleanup.

Kept to the standard library (no psutil) so importing a driver stays cheap: a no-op apply
has a budget of a few hundred milliseconds, imports included.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

POLL = 0.02  # seconds between polls: fast enough to not show up in timings


class DriverError(Exception):
    """A runtime driver could not do its job; the message says why, for a person."""


def read_pidfile(path: Path) -> int | None:
    """The pid in `path`, or None when it is missing or garbled."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie counts as gone (and is reaped if it is our child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    # The state letter follows the ")" that closes the command name.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def cmdline(pid: int) -> list[str] | None:
    """The argv of `pid` (Linux /proc), or None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = POLL) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_gone(pid: int, timeout: float) -> bool:
    return wait_until(lambda: not pid_alive(pid), timeout)


def terminate(pid: int, timeout: float = 5.0, group: bool = False) -> None:
    """SIGTERM `pid` (or its process group), then SIGKILL if it outlives `timeout`."""
    send: Callable[[int, int], None] = os.killpg if group else os.kill
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            send(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if wait_gone(pid, wait):
            return


def processes_with_env(name: str, value: str) -> Iterator[int]:
    """Pids whose environment holds NAME=value (Linux /proc; nothing elsewhere).

    This is how orphans of a crashed supervisord are found: every program it spawned
    inherits SUPERVISOR_SERVER_URL, which names our socket and no one else's.
    """
    needle = f"{name}={value}".encode()
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            yield int(entry)


def tail_file(path: Path, lines: int = 20, block: int = 8192) -> str:
    """The last `lines` lines of a text file, read from the end (logs can be large)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            data = b""
            while size > 0 and data.count(b"\n") <= lines:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


# -- control sockets ---------------------------------------------------------------------


def private_socket_dir(path: Path) -> None:
    """Make the directory of socket `path` exist as ours, 0700, and not a symlink.

    Inside the state dir this is a subdirectory of a 0700 directory; under /tmp anyone
    could have made it first, so it must be a real directory owned by us.
    """
    parent = path.parent
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(parent)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise DriverError(f"{parent} is not a directory of this user: refusing to put a "
                          f"control socket there (remove it, or use a shorter state dir)")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(parent, 0o700)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (stdlib: httpx costs ~0.2 s to import, most of a no-op
    apply's budget). `host` is only what the Host header says."""

    def __init__(self, path: str, timeout: float, host: str = "localhost") -> None:
        super().__init__(host, timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
