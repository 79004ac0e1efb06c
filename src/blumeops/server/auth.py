"""Who may call what.

Changing endpoints always need `Authorization: Bearer TOKEN`. Reading endpoints are open
only when the server listens on loopback: the decision is made from the listen address,
never from the peer, because a proxy on the same machine makes every peer loopback.

Wrong tokens are counted across connections (`FailedLogins`): per client address and for
the server as a whole, so neither many connections nor many loopback addresses buy more
guesses. Past the allowance every token check, right or wrong, is refused (429) until it
refills: a guess while throttled is never tested.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from blumeops.server.responses import ApiError

# 401s close the connection: a guesser pays a new connection per try.
_CLOSE = {"Connection": "close"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; a wildcard (0.0.0.0, ::) is not."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def reads_need_token(listen_host: str) -> bool:
    return not is_loopback(listen_host)


def exposure_problem(listen_host: str, token: str) -> str | None:
    """Why the API must not listen on `listen_host` with `token`, or None if it may."""
    if reads_need_token(listen_host) and not token:
        return (f"listening on {listen_host} (not loopback) needs BLUMEOPS_API_TOKEN: "
                "without it anyone who can reach the port could read the lab's state")
    return None


def bearer_matches(authorization: str, token: str) -> bool:
    """`Authorization: Bearer T` with T equal to `token`; an empty token never matches."""
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given or not token:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def presented(authorization: str) -> bool:
    """True when `authorization` carries some bearer token (a guess, if it is wrong)."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(given.strip())


@dataclass
class _Bucket:
    tokens: float
    at: float


class FailedLogins:
    """A token bucket of wrong-token allowance per client and one for the server: each
    wrong token takes one; `burst` to start with, refilled at `per_s` a second (the whole
    server gets three times each)."""

    MAX_CLIENTS = 10_000  # buckets kept; full ones are dropped first

    def __init__(self, burst: int, per_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.per_s = per_s
        self._clock = clock
        self._lock = threading.Lock()
        self._overall = _Bucket(3.0 * burst, clock())
        self._clients: dict[str, _Bucket] = {}

    def _refill(self, bucket: _Bucket, burst: float, rate: float, now: float) -> _Bucket:
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        return bucket

    def _buckets(self, client: str, now: float) -> tuple[_Bucket, _Bucket]:
        overall = self._refill(self._overall, 3.0 * self.burst, 3.0 * self.per_s, now)
        mine = self._clients.get(client)
        if mine is None:
            if len(self._clients) >= self.MAX_CLIENTS:
                self._clients = {k: b for k, b in self._clients.items()
                                 if self._refill(b, self.burst, self.per_s, now).tokens
                                 < self.burst}
            mine = self._clients.setdefault(client, _Bucket(float(self.burst), now))
        return overall, self._refill(mine, self.burst, self.per_s, now)

    def check(self, client: str) -> None:
        """Raise 429 while `client` (or the server) has no allowance left."""
        with self._lock:
            now = self._clock()
            overall, mine = self._buckets(client, now)
            short = max((1.0 - overall.tokens) / (3.0 * self.per_s),
                        (1.0 - mine.tokens) / self.per_s)
        if short > 0:
            wait = max(1, math.ceil(short))
            raise ApiError(429, f"too many wrong tokens: try again in {wait} s",
                           {**_CLOSE, "Retry-After": str(wait)})

    def failed(self, client: str) -> None:
        with self._lock:
            overall, mine = self._buckets(client, self._clock())
            overall.tokens -= 1.0
            mine.tokens -= 1.0


def require_token(authorization: str, token: str, client: str = "",
                  failures: FailedLogins | None = None) -> None:
    """Raise 401 unless `authorization` carries the configured token; with `failures`,
    429 while the client has guessed wrong too often."""
    if not token:
        raise ApiError(401, "no API token is configured (set BLUMEOPS_API_TOKEN); "
                            "changing endpoints are disabled", _CLOSE)
    if failures is not None and presented(authorization):
        failures.check(client)
    if not bearer_matches(authorization, token):
        if failures is not None and presented(authorization):
            failures.failed(client)
        raise ApiError(401, "missing or wrong bearer token", _CLOSE)
