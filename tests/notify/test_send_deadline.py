"""A receiver that trickles its answer cannot hold the notifier: each send has a total
deadline, and the other targets are served meanwhile. Real Apprise, real sockets on
loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from blumeops.notify import send as send_module
from blumeops.notify.rules import Notice
from blumeops.notify.worker import Delivery, Worker

from .receiver import Receiver


class Trickler:
    """Answers every request with a 200 whose body comes one byte a second (at most
    `seconds` bytes), so no single socket read ever times out."""

    def __init__(self, seconds: int = 20) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.seconds = seconds
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % self.seconds)
                for _ in range(self.seconds):
                    if self.stop.wait(1.0):
                        return
                    conn.sendall(b" ")
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(name="trickler")
def trickler_fixture() -> Iterator[Trickler]:
    t = Trickler()
    yield t
    t.close()


def test_a_trickling_receiver_is_cut_off_at_the_deadline(
        trickler: Trickler, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send_module, "DEADLINE", 2.0, raising=False)
    start = time.monotonic()
    with pytest.raises(Exception) as err:
        send_module.send(f"json://127.0.0.1:{trickler.port}/hook", "title", "body")
    took = time.monotonic() - start
    assert type(err.value).__name__ == "SendTimeout"
    assert "within 2 s" in str(err.value) and str(trickler.port) not in str(err.value)
    assert 1.5 < took < 4.0, took


def test_other_targets_are_served_while_one_trickles(
        trickler: Trickler, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send_module, "DEADLINE", 2.0, raising=False)
    good = Receiver()
    urls = {"slow": f"json://127.0.0.1:{trickler.port}/hook",
            "phone": f"json://127.0.0.1:{good.port}/hook"}
    events: list[tuple[str, str]] = []
    worker = Worker(lambda target, n: send_module.send(urls[target], n.title, n.body),
                    lambda kind, message: events.append((kind, message)), attempts=1)
    try:
        notice = Notice("sync-failed", "sync failed", "details")
        start = time.monotonic()
        worker.submit(Delivery("slow", notice))
        worker.submit(Delivery("phone", notice))
        while not good.got and time.monotonic() - start < 15:
            time.sleep(0.05)
        assert good.titles() == ["sync failed"]
        assert time.monotonic() - start < 5.0  # the trickler held it 2 s, not 20
        assert ("notify-failed", "notice 'sync failed' to slow given up after 1 attempts "
                "(the receiver did not answer within 2 s)") in events
    finally:
        worker.stop()
        good.close()
