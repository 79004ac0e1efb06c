"""Dashboard defences that only a browser test used to notice, checked over HTTP in
process: the Referer fallback when Origin is absent, logout's CSRF check, the pause after
a wrong login, and the redaction (or withholding) of a service's log tail.

A real controller (git, SQLite) stands behind the real application; it runs no lab. The
log-tail tests hand the dashboard a catalog the way the controller does (its "catalog"
step) and put a log where the controller keeps them."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from blumeops.engine.controller import Controller
from blumeops.lab.loader import load_lab
from blumeops.secrets.vault import Vault
from blumeops.server.app import create_app
from blumeops.server.auth import reads_need_token
from blumeops.server.context import ApiSettings
from blumeops.server.dashboard import pages
from blumeops.server.dashboard.sessions import same_origin
from blumeops.server.hosts import host_rules
from server.serverlab import TOKEN, make_controller

OFF = "http://192.0.2.1:7300"  # a documentation address: the app runs in process only
HOST = "192.0.2.1:7300"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CANARY = "canary-log-tail-9f3c1d-never-shown"


@pytest.fixture(name="controller")
def controller_fixture(tmp_path: Path) -> Iterator[Controller]:
    ctl = make_controller(tmp_path)
    ctl.source.fetch()
    yield ctl
    ctl.stop()


def app_for(ctl: Controller, host: str = "192.0.2.1") -> Starlette:
    settings = ApiSettings(token=TOKEN, webhook_secret="", hosts=host_rules((host, 7300)),
                           reads_need_token=reads_need_token(host))
    return create_app(ctl, settings)


def client(ctl: Controller, host: str = "192.0.2.1",
           app: Starlette | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app or app_for(ctl, host)),
                             base_url=f"http://{host}:7300")


async def logged_in(c: httpx.AsyncClient) -> str:
    """Log in; the CSRF token of the session."""
    r = await c.post("/login", data={"token": TOKEN}, headers={"Origin": OFF})
    assert r.status_code == 303, r.text
    page = (await c.get("/")).text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


# -- Referer, when Origin is absent ------------------------------------------------------

@pytest.mark.parametrize("referer", [OFF, OFF + "/", OFF + "/history",
                                     "https://" + HOST + "/service/web"])
def test_a_referer_of_this_dashboard_is_same_origin(referer: str) -> None:
    assert same_origin(None, referer, HOST)


@pytest.mark.parametrize("referer", [
    "http://evil.example/", "http://evil.example/" + HOST,
    OFF + "0/",  # another port that starts with ours
    OFF + ".evil.example/",  # a host that starts with ours
    OFF + "@evil.example/", OFF + "?x", "ftp://" + HOST + "/", "", "null"])
def test_a_referer_of_another_site_is_refused(referer: str) -> None:
    assert not same_origin(None, referer, HOST)


def test_actions_without_origin_go_by_the_referer(controller: Controller) -> None:
    async def run() -> None:
        async with client(controller) as c:
            csrf = await logged_in(c)
            controller.set_paused(True)
            for bad in ("http://evil.example/history", OFF + ".evil.example/",
                        OFF + "0/history", "null"):
                r = await c.post("/actions/resume", data={"csrf": csrf},
                                 headers={"Referer": bad})
                assert r.status_code == 403, bad
                assert controller.state.paused, bad
            r = await c.post("/actions/resume", data={"csrf": csrf})  # neither header
            assert r.status_code == 403 and controller.state.paused
            r = await c.post("/actions/resume", data={"csrf": csrf},
                             headers={"Referer": OFF + "/service/web"})
            assert r.status_code == 303 and not controller.state.paused

    asyncio.run(run())


# -- logout -------------------------------------------------------------------------------

def test_logout_needs_the_sessions_csrf_token(controller: Controller) -> None:
    async def run() -> None:
        async with client(controller) as c:
            csrf = await logged_in(c)
            ours = {"Origin": OFF}
            for form in ({}, {"csrf": ""}, {"csrf": "wrong"}):
                r = await c.post("/logout", data=form, headers=ours)
                assert r.status_code == 403, form
                # Still logged in: a page off loopback is shown, not the login redirect.
                assert (await c.get("/")).status_code == 200, form
            r = await c.post("/logout", data={"csrf": csrf},
                             headers={"Origin": "http://evil.example"})
            assert r.status_code == 403
            assert (await c.get("/")).status_code == 200
            r = await c.post("/logout", data={"csrf": csrf}, headers=ours)
            assert r.status_code == 303
            page = await c.get("/")
            assert page.status_code == 303 and page.headers["location"] == "/login"

    asyncio.run(run())


# -- the pause after a wrong login --------------------------------------------------------

def test_a_wrong_login_costs_the_guesser_a_pause(controller: Controller) -> None:
    """A lower bound only: the pause can be longer on a loaded machine, never shorter."""
    async def run() -> None:
        async with client(controller) as c:
            started = time.monotonic()
            r = await c.post("/login", data={"token": "guess"}, headers={"Origin": OFF})
            assert r.status_code == 401 and "set-cookie" not in r.headers
            assert time.monotonic() - started >= pages.WRONG_LOGIN_PAUSE_S

    assert pages.WRONG_LOGIN_PAUSE_S >= 0.5
    asyncio.run(run())


# -- the log tail on a service's page -----------------------------------------------------

def demo_copy(root: Path) -> Path:
    lab = root / "lab"
    shutil.copytree(EXAMPLES / "demo", lab)
    for name in ("vault.age", "vault.recipients"):
        (lab / name).unlink(missing_ok=True)
    return lab


def service_page_log(ctl: Controller, lab_dir: Path) -> str:
    """The api service's page, after the dashboard was told of the catalog in `lab_dir`
    and api's log holds the canary."""
    result = load_lab(lab_dir / "lab.yaml")
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    logs = ctl.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "api.log").write_text(f"starting\ntoken is {CANARY}\nlistening\n")

    app = app_for(ctl, "127.0.0.1")  # loopback: reads are open
    app.state.dashboard.view.listen("catalog", {"commit": None, "lab": result.lab,
                                                "lab_dir": str(lab_dir)})

    async def run() -> str:
        async with client(ctl, "127.0.0.1", app) as c:
            r = await c.get("/service/api")
            assert r.status_code == 200, r.text
            return r.text

    return asyncio.run(run())


def test_the_log_tail_is_redacted(controller: Controller, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUMEOPS_AGE_KEY", str(tmp_path / "age.key"))
    lab = demo_copy(tmp_path)
    Vault(lab).set("demo/api-token", CANARY)
    html = service_page_log(controller, lab)
    assert CANARY not in html
    assert "token is [redacted]" in html and "listening" in html


def test_the_log_tail_is_withheld_when_secrets_cannot_be_resolved(
        controller: Controller, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUMEOPS_AGE_KEY", str(tmp_path / "age.key"))
    lab = demo_copy(tmp_path)
    Vault(lab).set("other/name", "x")  # a vault, but without api's secret
    html = service_page_log(controller, lab)
    assert CANARY not in html and "listening" not in html
    assert "withheld: the lab&#39;s secrets could not be resolved" in html, html
