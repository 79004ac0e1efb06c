"""Server-sent events: the controller's steps, fanned out to every open page.

The controller calls `publish` on its own thread; each page's stream is an asyncio queue
on the server's loop, fed with `call_soon_threadsafe`. A queue that is full (a page that
does not read) loses its oldest news, never blocks the controller. Only the kind of step
and the lab's health word travel: pages fetch what changed through the usual reads.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

MAX_STREAMS = 200  # open pages; beyond: 503 (each holds a connection)
QUEUE = 64
KEEPALIVE_S = 15.0
MAX_STREAM_S = 600.0  # a stream ends after this; the browser reconnects by itself
_END = object()


class Broadcaster:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[object]]] = set()
        self.closed = False

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """A controller listener: queue one message for each open stream."""
        message: dict[str, Any] = {"kind": kind}
        if kind == "health":
            message["health"] = data.get("lab_health")
        self._send(json.dumps(message))

    def _send(self, item: object) -> None:
        with self._lock:
            streams = list(self._streams)
        for loop, queue in streams:
            try:
                loop.call_soon_threadsafe(_put, queue, item)
            except RuntimeError:  # the loop is closed: the stream is gone
                continue

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self.closed = True
        self._send(_END)

    @property
    def count(self) -> int:
        return len(self._streams)

    def open(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[object]] | None:
        with self._lock:
            if self.closed or len(self._streams) >= MAX_STREAMS:
                return None
            entry = (asyncio.get_running_loop(), asyncio.Queue[object](QUEUE))
            self._streams.add(entry)
            return entry

    def release(self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Queue[object]]) -> None:
        with self._lock:
            self._streams.discard(entry)

    async def stream(self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Queue[object]]
                     ) -> AsyncIterator[str]:
        loop, queue = entry
        deadline = loop.time() + MAX_STREAM_S
        try:
            yield "retry: 1000\n\n"
            while loop.time() < deadline:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is _END:
                    return
                yield f"data: {item}\n\n"
        finally:
            self.release(entry)


def _put(queue: asyncio.Queue[object], item: object) -> None:
    if queue.full():
        queue.get_nowait()  # the oldest news goes; the page refetches anyway
    queue.put_nowait(item)
