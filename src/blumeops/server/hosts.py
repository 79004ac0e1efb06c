"""The listen address, and the Host headers the server answers to.

A browser page on another site can make the operator's browser send requests to
127.0.0.1:7300 by pointing a DNS name at it (DNS rebinding); the request then carries that
name in its Host header. Only the addresses the server listens on and the names the user
configured are answered; anything else is refused before any handler runs.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from blumeops.server.responses import error_body

ENV_ALLOWED_HOSTS = "BLUMEOPS_ALLOWED_HOSTS"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_STATUS = 421  # Misdirected Request: not an authority this server answers for


class AddressError(ValueError):
    """A listen address or host name the user gave that cannot be used (says why)."""


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` -> (IP to bind, port). HOST is an IP address or `localhost`; an empty
    HOST means 127.0.0.1; IPv6 addresses go in brackets (`[::1]:7300`)."""
    host, sep, port = text.strip().rpartition(":")
    expected = (f"expected HOST:PORT with HOST an IP address or localhost and PORT 1-65535 "
                f"(e.g. 127.0.0.1:7300), got {text!r}")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(expected)
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in ("", "localhost"):
        return "127.0.0.1", int(port)
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        raise AddressError(expected) from None


@dataclass(frozen=True)
class HostRule:
    """A Host header to answer: `name` (lower case, IPv6 without brackets) and `port`
    (None: any port, for a name the user gave without one)."""

    name: str
    port: int | None

    def matches(self, name: str, port: int) -> bool:
        return self.name == name and (self.port is None or self.port == port)


def _split(text: str) -> tuple[str, int | None] | None:
    """`name[:port]` or `[v6][:port]` -> (lower-case name, port or None); None if malformed."""
    text = text.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[1:end], text[end + 1:]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        name = str(ipaddress.IPv6Address(name))
    else:
        name, sep, rest = text.partition(":")
        rest = sep + rest
        if not _NAME.match(name):
            return None
    if not rest:
        return name, None
    if not rest.startswith(":") or not rest[1:].isdigit() or not 0 < int(rest[1:]) < 65536:
        return None
    return name, int(rest[1:])


def parse_allowed_host(text: str) -> HostRule:
    """A name from --allowed-host: `NAME`, `NAME:PORT`, `IP`, `IP:PORT`, `[V6]:PORT`."""
    parts = _split(text)
    if parts is None:
        raise AddressError(f"allowed host {text!r} is not a host name or address "
                           "(NAME, NAME:PORT, IP:PORT or [IPv6]:PORT)")
    return HostRule(*parts)


def allowed_hosts_from_env() -> list[str]:
    """BLUMEOPS_ALLOWED_HOSTS: names separated by commas or spaces."""
    return [h for h in re.split(r"[\s,]+", os.environ.get(ENV_ALLOWED_HOSTS, "")) if h]


def host_rules(listen: tuple[str, int], extra: Iterable[str] = ()) -> tuple[HostRule, ...]:
    """What the server answers to: the addresses it listens on, at its port (loopback
    means 127.0.0.1, localhost and [::1] too), and the names the user configured."""
    host, port = listen
    ip = ipaddress.ip_address(host)
    own = [] if ip.is_unspecified else [HostRule(str(ip), port)]
    if ip.is_loopback or ip.is_unspecified:
        own += [HostRule(n, port) for n in LOOPBACK_NAMES]
    rules = own + [parse_allowed_host(h) for h in extra]
    return tuple(dict.fromkeys(rules))


def host_allowed(header: str, rules: Iterable[HostRule]) -> bool:
    parts = _split(header)
    if parts is None:
        return False
    name, port = parts
    return any(r.matches(name, port if port is not None else 80) for r in rules)


class HostGuard:
    """ASGI middleware: a request whose Host header is not allowed gets 421, and no
    handler runs. One Host header, exactly: none or several are refused too."""

    def __init__(self, app: ASGIApp, rules: tuple[HostRule, ...]) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts = [v for k, v in scope["headers"] if k == b"host"]
        header = hosts[0].decode("latin-1") if len(hosts) == 1 else ""
        if header and host_allowed(header, self.rules):
            await self.app(scope, receive, send)
            return
        shown = repr(header[:100]) if header else "(none)"
        headers, body = error_body(_STATUS, f"Host {shown} is not an address this "
                                            "controller answers to; add the name with "
                                            f"--allowed-host or {ENV_ALLOWED_HOSTS}")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": _STATUS, "headers": headers})
        await send({"type": "http.response.body", "body": body})
