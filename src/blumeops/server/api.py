"""The controller's API: status, history, events and /metrics to read; sync, rollback and
resume to act.

Acting needs `Authorization: Bearer TOKEN`; reading needs it too unless the server
listens on loopback. Anything that touches git or the state database runs in a worker
thread, so a slow fetch never stalls the other requests.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from blumeops.server.context import ApiContext, endpoint
from blumeops.server.jsonbody import parse_object
from blumeops.server.limits import read_body
from blumeops.server.responses import ApiError, json_response
from blumeops.source.git import SourceError

MAX_API_BODY = 64 * 1024
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def status(request: Request, ctx: ApiContext) -> Response:
    ctx.authorise_read(request)
    return json_response(200, ctx.controller.status())


async def history(request: Request, ctx: ApiContext) -> Response:
    ctx.authorise_read(request)
    syncs = await run_in_threadpool(ctx.controller.history, _limit(request, 50))
    return json_response(200, {"syncs": syncs})


async def events(request: Request, ctx: ApiContext) -> Response:
    ctx.authorise_read(request)
    found = await run_in_threadpool(ctx.controller.events, _limit(request, 100))
    return json_response(200, {"events": found})


async def metrics(request: Request, ctx: ApiContext) -> Response:
    ctx.authorise_read(request)
    return Response(ctx.controller.metrics.exposition(), media_type=METRICS_TYPE)


async def sync(request: Request, ctx: ApiContext) -> Response:
    ctx.authorise(request)
    data = await _json_body(request, ctx)
    revision = data.get("revision")
    if revision is not None and not isinstance(revision, str):
        raise ApiError(400, "'revision' must be a string (a commit id or ref)")
    target = await _source_call(lambda: ctx.controller.request_sync(revision))
    return json_response(202, {"syncing": target})


async def rollback(request: Request, ctx: ApiContext) -> Response:
    ctx.authorise(request)
    data = await _json_body(request, ctx)
    revision = data.get("revision")
    if not isinstance(revision, str) or not revision:
        raise ApiError(400, "body must be {\"revision\": \"COMMIT\"}")
    target = await _source_call(lambda: ctx.controller.rollback(revision))
    return json_response(202, {"rolling_back_to": target, "auto_sync": "paused"})


async def resume(request: Request, ctx: ApiContext) -> Response:
    ctx.authorise(request)
    await run_in_threadpool(ctx.controller.set_paused, False)
    return json_response(200, {"auto_sync": "resumed"})


async def _json_body(request: Request, ctx: ApiContext) -> dict[str, object]:
    raw = await read_body(request, MAX_API_BODY)
    return parse_object(raw, ctx.settings.limits.max_json_depth)


async def _source_call(fn: Callable[[], str]) -> str:
    """Resolve a revision in git (a worker thread); an unknown one is the caller's 400."""
    try:
        return str(await run_in_threadpool(fn))
    except SourceError as exc:
        raise ApiError(400, str(exc)) from None


def _limit(request: Request, default: int) -> int:
    try:
        return max(1, min(1000, int(request.query_params.get("limit", default))))
    except ValueError:
        raise ApiError(400, "limit must be a number") from None


ROUTES = [
    Route("/api/status", endpoint(status), methods=["GET"]),
    Route("/api/history", endpoint(history), methods=["GET"]),
    Route("/api/events", endpoint(events), methods=["GET"]),
    Route("/metrics", endpoint(metrics), methods=["GET"]),
    Route("/api/sync", endpoint(sync), methods=["POST"]),
    Route("/api/rollback", endpoint(rollback), methods=["POST"]),
    Route("/api/resume", endpoint(resume), methods=["POST"]),
]
