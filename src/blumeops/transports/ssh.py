"""A host over OpenSSH: the user's own `ssh`, config, agent, known_hosts and ProxyJump.

No SSH library: the `ssh` the user already trusts does the connecting, so whatever works
in their terminal (`~/.ssh/config` aliases, ProxyJump, Tailscale SSH, hardware keys via
the agent) works here. What blumeops adds:

- one multiplexed connection per host (ControlMaster=auto, ControlPersist): the first
  call pays the handshake, later calls open a channel on it in a few milliseconds. The
  control sockets live in a 0700 directory under the state dir;
- never a prompt (BatchMode=yes) and a bounded wait (ConnectTimeout);
- host keys checked strictly: an unknown key is refused unless the user opted into
  first-contact acceptance (`accept_new`, ssh's accept-new); a changed key is always
  refused, naming the known_hosts line ssh reported;
- a fixed remote command (`wire.REMOTE_COMMAND`): requests, file contents and secrets
  travel on the channel's stdin, never on a command line;
- ssh's errors turned into `HostUnreachable` with a `Reason` and a message that says
  what to do.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from blumeops.core.sshtarget import SshTarget
from blumeops.transports import answers, wire
from blumeops.transports.base import Transport
from blumeops.transports.exceptions import HostKeyChanged, HostUnreachable, RemoteError
from blumeops.transports.exchange import TimedOut, TooLarge, exchange
from blumeops.transports.types import JSON, Reason

SSH_FAILED = 255  # ssh's own exit status for its own failures
# A unix socket path must fit sun_path (104 bytes on macOS); ssh adds a 17-byte suffix
# while it creates the socket.
MAX_CONTROL_DIR = 104 - 1 - 16 - 17 - 1


def control_dir(state_dir: Path) -> Path:
    """A private (0700) directory for control sockets: under the state dir when the
    path is short enough for a unix socket, else under the temp dir."""
    preferred = Path(state_dir) / "ssh"
    if len(str(preferred)) <= MAX_CONTROL_DIR:
        return _private_dir(preferred)
    tag = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    return _private_dir(Path(tempfile.gettempdir()) / f"blumeops-ssh-{os.getuid()}-{tag}")


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if path.is_symlink() or st.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory owned by this user; refusing to "
                              "keep SSH control sockets there")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


class SshTransport(Transport):
    """One host over ssh. Calls may run in parallel; they share one TCP connection."""

    def __init__(self, host: str, target: SshTarget, control: Path, *,
                 persist: int = 300, max_sessions: int = 8, timeout: float | None = None,
                 ssh: str = "ssh") -> None:
        self.host = host
        self.target = target
        self.control_path = Path(control) / target.key()
        self.persist = persist
        self.timeout = timeout  # None: each request's budget (answers.budget) + connecting
        self.ssh = ssh
        # sshd allows 10 sessions per connection by default (MaxSessions): stay under it.
        self._sessions = threading.BoundedSemaphore(max_sessions)
        # Until one call has succeeded, calls go one at a time so that only one of them
        # becomes the master: parallel first calls would each open their own connection.
        self._first = threading.Lock()
        self._connected = False

    def options(self) -> list[str]:
        t = self.target
        opts = {
            "BatchMode": "yes",
            "ConnectTimeout": str(t.connect_timeout),
            "StrictHostKeyChecking": "accept-new" if t.accept_new else "yes",
            "ControlMaster": "auto",
            "ControlPath": str(self.control_path),
            "ControlPersist": str(self.persist),
            "ServerAliveInterval": "15",
            "ServerAliveCountMax": "3",
            "ClearAllForwardings": "yes",  # a LocalForward in the user's config: not per call
            "PermitLocalCommand": "no",
        }
        argv = [item for key, value in opts.items() for item in ("-o", f"{key}={value}")]
        argv.append("-T")
        if t.config_file:
            argv += ["-F", t.config_file]
        if t.user:
            argv += ["-l", t.user]
        if t.port:
            argv += ["-p", str(t.port)]
        if t.identity_file:
            argv += ["-i", t.identity_file]
        return argv

    def argv(self) -> list[str]:
        return [self.ssh, *self.options(), "--", self.target.destination, wire.REMOTE_COMMAND]

    def send(self, request: JSON, blobs: Sequence[bytes], seconds: float) -> JSON:
        data = wire.encode(request, blobs)
        # The agent gives up at `seconds`; ssh may first need to connect, then carry
        # the answer back.
        wait = self.timeout or seconds + self.target.connect_timeout + 5
        with self._sessions:
            if not self._connected:
                with self._first:
                    if not self._connected:  # the call that held the lock may have connected
                        result = self._roundtrip(data, wait)
                        self._connected = True
                        return result
            return self._roundtrip(data, wait)

    def _roundtrip(self, data: bytes, wait: float) -> JSON:
        if shutil.which(self.ssh) is None:
            raise HostUnreachable(self.host, Reason.other,
                                  f"host {self.host}: no `{self.ssh}` client on this machine")
        try:
            proc = exchange(self.argv(), data, seconds=wait, limit=answers.MAX_ANSWER)
        except TimedOut:
            self._connected = False
            raise HostUnreachable(self.host, Reason.timeout, f"host {self.host}: no answer "
                                  f"within {wait:g} s") from None
        except TooLarge:
            raise answers.BadAnswer(self.host, "more than "
                                    f"{answers.MAX_ANSWER >> 20} MB; not read further") from None
        if wire.MARKER in proc.stdout:
            return wire.decode(self.host, proc.stdout, proc.stderr)
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode == wire.COMMAND_NOT_FOUND:
            raise wire.python_missing(self.host)
        if proc.returncode == SSH_FAILED and not stderr.strip() and self._connected:
            # On a working connection, ssh says nothing when the remote program is killed.
            raise RemoteError(self.host, "no-answer", f"host {self.host}: the agent ended "
                              "without answering (killed, or out of memory?)")
        if proc.returncode == SSH_FAILED or proc.returncode < 0:
            self._connected = False
            raise classify(self.host, self.target, stderr, proc.returncode)
        return wire.decode(self.host, proc.stdout, proc.stderr)

    def close(self) -> None:
        """End the shared connection now (else it lingers `persist` seconds, for reuse)."""
        self._connected = False
        if not self.control_path.exists():
            return
        subprocess.run([self.ssh, *self.options(), "-O", "exit", "--",
                        self.target.destination],
                       capture_output=True, timeout=10, check=False)


_CHANGED = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed")
_OFFENDING = re.compile(r"Offending \S+ key in (\S+:\d+)")
_KEY_HOST = re.compile(r"Host key for (\S+) has changed")
_UNKNOWN = re.compile(r"No \S+ host key is known for|Host key verification failed")
_PATTERNS: list[tuple[Reason, re.Pattern[str]]] = [
    (Reason.auth_failed, re.compile(r"Permission denied|Too many authentication failures")),
    (Reason.refused, re.compile(r"Connection refused")),
    (Reason.timeout, re.compile(r"timed out|Connection timed out")),
    (Reason.unresolved, re.compile(r"Could not resolve hostname|Name or service not known")),
    (Reason.dropped, re.compile(r"Connection (closed|reset)|Broken pipe|client_loop")),
]


def classify(host: str, target: SshTarget, stderr: str, returncode: int) -> HostUnreachable:
    """Turn ssh's failure into a typed error that says what to do about it."""
    address = target.destination + (f":{target.port}" if target.port else "")
    where = host if address == host else f"{host} ({address})"
    last = " / ".join(line.strip() for line in stderr.strip().splitlines()[-2:])
    if _CHANGED.search(stderr):
        line = _first(_OFFENDING, stderr) or "known_hosts"
        name = _first(_KEY_HOST, stderr) or target.destination
        return HostKeyChanged(
            host,
            f"host {where}: its SSH host key has CHANGED since it was recorded in "
            f"{line}. This can be a reinstalled host or someone in the middle; blumeops "
            f"refuses it. If you know why it changed: ssh-keygen -R '{name}', then connect "
            "once by hand to check and record the new key.",
            known_hosts_line=line, detail=stderr.strip())
    if _UNKNOWN.search(stderr):
        return HostUnreachable(
            host, Reason.host_key_unknown,
            f"host {where}: its SSH host key is not in known_hosts, and blumeops "
            "does not trust a key on its own. Connect once with ssh to check and record "
            "it, or opt into first-contact acceptance (accept-new) for this host.",
            detail=stderr.strip())
    if returncode < 0:
        return HostUnreachable(host, Reason.dropped,
                               f"host {where}: the connection was cut", last)
    hints = {
        Reason.auth_failed: "ssh was refused: is your key in the agent or the host's "
                            "authorized_keys, and is the user right?",
        Reason.refused: "connection refused: is sshd running, and is the port right?",
        Reason.timeout: "connection timed out: is the host up and reachable?",
        Reason.unresolved: "the name does not resolve: check the address or ssh config",
        Reason.dropped: "the connection dropped",
    }
    for reason, pattern in _PATTERNS:
        if pattern.search(stderr):
            return HostUnreachable(host, reason, f"host {where}: {hints[reason]}",
                                   last)
    said = last or f"no message; try `ssh {target.destination}` by hand to see why"
    return HostUnreachable(host, Reason.other, f"host {where}: ssh failed: {said}", last)


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None
