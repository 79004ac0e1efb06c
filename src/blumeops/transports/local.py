"""This machine as a transport: the agent's code, run in-process or by a local python.

In-process (the default) costs no interpreter start: a local observe is a function
call. With `python=` the agent runs as a child process over the same wire as SSH, which
is how the tests exercise the wire (and an older interpreter) without sshd.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Sequence

from blumeops.transports import agent, wire
from blumeops.transports.base import Transport
from blumeops.transports.exceptions import RemoteError
from blumeops.transports.types import JSON


class LocalTransport(Transport):
    def __init__(self, host: str = "localhost", *, python: str | None = None,
                 timeout: float = 300.0) -> None:
        self.host = host
        self.python = python
        self.timeout = timeout

    def call(self, request: JSON, blobs: Sequence[bytes] = ()) -> JSON:
        if self.python is None:
            stream = io.BytesIO(b"".join(blobs))
            return wire.unwrap(self.host, agent.answer(wire.request_line(request), stream))
        try:
            proc = subprocess.run([self.python, *wire.PYTHON_FLAGS, "-c", wire.BOOTSTRAP],
                                  input=wire.encode(request, blobs), capture_output=True,
                                  timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise wire.python_missing(self.host) from None
        except subprocess.TimeoutExpired:
            raise RemoteError(self.host, "timeout", f"host {self.host}: the agent did not "
                              f"answer within {self.timeout:g} s") from None
        return wire.decode(self.host, proc.stdout, proc.stderr)

    def close(self) -> None:
        """Nothing to let go of."""
