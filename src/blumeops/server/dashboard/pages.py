"""Dashboard routes: Lab, Topology, Service, History, login and the actions.

Reading follows the read API's rule: open when the server listens on loopback, otherwise
a logged-in session (or the bearer token) is needed. Acting always needs a session made by
logging in with the API token, the form's CSRF token and a same-origin Origin/Referer.
The API token is only ever read from the login form's body; no page or URL carries it.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from blumeops.server.auth import bearer_matches
from blumeops.server.context import ApiContext, client_of
from blumeops.server.dashboard.labview import LabView
from blumeops.server.dashboard.live import Broadcaster
from blumeops.server.dashboard.sessions import COOKIE, Session, Sessions, csrf_matches, same_origin
from blumeops.server.dashboard.topology import render_svg
from blumeops.server.limits import read_body
from blumeops.server.responses import ApiError
from blumeops.source.git import SourceError

HERE = Path(__file__).parent
MAX_FORM = 4 * 1024
WRONG_LOGIN_PAUSE_S = 0.5  # a guesser pays this per wrong token
_BACK = re.compile(r"^/(history|topology|service/[a-z0-9-]{1,63})?$")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}
_env = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True,
                   lstrip_blocks=True)


def _when(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = str(value)
    try:  # an ISO time with an offset (a job's runs): shown in UTC like the rest
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


_env.filters["when"] = _when
_env.filters["short"] = lambda c: (c or "—")[:12]


class Dashboard:
    """Per-app state: sessions, the live broadcaster and the catalog view."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.sessions = Sessions()
        self.live = Broadcaster()
        extra = tuple(v for v in (ctx.settings.token, ctx.settings.webhook_secret) if v)
        self.view = LabView(ctx.controller, extra)
        ctx.controller.listeners += [self.view.listen, self.live.publish]


def _dash(request: Request) -> Dashboard:
    dash = request.app.state.dashboard
    assert isinstance(dash, Dashboard)
    return dash


def _session(request: Request) -> Session | None:
    return _dash(request).sessions.get(request.cookies.get(COOKIE))


def _may_read(request: Request) -> bool:
    ctx = _dash(request).ctx
    if not ctx.settings.reads_need_token or _session(request) is not None:
        return True
    try:
        ctx.authorise(request)
    except ApiError:
        return False
    return True


async def page(template: str, request: Request, status: int = 200,
               **values: Any) -> HTMLResponse:
    """Render a page; the status in its header is redacted like everything else."""
    session = _session(request)
    dash = _dash(request)
    lab_status = await run_in_threadpool(_redacted_status, dash)
    body = _env.get_template(template).render(
        request=request, session=session, csrf=session.csrf if session else "",
        status=lab_status, can_act=bool(dash.ctx.settings.token), **values)
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _redacted_status(dash: Dashboard) -> dict[str, Any]:
    """The controller's status with every secret value of the lab masked: errors and
    health details may quote a service's log."""
    redact = dash.view.applied().redact
    status = dash.ctx.controller.status()
    status["last_errors"] = [{k: redact(v) if isinstance(v, str) else v
                              for k, v in e.items()} for e in status["last_errors"]]
    status["services"] = [{**s, "detail": redact(str(s.get("detail", "")))}
                          for s in status["services"]]
    status["targets"] = [{**t, "detail": redact(str(t.get("detail", "")))}
                         for t in status.get("targets", [])]
    return status


def guarded(render: Any) -> Any:
    """A reading page: redirect to the login form when reads need the token."""

    async def run(request: Request) -> Response:
        if not _may_read(request):
            return RedirectResponse("/login", 303, headers=HEADERS)
        try:
            return await render(request)  # type: ignore[no-any-return]
        except ApiError as exc:
            return await page("message.html", request, exc.status, title="Refused",
                        message=exc.message)
        except Exception as exc:  # say what failed, as the API does
            return await page("message.html", request, 500, title="Error",
                        message=f"{type(exc).__name__}: {exc}")

    run.__name__ = render.__name__
    return run


# -- pages ---------------------------------------------------------------------------------

