"""One child process fed on stdin and read on stdout, within a deadline and a size cap.

`subprocess.run(input=..., capture_output=True, timeout=...)` keeps all of stdout in
memory before anyone can look at it: a host that floods its answer would take this
machine's memory with it. Here stdout is read as it comes and the child is killed the
moment it passes `limit` bytes or the deadline; stderr keeps only its last bytes.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

STDERR_KEEP = 64 << 10  # the last bytes of stderr kept (ssh's own messages)
READ = 1 << 16


@dataclass(frozen=True)
class Exchanged:
    stdout: bytes
    stderr: bytes
    returncode: int


class TimedOut(Exception):
    """The child did not finish within its deadline; it was killed."""


class TooLarge(Exception):
    """The child wrote more than its limit on stdout; it was killed."""


def exchange(argv: Sequence[str], data: bytes, *, seconds: float, limit: int) -> Exchanged:
    """Run `argv`, write `data` to its stdin, read its stdout (at most `limit` bytes)
    and stderr until it exits, all within `seconds`. Raises FileNotFoundError,
    TimedOut or TooLarge (the child is killed and reaped first)."""
    deadline = time.monotonic() + seconds
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr
    out, err = bytearray(), bytearray()
    view, sent = memoryview(data), 0
    try:
        with selectors.DefaultSelector() as sel:
            os.set_blocking(proc.stdin.fileno(), False)
            if data:
                sel.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimedOut()
                for key, _ in sel.select(min(left, 1.0)):
                    if key.fileobj is proc.stdin:
                        try:
                            sent += os.write(proc.stdin.fileno(), view[sent:sent + READ])
                        except BrokenPipeError:
                            sent = len(data)  # the child stopped reading: its answer says why
                        if sent >= len(data):
                            sel.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    assert key.fileobj is proc.stdout or key.fileobj is proc.stderr
                    chunk = os.read(key.fd, READ)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.fileobj is proc.stdout:
                        out += chunk
                        if len(out) > limit:
                            raise TooLarge()
                    else:
                        err += chunk
                        del err[:-STDERR_KEEP]
        returncode = proc.wait(max(0.0, deadline - time.monotonic()))
    except BaseException as exc:
        proc.kill()
        proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise TimedOut() from None
        raise
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if not stream.closed:
                stream.close()
    return Exchanged(bytes(out), bytes(err), returncode)
