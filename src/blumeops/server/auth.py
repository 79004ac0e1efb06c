"""Who may call what.

Changing endpoints always need `Authorization: Bearer TOKEN`. Reading endpoints are open
only when the server listens on loopback: the decision is made from the listen address,
never from the peer, because a proxy on the same machine makes every peer loopback.
"""

from __future__ import annotations

import hmac
import ipaddress

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


def require_token(authorization: str, token: str) -> None:
    """Raise 401 unless `authorization` carries the configured token."""
    if not token:
        raise ApiError(401, "no API token is configured (set BLUMEOPS_API_TOKEN); "
                            "changing endpoints are disabled", _CLOSE)
    if not bearer_matches(authorization, token):
        raise ApiError(401, "missing or wrong bearer token", _CLOSE)
