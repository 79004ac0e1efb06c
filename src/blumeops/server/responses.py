"""The API's one answer format: indented JSON, and `{"error": ...}` for refusals.

Kept byte-for-byte as clients (the CLI, scripts, the tests) have always seen it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

JSON = "application/json"


class ApiError(Exception):
    """A request to refuse: `status` is the HTTP status, `message` says why."""

    def __init__(self, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(data, indent=2, default=str).encode() + b"\n"
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def error_response(exc: ApiError) -> Response:
    return json_response(exc.status, {"error": exc.message}, exc.headers)


def error_body(status: int, message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of an error answered below Starlette (raw ASGI middleware)."""
    body = json.dumps({"error": message}, indent=2).encode() + b"\n"
    return [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")], body
