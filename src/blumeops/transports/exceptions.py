"""Every way reaching a host can fail, as a type the engine can act on.

`HostUnreachable` means "nothing happened on that host": the engine marks its services
Unknown and carries on with the others. `RemoteError` means the host answered but the
request failed there. Messages are written for the person running blumeops and never
contain request data (file contents, secrets).
"""

from __future__ import annotations

from blumeops.transports.types import HostFacts, Reason


class TransportError(Exception):
    """Base of every transport failure; `host` names the catalog host."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host
        self.message = message


class HostUnreachable(TransportError):
    """The connection could not be made (or broke): `reason` says which fix applies."""

    def __init__(self, host: str, reason: Reason, message: str, detail: str = "") -> None:
        super().__init__(host, message)
        self.reason = reason
        self.detail = detail  # the ssh client's own last words, for the curious


class HostKeyChanged(HostUnreachable):
    """The host's key differs from known_hosts. Always refused: it may be an attack."""

    def __init__(self, host: str, message: str, known_hosts_line: str, detail: str = "") -> None:
        super().__init__(host, Reason.host_key_changed, message, detail)
        self.known_hosts_line = known_hosts_line  # e.g. /home/me/.ssh/known_hosts:3


class RemoteError(TransportError):
    """The host answered, but the request failed there (`code` is machine-readable)."""

    def __init__(self, host: str, code: str, message: str) -> None:
        super().__init__(host, message)
        self.code = code


class PythonUnsupported(RemoteError):
    """The host has no python3, or one older than 3.9; `facts` holds what is known."""

    def __init__(self, host: str, message: str, facts: HostFacts) -> None:
        super().__init__(host, "python-unsupported", message)
        self.facts = facts
