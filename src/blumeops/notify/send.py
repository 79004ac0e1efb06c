"""Send one message to one Apprise URL. Apprise is imported here only: it is heavy.

Apprise's own log is silenced: its messages may name the URL, and a URL may carry a token.
A receiver that does not answer costs Apprise's socket timeouts (4 s to connect, 4 s to
read, per URL; `?cto=`/`?rto=` on the URL change them), on the notifier's thread only.
Those are per socket operation: a receiver that trickles its answer a byte at a time would
hold the one notifier thread for ever. So each send has a total deadline: Apprise runs on
a helper thread, and past DEADLINE the send fails (SendTimeout) and the notifier moves on;
the abandoned helper ends when the receiver does. At most MAX_STUCK are left behind: past
that, sends fail at once until one ends.
"""

from __future__ import annotations

import logging
import threading

DEADLINE = 30.0  # seconds for one send, answer included
MAX_STUCK = 8
_stuck: set[threading.Thread] = set()
_stuck_lock = threading.Lock()


class SendTimeout(Exception):
    """The receiver did not answer in time; the message is safe to record (no URL)."""


def _quiet() -> None:
    log = logging.getLogger("apprise")
    log.handlers[:] = [logging.NullHandler()]
    log.propagate = False
    log.setLevel(logging.CRITICAL + 1)


def send(url: str, title: str, body: str, deadline: float | None = None) -> bool:
    """True when Apprise says the message was delivered; SendTimeout when it did not
    finish within `deadline` seconds (DEADLINE by default)."""
    limit = DEADLINE if deadline is None else deadline
    with _stuck_lock:
        _stuck.difference_update([t for t in _stuck if not t.is_alive()])
        if len(_stuck) >= MAX_STUCK:
            raise SendTimeout(f"{len(_stuck)} earlier sends are still waiting for their "
                              f"receivers; not sending")
    result: list[bool] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(_send_now(url, title, body))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    helper = threading.Thread(target=run, name="blumeops-notify-send", daemon=True)
    helper.start()
    helper.join(limit)
    if helper.is_alive():
        with _stuck_lock:
            _stuck.add(helper)
        raise SendTimeout(f"the receiver did not answer within {limit:g} s")
    if failure:
        raise failure[0]
    return result[0]


def _send_now(url: str, title: str, body: str) -> bool:
    _quiet()
    import apprise

    _quiet()
    ap = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
    if not ap.add(url):
        return False
    return bool(ap.notify(title=title, body=body or title))