def _services(dash: Dashboard) -> tuple[list[dict[str, Any]], Any]:
    applied = dash.view.applied()
    lab = applied.lab
    last = dash.view.last_changes()
    rows = []
    for s in dash.ctx.controller.status()["services"]:
        name = s["service"]
        svc = lab.services.get(name) if lab is not None else None
        # A Kubernetes service's health comes from its cluster: name it as one.
        where = (f"cluster {svc.kubernetes}" if svc and svc.kubernetes else
                 s.get("host") or (svc.native if svc and svc.native else ""))
        rows.append({**s, "detail": applied.redact(str(s.get("detail", ""))), "where": where,
                     "last": last.get(name)})
    return rows, applied


def _targets(dash: Dashboard) -> list[dict[str, Any]]:
    """What clusters and the tailnet report beyond services (an app-of-apps, the policy),
    with its kind in words for the page."""
    redact = dash.view.applied().redact
    words = {"argocd": "ArgoCD", "k8s": "cluster", "tailscale": "tailnet"}
    rows = []
    for t in dash.ctx.controller.status().get("targets", []):
        kind, _, where = str(t["target"]).partition("@")
        rows.append({**t, "detail": redact(str(t.get("detail", ""))),
                     "where": f"{words.get(kind, kind)} {where}"})
    return rows


@guarded
async def lab_page(request: Request) -> Response:
    rows, _ = await run_in_threadpool(_services, _dash(request))
    targets = await run_in_threadpool(_targets, _dash(request))
    return await page("lab.html", request, services=rows, targets=targets, nav="lab")


@guarded
async def topology_page(request: Request) -> Response:
    dash = _dash(request)
    applied = await run_in_threadpool(dash.view.applied)
    health = {s["service"]: s["health"] for s in dash.ctx.controller.status()["services"]}
    svg = render_svg(applied.lab, health) if applied.lab is not None else ""
    return await page("topology.html", request, svg=svg, nav="topology")


@guarded
async def service_page(request: Request) -> Response:
    dash = _dash(request)
    name = request.path_params["name"]

    def gather() -> dict[str, Any]:
        rows, applied = _services(dash)
        lab = applied.lab
        if lab is None or name not in lab.services:
            raise ApiError(404, f"no service {name!r} in the applied catalog")
        svc = lab.services[name]
        targets: dict[str, list[dict[str, str]]] = {}
        for r in applied.resources:
            if r.service == name:
                targets.setdefault(r.target, []).append(
                    {"kind": r.kind, "name": r.name, "path": r.path,
                     "body": applied.redact(r.body)})
        row = next((r for r in rows if r["service"] == name), None)
        return {
            "name": name, "svc": svc, "row": row, "targets": targets,
            "probes": [{**p, "detail": applied.redact(str(p["detail"]))}
                       for p in dash.view.probes.get(name, [])],
            "events": [{**e, "message": applied.redact(e["message"])}
                       for e in (_service_events(dash, name))],
            "log": dash.view.log_tail(name),
            "needs": list(svc.depends_on),
            "needed_by": [n for n, s in lab.services.items() if name in s.depends_on],
        }

    data = await run_in_threadpool(gather)
    return await page("service.html", request, nav="lab", **data)


def _service_events(dash: Dashboard, name: str) -> list[dict[str, Any]]:
    return [{"at": e.at, "kind": e.kind, "resource": e.resource, "message": e.message}
            for e in dash.ctx.controller.store.events(30, service=name)]


@guarded
async def history_page(request: Request) -> Response:
    dash = _dash(request)

    def gather() -> list[dict[str, Any]]:
        redact = dash.view.applied().redact
        out = []
        for s in dash.ctx.controller.history(30):
            changes = s["changes"] or {}
            out.append({**s, "errors": changes.get("errors", []) if isinstance(changes, dict)
                        else [],
                        "counts": {k: v for k, v in changes.items()
                                   if isinstance(v, int) and v} if isinstance(changes, dict)
                        else {},
                        "diff": redact(dash.view.diff(s["commit"])),
                        "plan": [{**c, "diff": redact(c["diff"])}
                                 for c in dash.view.changes.get(s["commit"], [])]})
        return out

    syncs = await run_in_threadpool(gather)
    return await page("history.html", request, syncs=syncs, nav="history")


# -- login and actions ---------------------------------------------------------------------

