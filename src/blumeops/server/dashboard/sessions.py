"""Logged-in browsers: opaque session ids kept in memory, each with its CSRF token.

The cookie holds only a random id (HttpOnly, SameSite=Strict); the API token itself never
leaves the login form's POST. Sessions live in this process: a restart logs everyone out,
which is the safe way round. The number of sessions is bounded; the oldest goes first.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "blumeops_session"
TTL_S = 12 * 3600
MAX_SESSIONS = 256


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires: float


class Sessions:
    def __init__(self, ttl: float = TTL_S) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def create(self) -> Session:
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                    time.monotonic() + self.ttl)
        with self._lock:
            self._drop_expired()
            while len(self._by_id) >= MAX_SESSIONS:
                self._by_id.pop(next(iter(self._by_id)))
            self._by_id[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            s = self._by_id.get(sid)
            if s is None or s.expires < time.monotonic():
                self._by_id.pop(sid, None)
                return None
            return s

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for sid in [k for k, v in self._by_id.items() if v.expires < now]:
            del self._by_id[sid]


def csrf_matches(session: Session, given: str) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), given.encode())


def same_origin(origin: str | None, referer: str | None, host: str) -> bool:
    """The request came from a page of this server: Origin (or, without it, Referer) is
    http(s)://HOST exactly. Neither header present is refused too."""
    if origin is not None:
        return origin in (f"http://{host}", f"https://{host}")
    if referer:
        return any(referer == base or referer.startswith(base + "/")
                   for base in (f"http://{host}", f"https://{host}"))
    return False
