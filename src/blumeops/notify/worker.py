"""The delivery queue: notices go out on their own thread, failures retry with backoff.

`submit` only queues, so a sync never waits for a slow or dead receiver. A delivery that
fails is retried after 1, 2, 4, ... seconds (at most `attempts` tries); each failure is
recorded as an event naming the target, never its URL. The queue is bounded: when full,
the oldest pending delivery is dropped and that is recorded too.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from blumeops.notify.rules import Notice
from blumeops.notify.send import SendTimeout

MAX_PENDING = 500


@dataclass(frozen=True)
class Delivery:
    target: str
    notice: Notice
    attempt: int = 1


Sender = Callable[[str, Notice], bool]  # (target name, notice) -> delivered
Recorder = Callable[[str, str], None]  # (event kind, message)


class Worker:
    def __init__(self, send: Sender, record: Recorder, attempts: int = 6,
                 backoff: float = 1.0) -> None:
        self._send = send
        self._record = record
        self.attempts = attempts
        self.backoff = backoff
        self._heap: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="blumeops-notify", daemon=True)
        self._thread.start()

    def submit(self, delivery: Delivery, delay: float = 0.0) -> None:
        with self._cond:
            if len(self._heap) >= MAX_PENDING:
                dropped = min(self._heap, key=lambda e: e[1])  # the oldest goes
                self._heap.remove(dropped)
                heapq.heapify(self._heap)
                self._record("notify-dropped", f"notice {dropped[2].notice.title!r} to "
                                               f"{dropped[2].target} dropped: queue full")
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), delivery))
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._heap and not self._busy

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap
                                          or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                if self._stop:
                    return
                _, _, delivery = heapq.heappop(self._heap)
                self._busy = True
            try:
                self._deliver(delivery)
            finally:
                with self._cond:
                    self._busy = False

    def _deliver(self, d: Delivery) -> None:
        try:
            ok = self._send(d.target, d.notice)
            why = "" if ok else "the receiver did not accept it"
        except SendTimeout as exc:  # its message names no URL
            ok, why = False, str(exc)
        except Exception as exc:  # a bad URL, a secret that cannot be read: same path
            ok, why = False, type(exc).__name__
        if ok:
            if d.attempt > 1:
                self._record("notified", f"notice {d.notice.title!r} delivered to "
                                         f"{d.target} on attempt {d.attempt}")
            return
        if d.attempt >= self.attempts:
            self._record("notify-failed", f"notice {d.notice.title!r} to {d.target} "
                                          f"given up after {d.attempt} attempts ({why})")
            return
        delay = self.backoff * 2 ** (d.attempt - 1)
        self._record("notify-failed", f"notice {d.notice.title!r} to {d.target} failed "
                                      f"(attempt {d.attempt} of {self.attempts}: {why}); "
                                      f"retrying in {delay:g} s")
        self.submit(Delivery(d.target, d.notice, d.attempt + 1), delay)
