"""The dashboard's guards over HTTP, without a browser: who may read, who may act, the
Host check, body limits, and live events. A real controller (git, SQLite) stands behind
the real application; its followed commit is invalid, so no lab runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from blumeops.engine.controller import Controller
from blumeops.server.app import create_app
from blumeops.server.auth import reads_need_token
from blumeops.server.context import ApiSettings
from blumeops.server.hosts import host_rules
from blumeops.server.limits import Limits
from polling import wait_for
from server.serverlab import TOKEN, make_controller, serving

OFF = "http://192.0.2.1:7300"  # a documentation address: the app runs in process only


@pytest.fixture(name="controller")
def controller_fixture(tmp_path: Path) -> Iterator[Controller]:
    ctl = make_controller(tmp_path)
    ctl.source.fetch()
    yield ctl
    ctl.stop()


def off_loopback_client(ctl: Controller) -> httpx.AsyncClient:
    settings = ApiSettings(token=TOKEN, webhook_secret="", hosts=host_rules(
        ("192.0.2.1", 7300)), reads_need_token=reads_need_token("192.0.2.1"))
    app = create_app(ctl, settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=OFF)


def test_off_loopback_pages_need_a_login(controller: Controller) -> None:
    async def run() -> None:
        async with off_loopback_client(controller) as c:
            for path in ("/", "/topology", "/history", "/service/web"):
                r = await c.get(path)
                assert r.status_code == 303 and r.headers["location"] == "/login", path
            assert (await c.get("/live")).status_code == 401
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert (await c.get("/", headers=bearer)).status_code == 200
            # A login without Origin or from another site is refused; with ours it works.
            form = {"token": TOKEN}
            assert (await c.post("/login", data=form)).status_code == 403
            evil = {"Origin": "http://evil.example"}
            assert (await c.post("/login", data=form, headers=evil)).status_code == 403
            ours = {"Origin": OFF}
            bad = await c.post("/login", data={"token": "nope"}, headers=ours)
            assert bad.status_code == 401 and "set-cookie" not in bad.headers
            ok = await c.post("/login", data=form, headers=ours)
            assert ok.status_code == 303
            cookie = ok.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
            page = await c.get("/")
            assert page.status_code == 200 and TOKEN not in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert page.headers["x-frame-options"] == "DENY"

    asyncio.run(run())


def test_actions_need_session_csrf_and_same_origin(controller: Controller) -> None:
    async def run() -> None:
        async with off_loopback_client(controller) as c:
            ours = {"Origin": OFF}
            r = await c.post("/actions/resume", data={"csrf": "x"}, headers=ours)
            assert r.status_code == 401  # no session
            await c.post("/login", data={"token": TOKEN}, headers=ours)
            page = (await c.get("/")).text
            csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            controller.set_paused(True)
            r = await c.post("/actions/resume", data={"csrf": "wrong"}, headers=ours)
            assert r.status_code == 403 and controller.state.paused
            r = await c.post("/actions/resume", data={"csrf": csrf},
                             headers={"Origin": "http://192.0.2.1:7301"})
            assert r.status_code == 403 and controller.state.paused
            r = await c.post("/actions/resume", data={"csrf": csrf, "back": "/\\evil.example"},
                             headers={"Referer": OFF + "/history"})
            assert r.status_code == 303 and not controller.state.paused
            assert r.headers["location"] == "/?done=resume"  # never off this site
            r = await c.post("/actions/rollback", data={"csrf": csrf, "revision": "nope"},
                             headers=ours)
            assert r.status_code == 400  # an unknown commit: refused, nothing paused
            assert not controller.state.paused
            big = await c.post("/login", content=b"token=" + b"x" * 10_000,
                               headers={**ours, "Content-Type":
                                        "application/x-www-form-urlencoded"})
            assert big.status_code == 413

    asyncio.run(run())


def test_foreign_host_is_refused_on_pages(controller: Controller) -> None:
    with serving(controller) as server:
        port = server.address[1]
        for path in ("/", "/live", "/history", "/static/style.css"):
            r = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": "evil.example"},
                          timeout=5)
            assert r.status_code == 421, path
        assert httpx.get(f"{server.url}/static/style.css", timeout=5).status_code == 200


def test_live_events_arrive_and_end_on_shutdown(controller: Controller) -> None:
    """A published step reaches an open live page; the open stream does not hold the
    server's shutdown (its grace is made far longer than the wait here, so only the
    stream's own end can let the server stop in time)."""
    got: list[str] = []
    patient = Limits(shutdown_timeout=600)
    with serving(controller, limits=patient) as server:
        ready = threading.Event()

        def listen() -> None:
            with httpx.stream("GET", f"{server.url}/live", timeout=30) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    if line.startswith("retry:"):
                        ready.set()
                    if line.startswith("data:"):
                        got.append(line)

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        assert ready.wait(30)
        controller.set_paused(True)  # a step the controller publishes
        wait_for(lambda: got, 30, "the paused step on the live stream")
        assert '"kind": "paused"' in got[0]
    t.join(60)
    assert not t.is_alive()


def test_tokens_in_urls_are_masked_in_the_history_diff(tmp_path: Path) -> None:
    """A commit that wrote a token into an Apprise URL (path or query): History shows
    its diff with the tokens masked."""
    from server.serverlab import git

    ctl = make_controller(tmp_path)
    repo = tmp_path / "repo"
    (repo / "lab.yaml").write_text(
        "not_a_lab_key: 1\nnotify:\n  targets:\n"
        "    chat: {url: 'discord://4242/DiscordHookToken99'}\n"
        "    team: {url: slack://TeamTokA/TeamTokB/TeamTokC}\n"
        "    bot: {url: tgram://123456:TelegramBotToken77/-100}\n"
        "    phone: {url: 'ntfy://ntfy.sh/lab?token=tk_NtfyToken55'}\n")
    git(repo, "commit", "-qam", "chat targets")
    try:
        assert ctl.tick()  # the commit is synced (and rejected: not_a_lab_key)
        with serving(ctl) as server:
            page = httpx.get(f"{server.url}/history", timeout=10)
        assert page.status_code == 200
        assert "not_a_lab_key" in page.text  # the diff is on the page
        for token in ("DiscordHookToken99", "TeamTokA", "TelegramBotToken77",
                      "tk_NtfyToken55"):
            assert token not in page.text, token
        assert "discord://[redacted]" in page.text
        assert "ntfy://ntfy.sh/lab?token=[redacted]" in page.text
    finally:
        ctl.stop()
