"""The API server: uvicorn in a thread of the controller's process, with its own loop.

The controller's loop is a thread of its own and blocking (git, apply); the HTTP server
runs beside it on an asyncio loop in a second thread. The socket is bound in the
constructor, so a busy port, a bad address or an unsafe exposure is the caller's clear
error before anything starts; `shutdown` stops accepting, lets running requests finish
(a few seconds at most) and joins the thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn

from blumeops.server.app import create_app
from blumeops.server.auth import exposure_problem, reads_need_token
from blumeops.server.context import ApiSettings
from blumeops.server.hosts import host_rules, parse_allowed_host
from blumeops.server.limits import DEFAULT_LIMITS, Limits
from blumeops.server.protocol import GuardedH11Protocol

if TYPE_CHECKING:
    from blumeops.engine.controller import Controller


class ListenError(Exception):
    """The API cannot listen as asked; the message says why, for a person."""


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ApiServer:
    def __init__(self, address: tuple[str, int], controller: Controller, api_token: str,
                 webhook_secret: str, *, allowed_hosts: Iterable[str] = (),
                 limits: Limits = DEFAULT_LIMITS) -> None:
        host, port = address
        host = "127.0.0.1" if host == "localhost" else host
        problem = exposure_problem(host, api_token)
        if problem:
            raise ListenError(problem)
        allowed_hosts = list(allowed_hosts)
        try:  # every name is checked before anything binds
            ipaddress.ip_address(host)
            for name in allowed_hosts:
                parse_allowed_host(name)
        except ValueError as exc:  # AddressError included
            raise ListenError(str(exc)) from None
        self._sock = _bind(host, port, limits.backlog)
        self.address: tuple[str, int] = (host, int(self._sock.getsockname()[1]))
        self.limits = limits
        settings = ApiSettings(token=api_token, webhook_secret=webhook_secret,
                               reads_need_token=reads_need_token(host),
                               hosts=host_rules(self.address, allowed_hosts), limits=limits)
        self.app = create_app(controller, settings)
        config = uvicorn.Config(
            self.app,
            http=GuardedH11Protocol.with_limits(limits.header_timeout, limits.write_timeout,
                                                limits.max_connections, limits.stale_after),
            # Past max_connections the protocol closes waiting connections to make room;
            # uvicorn's 503 is for when twice that many are busy at once.
            backlog=limits.backlog, limit_concurrency=2 * limits.max_connections,
            timeout_keep_alive=limits.keep_alive,
            h11_max_incomplete_event_size=limits.max_header_bytes,
            timeout_graceful_shutdown=limits.shutdown_timeout,
            lifespan="off", proxy_headers=False, server_header=False,
            # Requests are counted in metrics; no access log (URLs and peers are noise,
            # and nothing of a request belongs in the controller's output).
            access_log=False, log_config=None, log_level="error")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{format_address(*self.address)}"

    def serve_in_thread(self, timeout: float = 10.0) -> threading.Thread:
        """Start serving; returns once the server accepts requests."""
        self._thread = threading.Thread(target=self._run, name="blumeops-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.shutdown()
                raise ListenError(f"the API server did not start: {self._error or 'timeout'}")
            time.sleep(0.005)
        return self._thread

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by serve_in_thread; the thread just ends
            self._error = exc

    def shutdown(self) -> None:
        """Stop accepting, let running requests finish, join the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self.app.state.dashboard.live.close()  # live pages end, so nothing waits on them
            self._server.should_exit = True
            thread.join(self.limits.shutdown_timeout + 5)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(5)
        self._sock.close()

    def __enter__(self) -> ApiServer:
        self.serve_in_thread()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {format_address(host, port)}: "
                          f"{exc.strerror or exc}") from None
    return sock
