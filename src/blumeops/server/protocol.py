"""uvicorn's HTTP/1.1 protocol (h11) with the two deadlines it lacks.

uvicorn closes a kept-alive connection that stays silent, but a client that sends a
request head one byte at a time (slowloris), or that never reads its answer, holds its
connection (and counts against the connection limit) for ever. Here:

- a connection must deliver a complete request line and headers within
  `header_timeout` seconds of opening, or of its previous answer; trickling bytes does
  not extend the deadline;
- an answer the client leaves unread for `write_timeout` seconds aborts the connection;
- past `max_connections` open connections, a new one makes room: connections still
  waiting for their request (head or body not in, or idle kept-alive) are closed, oldest
  first, once they have waited `stale_after` seconds; at twice the bound, the oldest
  waiting ones go regardless. So one local user holding connections open cannot starve
  the operator, and a burst of real requests is admitted, not refused (uvicorn answers 503
  only when twice the bound is busy at once).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

WAITING = (h11.IDLE, h11.SEND_BODY)  # the peer owes us (the rest of) a request


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 5.0
    write_timeout: float = 10.0
    max_connections: int = 1000
    stale_after: float = 0.5
    # One server's connections waiting for their request, oldest first (with_limits gives
    # each server its own).
    waiting: OrderedDict[GuardedH11Protocol, float] = OrderedDict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_limits(cls, header_timeout: float, write_timeout: float,
                    max_connections: int, stale_after: float) -> type[GuardedH11Protocol]:
        return type("GuardedH11Protocol", (cls,), {
            "header_timeout": header_timeout, "write_timeout": write_timeout,
            "max_connections": max_connections, "stale_after": stale_after,
            "waiting": OrderedDict()})

    # -- the request head ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._await_head()
        self.waiting[self] = self.loop.time()
        self._make_room()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in (or the peer is gone)
            self._cancel(self._head_timer)
            self._head_timer = None
        if self.conn.their_state not in WAITING:  # the whole request is in: busy
            self.waiting.pop(self, None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:  # waiting for the next request
            self._await_head()
            if not self.transport.is_closing():
                self.waiting.pop(self, None)
                self.waiting[self] = self.loop.time()

    # -- the connection bound --------------------------------------------------------------

    def _make_room(self) -> None:
        """Close waiting connections, oldest first, while over the bound: those that
        waited `stale_after`, and at twice the bound any (this one last)."""
        now = self.loop.time()
        while len(self.connections) > self.max_connections and self.waiting:
            oldest, since = next(iter(self.waiting.items()))
            if oldest is self or (now - since < self.stale_after
                                  and len(self.connections) < 2 * self.max_connections):
                return
            oldest.evict()

    def evict(self) -> None:
        self.waiting.pop(self, None)
        self.connections.discard(self)  # counts as gone now, not a loop turn later
        self.transport.close()

    def _await_head(self) -> None:
        self._cancel(self._head_timer)
        self._head_timer = None
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    # -- the answer ------------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel(self._write_timer)
        self._write_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        self._cancel(self._head_timer)
        self._cancel(self._write_timer)
        self._head_timer = self._write_timer = None
        super().connection_lost(exc)

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
