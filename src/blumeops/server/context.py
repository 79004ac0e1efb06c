"""What every handler needs: the controller it serves and the server's settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from blumeops.server.auth import FailedLogins, require_token
from blumeops.server.hosts import HostRule
from blumeops.server.limits import DEFAULT_LIMITS, Limits
from blumeops.server.responses import ApiError, error_response, json_response

if TYPE_CHECKING:
    from blumeops.engine.controller import Controller


@dataclass(frozen=True)
class ApiSettings:
    token: str  # BLUMEOPS_API_TOKEN ("" : changing endpoints refuse everyone)
    webhook_secret: str  # BLUMEOPS_WEBHOOK_SECRET ("" : webhooks get 503)
    reads_need_token: bool  # true unless the server listens on loopback
    hosts: tuple[HostRule, ...]
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class ApiContext:
    controller: Controller
    settings: ApiSettings
    failures: FailedLogins = field(init=False)  # wrong tokens, across connections

    def __post_init__(self) -> None:
        limits = self.settings.limits
        object.__setattr__(self, "failures",
                           FailedLogins(limits.failed_logins, limits.failed_logins_per_s))

    def authorise(self, request: Request) -> None:
        require_token(request.headers.get("authorization", ""), self.settings.token,
                      client_of(request), self.failures)

    def authorise_read(self, request: Request) -> None:
        if self.settings.reads_need_token:
            self.authorise(request)


def client_of(request: Request) -> str:
    return request.client.host if request.client else ""


Handler = Callable[[Request, ApiContext], Awaitable[Response]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint from `handler(request, context)`: refusals become their
    `{"error": ...}` answer, and a bug a 500 that says what failed (never a dropped
    connection)."""

    async def run(request: Request) -> Response:
        context = request.app.state.context
        assert isinstance(context, ApiContext)
        try:
            return await handler(request, context)
        except ApiError as exc:
            return error_response(exc)
        except Exception as exc:  # report, never crash the connection
            return json_response(500, {"error": f"{type(exc).__name__}: {exc}"})

    run.__name__ = handler.__name__
    return run
