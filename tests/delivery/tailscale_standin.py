"""A stand-in for Tailscale's policy-file API on 127.0.0.1 (there is no Tailscale control
server here). It plays the documented behaviour blumeops relies on:

- GET  /api/v2/tailnet/-/acl           the policy (HuJSON text) with an ETag header
- POST /api/v2/tailnet/-/acl           replace it; `If-Match` must be the current ETag,
                                       else 412 Precondition Failed
- POST /api/v2/tailnet/-/acl/validate  400 {"message": ...} for a policy that does not
                                       parse; 200 {} when it does
- POST /api/v2/oauth/token             client credentials -> {"access_token": ...}

Every request needs `Authorization: Bearer KEY` (401 otherwise). It records what it was
sent, so tests can assert what reached the wire.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

DEFAULT_POLICY = '// Example/default ACLs\n{\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],\n}\n'  # noqa: E501


@dataclass
class StandIn:
    key: str
    oauth: tuple[str, str] | None = None
    text: str = DEFAULT_POLICY
    version: int = 1
    posts: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    @property
    def etag(self) -> str:
        return f'"policy-v{self.version}"'

    def console_edit(self, text: str) -> None:
        """What an edit in the admin console does: new text, new ETag."""
        self.text = text
        self.version += 1


def _parses(text: str) -> str | None:
    """None when the HuJSON parses (comments and trailing commas allowed), else why."""
    stripped = re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE)
    stripped = re.sub(r",(\s*[}\]])", r"\1", stripped)
    try:
        data = json.loads(stripped)
    except ValueError as exc:
        return f"line {exc.lineno if hasattr(exc, 'lineno') else '?'}: {exc}"
    if not isinstance(data, dict):
        return "policy must be an object"
    return None


def _handler(api: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: str, ctype: str = "application/json",
                   etag: str | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if etag:
                self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> str:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length).decode() if length else ""

        def _record(self, body: str) -> None:
            api.requests.append({"method": self.command, "path": self.path,
                                 "headers": dict(self.headers.items()), "body": body})

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {api.key}":
                return True
            self._reply(401, json.dumps({"message": "API token invalid"}))
            return False

        def do_GET(self) -> None:
            self._record("")
            if not self._authorized():
                return
            if self.path == "/api/v2/tailnet/-/acl":
                self._reply(200, api.text, "application/hujson", api.etag)
            else:
                self._reply(404, json.dumps({"message": "not found"}))

        def do_POST(self) -> None:
            body = self._body()
            self._record(body)
            if self.path == "/api/v2/oauth/token":
                form = {k: v[0] for k, v in parse_qs(body).items()}
                if api.oauth and (form.get("client_id"), form.get("client_secret")) == api.oauth:
                    self._reply(200, json.dumps({"access_token": api.key,
                                                 "token_type": "Bearer", "expires_in": 3600}))
                else:
                    self._reply(401, json.dumps({"message": "invalid client credentials"}))
                return
            if not self._authorized():
                return
            if self.path == "/api/v2/tailnet/-/acl/validate":
                problem = _parses(body)
                if problem:
                    self._reply(400, json.dumps({"message": f"parsing policy: {problem}"}))
                else:
                    self._reply(200, "{}")
            elif self.path == "/api/v2/tailnet/-/acl":
                match = self.headers.get("If-Match")
                if match is not None and match != api.etag:
                    self._reply(412, json.dumps({"message": "precondition failed, invalid "
                                                            "old hash"}))
                    return
                problem = _parses(body)
                if problem:
                    self._reply(400, json.dumps({"message": f"parsing policy: {problem}"}))
                    return
                api.text = body
                api.version += 1
                api.posts += 1
                self._reply(200, api.text, "application/hujson", api.etag)
            else:
                self._reply(404, json.dumps({"message": "not found"}))

    return Handler


@contextmanager
def tailscale_stand_in(key: str, oauth: tuple[str, str] | None = None) -> Iterator[StandIn]:
    api = StandIn(key, oauth)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
