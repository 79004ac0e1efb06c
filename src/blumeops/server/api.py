"""The controller's HTTP API: status, history, events, webhooks, sync, rollback, /metrics.

Endpoints that change anything need `Authorization: Bearer TOKEN`; webhooks carry their
forge's HMAC signature instead. Reading endpoints are open only when the server listens
on loopback; elsewhere they need the token too.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from blumeops.engine.controller import Controller

MAX_API_BODY = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], controller: Controller, api_token: str,
                 webhook_secret: str) -> None:
        super().__init__(address, Handler)
        self.controller = controller
        self.api_token = api_token
        self.webhook_secret = webhook_secret
        self.open_reads = is_loopback(address[0])

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="blumeops-api", daemon=True)
        thread.start()
        return thread


class Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are counted in metrics; bodies may hold secrets-adjacent data

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, indent=2, default=str).encode() + b"\n")

    def _body(self, limit: int) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if length > limit:
            # Read (and drop) nothing more: the connection closes after the answer.
            self.close_connection = True
            raise ApiError(413, f"body of {length} bytes is over the {limit}-byte limit")
        return self.rfile.read(length) if length > 0 else b""

    def _authorise(self) -> None:
        token = self.server.api_token
        if not token:
            raise ApiError(401, "no API token is configured (set BLUMEOPS_API_TOKEN); "
                                "changing endpoints are disabled")
        given = self.headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(
                given.removeprefix("Bearer ").encode(), token.encode()):
            raise ApiError(401, "missing or wrong bearer token")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        route = ROUTES.get((method, url.path))
        try:
            if route is None:
                known = sorted({p for (_, p) in ROUTES})
                if any(p == url.path for (_, p) in ROUTES):
                    raise ApiError(405, f"{method} is not allowed on {url.path}")
                raise ApiError(404, f"no such endpoint {url.path}; try {', '.join(known)}")
            route(self, parse_qs(url.query))
        except ApiError as exc:
            if exc.status == 401:
                self.close_connection = True
            self._json(exc.status, {"error": exc.message})
        except Exception as exc:  # report, never crash the server thread
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- endpoints ---------------------------------------------------------------------------

    def _read_guard(self) -> None:
        if not self.server.open_reads:
            self._authorise()

    def status(self, query: dict[str, list[str]]) -> None:
        self._read_guard()
        self._json(200, self.server.controller.status())

    def history(self, query: dict[str, list[str]]) -> None:
        self._read_guard()
        self._json(200, {"syncs": self.server.controller.history(_limit(query, 50))})

    def events(self, query: dict[str, list[str]]) -> None:
        self._read_guard()
        self._json(200, {"events": self.server.controller.events(_limit(query, 100))})

    def metrics(self, query: dict[str, list[str]]) -> None:
        self._read_guard()
        self._send(200, self.server.controller.metrics.exposition(),
                   "text/plain; version=0.0.4; charset=utf-8")

    def sync(self, query: dict[str, list[str]]) -> None:
        self._authorise()
        data = self._json_body()
        revision = data.get("revision")
        if revision is not None and not isinstance(revision, str):
            raise ApiError(400, "'revision' must be a string (a commit id or ref)")
        target = self._source_call(lambda: self.server.controller.request_sync(revision))
        self._json(202, {"syncing": target})

    def rollback(self, query: dict[str, list[str]]) -> None:
        self._authorise()
        data = self._json_body()
        revision = data.get("revision")
        if not isinstance(revision, str) or not revision:
            raise ApiError(400, "body must be {\"revision\": \"COMMIT\"}")
        target = self._source_call(lambda: self.server.controller.rollback(revision))
        self._json(202, {"rolling_back_to": target, "auto_sync": "paused"})

    def resume(self, query: dict[str, list[str]]) -> None:
        self._authorise()
        self.server.controller.set_paused(False)
        self._json(200, {"auto_sync": "resumed"})

    def webhook(self, query: dict[str, list[str]]) -> None:
        from blumeops.source.webhooks import MAX_BODY, WebhookError, parse_push, verify

        metrics = self.server.controller.metrics.webhooks
        try:
            body = self._body(MAX_BODY)
            headers = {k: v for k, v in self.headers.items()}
            verify(headers, body, self.server.webhook_secret)
            event = parse_push(headers, body)
        except ApiError as exc:
            metrics.labels(result="too_large" if exc.status == 413 else "bad_request").inc()
            raise
        except WebhookError as exc:
            metrics.labels(result={401: "unauthorized"}.get(exc.status, "bad_request")).inc()
            raise ApiError(exc.status, str(exc)) from None
        controller = self.server.controller
        if event is None:
            metrics.labels(result="ignored").inc()
            self._json(202, {"accepted": False, "reason": "not a push event"})
            return
        if event.branch != controller.config.branch:
            metrics.labels(result="ignored").inc()
            self._json(202, {"accepted": False,
                             "reason": f"push to {event.branch}, following "
                                       f"{controller.config.branch}"})
            return
        if not controller.source.repo_matches(event.repository):
            metrics.labels(result="ignored").inc()
            self._json(202, {"accepted": False, "reason": "push to another repository"})
            return
        metrics.labels(result="accepted").inc()
        controller.wake()
        self._json(202, {"accepted": True, "commit": event.after})

    def _json_body(self) -> dict[str, Any]:
        raw = self._body(MAX_API_BODY)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        return data

    @staticmethod
    def _source_call(fn: Any) -> str:
        from blumeops.source.git import SourceError

        try:
            return str(fn())
        except SourceError as exc:
            raise ApiError(400, str(exc)) from None


def _limit(query: dict[str, list[str]], default: int) -> int:
    try:
        return max(1, min(1000, int(query.get("limit", [default])[0])))
    except ValueError:
        raise ApiError(400, "limit must be a number") from None


ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/api/status"): Handler.status,
    ("GET", "/api/history"): Handler.history,
    ("GET", "/api/events"): Handler.events,
    ("GET", "/metrics"): Handler.metrics,
    ("POST", "/api/sync"): Handler.sync,
    ("POST", "/api/rollback"): Handler.rollback,
    ("POST", "/api/resume"): Handler.resume,
    ("POST", "/api/webhook"): Handler.webhook,
}

__all__ = ["ApiServer", "HTTPStatus", "is_loopback"]
