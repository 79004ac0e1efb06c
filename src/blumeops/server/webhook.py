"""POST /api/webhook: a forge says a branch moved.

The signature is checked over the raw body before anything parses it (see
source/webhooks.py). A signed push for the followed repository and branch wakes the
controller; anything else is acknowledged (202) and changes nothing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from blumeops.server.context import ApiContext, endpoint
from blumeops.server.jsonbody import check_depth
from blumeops.server.limits import read_body
from blumeops.server.responses import ApiError, json_response
from blumeops.source.webhooks import MAX_BODY, WebhookError, parse_push, verify


async def webhook(request: Request, ctx: ApiContext) -> Response:
    controller = ctx.controller
    counted = controller.metrics.webhooks
    try:
        body = await read_body(request, MAX_BODY)
        headers = dict(request.headers.items())
        verify(headers, body, ctx.settings.webhook_secret)
        check_depth(body, ctx.settings.limits.max_json_depth)
        event = parse_push(headers, body)
    except ApiError as exc:
        counted.labels(result="too_large" if exc.status == 413 else "bad_request").inc()
        raise
    except WebhookError as exc:
        counted.labels(result={401: "unauthorized"}.get(exc.status, "bad_request")).inc()
        raise ApiError(exc.status, str(exc)) from None
    if event is None:
        counted.labels(result="ignored").inc()
        return json_response(202, {"accepted": False, "reason": "not a push event"})
    branch = controller.config.branch
    if event.branch != branch:
        counted.labels(result="ignored").inc()
        return json_response(202, {"accepted": False,
                                   "reason": f"push to {event.branch}, following {branch}"})
    if not controller.source.repo_matches(event.repository):
        counted.labels(result="ignored").inc()
        return json_response(202, {"accepted": False, "reason": "push to another repository"})
    counted.labels(result="accepted").inc()
    controller.wake()
    return json_response(202, {"accepted": True, "commit": event.after})


ROUTES = [Route("/api/webhook", endpoint(webhook), methods=["POST"])]
