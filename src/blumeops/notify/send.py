"""Send one message to one Apprise URL. Apprise is imported here only: it is heavy.

Apprise's own log is silenced: its messages may name the URL, and a URL may carry a token.
A receiver that does not answer costs Apprise's socket timeouts (4 s to connect, 4 s to
read, per URL; `?cto=`/`?rto=` on the URL change them), on the notifier's thread only.
"""

from __future__ import annotations

import logging


def _quiet() -> None:
    log = logging.getLogger("apprise")
    log.handlers[:] = [logging.NullHandler()]
    log.propagate = False
    log.setLevel(logging.CRITICAL + 1)


def send(url: str, title: str, body: str) -> bool:
    """True when Apprise says the message was delivered."""
    _quiet()
    import apprise

    _quiet()
    ap = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
    if not ap.add(url):
        return False
    return bool(ap.notify(title=title, body=body or title))

