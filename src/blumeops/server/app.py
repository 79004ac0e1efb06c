"""The ASGI application: routes from small modules behind the same guards.

Outermost first: the Host check (a wrong Host is refused before anything else runs), the
body limits, then Starlette's routing. Refusals and unknown paths answer in the API's
JSON error format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from blumeops.server import api, webhook
from blumeops.server.context import ApiContext, ApiSettings
from blumeops.server.hosts import HostGuard
from blumeops.server.limits import BodyGuard
from blumeops.server.responses import json_response

if TYPE_CHECKING:
    from blumeops.engine.controller import Controller


def create_app(controller: Controller, settings: ApiSettings) -> Starlette:
    from blumeops.server.dashboard import pages  # lazy: keeps Jinja2 out of start-up

    routes: list[BaseRoute] = [*api.ROUTES, *webhook.ROUTES, *pages.routes()]
    known = sorted({r.path for r in routes if isinstance(r, Route)})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path = request.url.path
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {path}"
        elif exc.status_code == 404:
            message = f"no such endpoint {path}; try {', '.join(known)}"
        else:
            message = exc.detail
        return json_response(exc.status_code, {"error": message}, exc.headers)

    limits = settings.limits
    app = Starlette(
        routes=routes,
        middleware=[Middleware(HostGuard, rules=settings.hosts),
                    Middleware(BodyGuard, max_body=limits.max_body,
                               timeout=limits.body_timeout)],
        exception_handlers={HTTPException: http_error},
    )
    app.router.redirect_slashes = False  # /api/status/ is not an endpoint
    app.state.context = ApiContext(controller, settings)
    app.state.dashboard = pages.Dashboard(app.state.context)
    return app
