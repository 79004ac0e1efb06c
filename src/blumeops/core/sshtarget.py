"""Where and as whom to reach a host over SSH: the catalog's `ssh:` value, parsed and
checked so no field can be read by ssh as an option. transports/ssh.py connects with it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol


class Reachable(Protocol):
    """What of a catalog host says how to reach it (the model's `Host` has these)."""

    @property
    def ssh(self) -> str | None: ...

    @property
    def address(self) -> str | None: ...


_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


# Host names, addresses and ssh_config aliases; no leading "-" (an option to ssh), no
# spaces or shell characters (a user's ProxyCommand may paste %h into a shell).
_DESTINATION = re.compile(r"^(?!-)[A-Za-z0-9_.:\[\]-]+$")


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to connect. `destination` may be a ~/.ssh/config alias."""

    destination: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    config_file: str | None = None  # ssh -F: replaces ~/.ssh/config (tests, CI)
    accept_new: bool = False  # accept an unknown host key on first contact
    connect_timeout: int = 10

    def __post_init__(self) -> None:
        # Each field becomes one argv element, never shell text; these checks stop a
        # value from being read by ssh as an option (e.g. "-oProxyCommand=...").
        if not _DESTINATION.match(self.destination):
            raise ValueError(f"not a host name or address: {self.destination!r}")
        if self.user is not None and not _USER.match(self.user):
            raise ValueError(f"not a user name: {self.user!r}")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"not a port: {self.port!r}")

    @classmethod
    def parse(cls, spec: str) -> SshTarget:
        """`user@host[:port]` (IPv6 as `[addr]:port`), as the catalog's `ssh:` field.

        Options (identity, accept_new, ...) are added with `dataclasses.replace`."""
        user, _, rest = spec.rpartition("@")
        port: int | None = None
        match = re.fullmatch(r"\[(.+)\](?::(\d+))?|([^:]+)(?::(\d+))?", rest)
        if match is None:
            raise ValueError(f"expected user@host[:port], got {spec!r}")
        host = match.group(1) or match.group(3)
        digits = match.group(2) or match.group(4)
        if digits:
            port = int(digits)
        return cls(destination=host, user=user or None, port=port)

    @classmethod
    def for_host(cls, name: str, host: Reachable) -> SshTarget:
        """The catalog's `ssh:` if set, else its `address:`, else the name itself (an
        ~/.ssh/config alias or a MagicDNS short name)."""
        return cls.for_values(name, host.ssh, host.address)

    @classmethod
    def for_values(cls, name: str, ssh: str | None, address: str | None) -> SshTarget:
        if ssh:
            return cls.parse(ssh)
        return cls(destination=address or name)

    def key(self) -> str:
        """Names this connection's control socket: one per distinct way of connecting."""
        ident = "\0".join(str(v) for v in (self.destination, self.user, self.port,
                                           self.identity_file, self.config_file))
        return hashlib.sha256(ident.encode()).hexdigest()[:16]
