"""Deadlines and bounds, on a real server with short limits (so the tests are quick)."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx

from blumeops.engine.controller import Controller
from blumeops.server.limits import Limits
from polling import wait_for

from .serverlab import TOKEN, closed_by_server, concurrent_gets, raw_request, serving, status_of

# Short deadlines, and an idle keep-alive far longer than any wait below: only the
# deadline under test can close a connection in time.
SHORT = Limits(header_timeout=1.0, body_timeout=1.0, write_timeout=1.0, keep_alive=600)
TCP_CLOSE = 7  # tcp_info.tcpi_state of a socket the peer reset


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def test_trickled_head_is_dropped_at_its_deadline(controller: Controller) -> None:
    """A byte every 0.2 s does not extend the header deadline (slowloris): the head is
    dropped long before its 100 bytes (20 s) are sent, and not before the deadline."""
    with serving(controller, limits=SHORT) as server:
        sock = _connect(server.address[1])
        start = time.monotonic()
        head = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: " + b"a" * 100
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
            raise AssertionError("the server read a 20 s head without dropping it")
        except (BrokenPipeError, ConnectionResetError):
            pass
        elapsed = time.monotonic() - start
        sock.close()
        assert elapsed > 0.9, elapsed  # a lower bound: load only makes it later


def test_next_head_on_a_kept_alive_connection_has_a_deadline_too(
        controller: Controller) -> None:
    with serving(controller, limits=SHORT) as server:
        port = server.address[1]
        sock = _connect(port)
        sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /api/status HTTP/1.1\r\nHo")  # and stall
        assert closed_by_server(sock, 60)
        sock.close()


def test_slow_body_gets_408(controller: Controller) -> None:
    with serving(controller, limits=SHORT) as server:
        port = server.address[1]
        answer = raw_request(port, b"POST /api/sync HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                             b"Authorization: Bearer %s\r\nContent-Length: 100\r\n\r\n"
                             b'{"revision":' % (port, TOKEN.encode()), timeout=60)
        assert status_of(answer) == 408, answer
        assert b"connection: close" in answer.lower()


def test_bodies_over_the_cap_are_413_declared_or_streamed(controller: Controller) -> None:
    with serving(controller) as server:
        url = server.url
        auth = {"Authorization": f"Bearer {TOKEN}"}
        big = httpx.post(f"{url}/api/sync", content=b"{" + b" " * 70_000 + b"}",
                         headers=auth, timeout=10)
        assert big.status_code == 413 and "65536-byte limit" in big.json()["error"]

        def chunks() -> object:
            for _ in range(40):
                yield b" " * 32_768  # 1.25 MiB, no Content-Length (chunked)

        streamed = httpx.post(f"{url}/api/webhook", content=chunks(),  # type: ignore[arg-type]
                              headers={"X-Forgejo-Event": "push"}, timeout=10)
        assert streamed.status_code == 413, streamed.text
        metrics = httpx.get(f"{url}/metrics").text
        assert 'blumeops_webhook_requests_total{result="too_large"} 1.0' in metrics


def test_connections_held_open_do_not_starve_the_operator(controller: Controller) -> None:
    """One local user holds twice the bound open (heads and bodies half sent): the
    operator's request is answered at once, because stale waiting connections make room
    (it used to be 503 until they passed their header deadline)."""
    limits = Limits(max_connections=8, header_timeout=5.0, body_timeout=5.0,
                    stale_after=0.3)
    with serving(controller, limits=limits) as server:
        port = server.address[1]
        heads = [_connect(port) for _ in range(8)]
        for sock in heads:
            sock.sendall(b"GET /api/status HTTP/1.1\r\n")
        bodies = [_connect(port) for _ in range(8)]
        for sock in bodies:
            sock.sendall(b"POST /api/sync HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         b"Authorization: Bearer %s\r\nContent-Length: 100\r\n\r\n{"
                         % (port, TOKEN.encode()))
        time.sleep(0.6)  # the stalled ones wait past stale_after (the scenario, not a wait)
        for _ in range(3):  # again and again, while the others stay stalled
            assert httpx.get(f"{server.url}/api/status", timeout=5).status_code == 200
        closed = [s for s in heads + bodies if closed_by_server(s, 0.5)]
        assert len(closed) >= 3, "no stalled connection made room"
        for sock in heads + bodies:
            sock.close()


def test_a_burst_past_the_bound_is_answered_not_refused(controller: Controller) -> None:
    """35 concurrent requests against a bound of 20: all answered (each open connection
    counted against the bound, so requests past it used to get 503)."""
    with serving(controller, limits=Limits(max_connections=20)) as server:
        results = concurrent_gets(f"{server.url}/api/status", 35)
    codes = sorted(code for code, _ in results)
    assert codes == [200] * 35, codes


def test_unread_answers_abort_the_connection(controller: Controller) -> None:
    """A client that asks and never reads: the server gives up after `write_timeout`
    instead of holding the answers (and a task) for ever."""
    with serving(controller, limits=SHORT) as server:
        port = server.address[1]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
        wanted = 3000
        sock.settimeout(5)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request * wanted)
        # Never read until the server gave up: it resets the connection.
        wait_for(lambda: tcp_state(sock) == TCP_CLOSE, 60,
                 "the server to abort the connection whose answers are not read")
        got = b""
        try:
            while chunk := sock.recv(1 << 20):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        sock.close()
        answered = got.count(b"HTTP/1.1 200")
        assert answered < wanted, "every answer was delivered: nothing was aborted"
