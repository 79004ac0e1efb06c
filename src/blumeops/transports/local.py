"""This machine as a transport: the agent's code, run in-process or by a local python.

In-process (the default) costs no interpreter start: a local observe is a function
call. With `python=` the agent runs as a child process over the same wire as SSH, which
is how the tests exercise the wire (and an older interpreter) without sshd.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from blumeops.transports import agent, answers, wire
from blumeops.transports.base import Transport
from blumeops.transports.exceptions import RemoteError
from blumeops.transports.exchange import TimedOut, TooLarge, exchange
from blumeops.transports.types import JSON


class LocalTransport(Transport):
    def __init__(self, host: str = "localhost", *, python: str | None = None,
                 timeout: float | None = None) -> None:
        self.host = host
        self.python = python
        self.timeout = timeout  # None: each request's budget (answers.budget) + 5 s

    def send(self, request: JSON, blobs: Sequence[bytes], seconds: float) -> JSON:
        if self.python is None:
            stream = io.BytesIO(b"".join(blobs))
            return wire.unwrap(self.host, agent.answer(wire.request_line(request), stream))
        wait = self.timeout or seconds + 5
        try:
            proc = exchange([self.python, *wire.PYTHON_FLAGS, "-c", wire.BOOTSTRAP],
                            wire.encode(request, blobs), seconds=wait,
                            limit=answers.MAX_ANSWER)
        except FileNotFoundError:
            raise wire.python_missing(self.host) from None
        except TimedOut:
            raise RemoteError(self.host, "timeout", f"host {self.host}: the agent did not "
                              f"answer within {wait:g} s") from None
        except TooLarge:
            raise answers.BadAnswer(self.host, "more than "
                                    f"{answers.MAX_ANSWER >> 20} MB; not read further") from None
        return wire.decode(self.host, proc.stdout, proc.stderr)

    def close(self) -> None:
        """Nothing to let go of."""
