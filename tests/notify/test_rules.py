"""The no-flood rules and the retrying worker, without a network."""

from __future__ import annotations

import threading
import time

from blumeops.notify.rules import Notice, Rules
from blumeops.notify.worker import Delivery, Worker


def health(**words: str) -> dict[str, object]:
    return {"services": [{"service": n, "health": w, "detail": f"{n} {w}"}
                         for n, w in words.items()]}


def test_one_notice_per_state_change_and_a_recovery() -> None:
    rules = Rules(repeat_after=60)
    assert rules.step("health", health(web="Healthy"), 0) == []
    (down,) = rules.step("health", health(web="Degraded"), 1)
    assert (down.event, down.title) == ("service-degraded", "web is Degraded")
    for t in range(2, 50):  # the same state, every heal: suppressed
        assert rules.step("health", health(web="Degraded"), t) == []
    (again,) = rules.step("health", health(web="Degraded"), 61)
    assert again.title == "still: web is Degraded"
    (up,) = rules.step("health", health(web="Healthy"), 70)
    assert (up.event, up.title) == ("service-recovered", "web is Healthy again")
    assert rules.step("health", health(web="Healthy"), 71) == []
    assert rules.step("sync-finished", {"commit": "a" * 40, "ok": True}, 72) == []
    rules.step("health", health(web="Degraded", api="Missing"), 80)
    rules.step("health", health(api="Missing"), 81)  # web was removed from the catalog
    (back,) = rules.step("health", health(web="Healthy", api="Healthy"), 82)
    assert back.title == "api is Healthy again"  # web came back as new: no stale recovery


def test_rejected_commit_and_failed_sync_clear_on_a_good_sync() -> None:
    rules = Rules()
    errors = [{"file": "lab.yaml", "line": 7, "message": "unknown key"}]
    (bad,) = rules.step("commit-rejected", {"commit": "b" * 40, "errors": errors}, 0)
    assert bad.event == "commit-rejected" and "lab.yaml:7: unknown key" in bad.body
    assert rules.step("commit-rejected", {"commit": "b" * 40, "errors": errors}, 1) == []
    (other,) = rules.step("commit-rejected", {"commit": "c" * 40, "errors": errors}, 2)
    assert "cccccccccccc" in other.title  # another bad commit is news
    (fixed,) = rules.step("sync-finished", {"commit": "d" * 40, "ok": True}, 3)
    assert fixed.event == "commit-rejected" and "valid" in fixed.title


def test_worker_retries_with_backoff_and_records_each_failure() -> None:
    calls: list[float] = []
    events: list[tuple[str, str]] = []
    done = threading.Event()

    def send(target: str, notice: Notice) -> bool:
        calls.append(time.monotonic())
        if len(calls) < 3:
            return False
        done.set()
        return True

    worker = Worker(send, lambda k, m: events.append((k, m)), attempts=5, backoff=0.1)
    try:
        worker.submit(Delivery("phone", Notice("sync-failed", "t", "b")))
        assert done.wait(5)
    finally:
        worker.stop()
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.1 and calls[2] - calls[1] >= 0.2  # 0.1 s, then 0.2 s
    assert [k for k, _ in events] == ["notify-failed", "notify-failed", "notified"]
    assert "phone" in events[0][1] and "attempt 1 of 5" in events[0][1]