async def _form(request: Request) -> dict[str, str]:
    raw = await read_body(request, MAX_FORM)
    try:
        parsed = parse_qs(raw.decode("utf-8"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the form could not be read") from None
    return {k: v[0] for k, v in parsed.items()}


def _check_origin(request: Request) -> None:
    host = request.headers.get("host", "")
    if not same_origin(request.headers.get("origin"), request.headers.get("referer"), host):
        raise ApiError(403, "cross-site request refused: it did not come from this "
                            "dashboard's own pages")


async def login_form(request: Request) -> Response:
    return await page("login.html", request, nav="login")


async def login(request: Request) -> Response:
    dash = _dash(request)
    try:
        _check_origin(request)
        form = await _form(request)
    except ApiError as exc:
        return await page("login.html", request, exc.status, error=exc.message, nav="login")
    client = client_of(request)
    try:
        dash.ctx.failures.check(client)  # counted across connections, not per connection
    except ApiError as exc:
        refused = await page("login.html", request, exc.status, error=exc.message,
                             nav="login")
        refused.headers["Retry-After"] = exc.headers["Retry-After"]
        return refused
    if not bearer_matches(f"Bearer {form.get('token', '')}", dash.ctx.settings.token):
        dash.ctx.failures.failed(client)
        await asyncio.sleep(WRONG_LOGIN_PAUSE_S)  # a guesser pays time per try
        return await page("login.html", request, 401, error="wrong token", nav="login")
    session = dash.sessions.create()
    resp = RedirectResponse("/", 303, headers=HEADERS)
    resp.set_cookie(COOKIE, session.id, max_age=int(dash.sessions.ttl), httponly=True,
                    samesite="strict", path="/", secure=request.url.scheme == "https")
    return resp


async def logout(request: Request) -> Response:
    dash = _dash(request)
    session = _session(request)
    try:
        _check_origin(request)
        form = await _form(request)
        if session is None or not csrf_matches(session, form.get("csrf", "")):
            raise ApiError(403, "missing or wrong CSRF token")
    except ApiError as exc:
        return await page("message.html", request, exc.status, title="Refused", message=exc.message)
    dash.sessions.drop(session.id)
    resp = RedirectResponse("/", 303, headers=HEADERS)
    resp.delete_cookie(COOKIE, path="/")
    return resp


async def _act(request: Request) -> tuple[Dashboard, dict[str, str]]:
    """The checks every action passes: same origin, a session, its CSRF token."""
    _check_origin(request)
    session = _session(request)
    if session is None:
        raise ApiError(401, "log in with the API token first")
    form = await _form(request)
    if not csrf_matches(session, form.get("csrf", "")):
        raise ApiError(403, "missing or wrong CSRF token")
    return _dash(request), form


def action(fn: Any) -> Any:
    async def run(request: Request) -> Response:
        try:
            dash, form = await _act(request)
            message = await run_in_threadpool(fn, dash, form)
        except ApiError as exc:
            return await page("message.html", request, exc.status, title="Refused",
                        message=exc.message)
        except SourceError as exc:
            return await page("message.html", request, 400, title="Refused", message=str(exc))
        back = form.get("back", "/")
        back = back if _BACK.match(back) else "/"  # one of our pages, never elsewhere
        return RedirectResponse(f"{back}?done={message}", 303, headers=HEADERS)

    run.__name__ = fn.__name__
    return run


@action
def sync_now(dash: Dashboard, form: dict[str, str]) -> str:
    dash.ctx.controller.request_sync(None)
    return "sync"


@action
def rollback(dash: Dashboard, form: dict[str, str]) -> str:
    revision = form.get("revision", "")
    if not revision:
        raise ApiError(400, "choose a commit to roll back to")
    dash.ctx.controller.rollback(revision)
    return "rollback"


@action
def resume(dash: Dashboard, form: dict[str, str]) -> str:
    dash.ctx.controller.set_paused(False)
    return "resume"


# -- live ----------------------------------------------------------------------------------

async def events_stream(request: Request) -> Response:
    if not _may_read(request):
        return Response("log in first\n", 401, media_type="text/plain")
    live = _dash(request).live
    entry = live.open()
    if entry is None:
        return Response("too many live pages open\n", 503, media_type="text/plain",
                        headers={"Retry-After": "5"})
    return StreamingResponse(live.stream(entry), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def routes() -> list[BaseRoute]:
    return [
        Route("/", lab_page, methods=["GET"]),
        Route("/topology", topology_page, methods=["GET"]),
        Route("/service/{name:str}", service_page, methods=["GET"]),
        Route("/history", history_page, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/actions/sync", sync_now, methods=["POST"]),
        Route("/actions/rollback", rollback, methods=["POST"]),
        Route("/actions/resume", resume, methods=["POST"]),
        Route("/live", events_stream, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

