"""What one client may cost the server: connections, time and bytes.

The numbers live here; the HTTP protocol (server/protocol.py) enforces the ones about
connections and request heads, `BodyGuard` the ones about request bodies.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blumeops.server.responses import ApiError


@dataclass(frozen=True)
class Limits:
    backlog: int = 2048  # connections the kernel queues before the server accepts them
    max_connections: int = 1000  # open connections; beyond, waiting ones make room
    stale_after: float = 0.5  # past max_connections: seconds a connection may wait idle
    header_timeout: float = 5.0  # seconds to send a request line and headers
    body_timeout: float = 10.0  # seconds to send the whole body, once the headers are in
    write_timeout: float = 10.0  # seconds a client may leave an answer unread
    keep_alive: int = 5  # seconds an idle kept-alive connection stays open
    max_header_bytes: int = 16 * 1024  # request line + headers; beyond: 400
    max_body: int = 1024 * 1024  # any request body; beyond: 413
    max_json_depth: int = 32  # nesting of a JSON body; beyond: 400
    failed_logins: int = 10  # wrong tokens a client may send before waiting (429)
    failed_logins_per_s: float = 0.5  # how fast that allowance refills (server: 3x both)
    shutdown_timeout: int = 5  # seconds running requests get to finish on shutdown


DEFAULT_LIMITS = Limits()


def _too_large(size: int | str, limit: int) -> ApiError:
    return ApiError(413, f"body of {size} bytes is over the {limit}-byte limit",
                    {"Connection": "close"})


class BodyGuard:
    """ASGI middleware: a body over `max_body` bytes is refused (413) and one that has not
    fully arrived `timeout` seconds after its headers is abandoned (408), wherever it is
    read. An answer sent before the body was read closes the connection, so the server
    never reads on a body nobody wants."""

    def __init__(self, app: ASGIApp, max_body: int, timeout: float) -> None:
        self.app = app
        self.max_body = max_body
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(scope, receive, send, self.max_body, self.timeout)
        await self.app(scope, body.receive, body.send)


class _Body:
    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int,
                 timeout: float) -> None:
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        self.declared = int(length) if length.isdigit() else 0
        self.done = self.declared == 0 and b"transfer-encoding" not in headers
        self.limit = limit
        self.timeout = timeout
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.size = 0
        self._receive = receive
        self._send = send

    async def receive(self) -> Message:
        if self.done:  # later calls wait for a disconnect: no deadline
            return await self._receive()
        if self.declared > self.limit:
            raise _too_large(self.declared, self.limit)
        left = self.deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(self._receive(), max(left, 0.0))
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {self.timeout:g} s",
                           {"Connection": "close"}) from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                raise _too_large(f"over {self.limit}", self.limit)
            self.done = not message.get("more_body", False)
        else:
            self.done = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self.done:
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await self._send(message)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes (413 beyond)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(declared, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(f"over {limit}", limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client went away before sending its body") from None
    return b"".join(chunks)
