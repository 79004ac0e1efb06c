"""The dashboard in a real headless Chromium, against a controller that follows a real
repository and runs the demo lab (real supervisord, Caddy, git).

Screenshots of each page go to the test's tmp dir; with BLUMEOPS_SCREENSHOTS=1 they also
replace the ones in docs/screenshots/ that docs/dashboard.md (and the README) show.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
from controllerlab import TOKEN, Followed, wait_for
from demolab import free_port

from .conftest import DOCS_SHOTS

CANARY = "canary-Zq8uW2vK-dashboard"


def shot(page: Any, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("BLUMEOPS_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SHOTS / f"{name}.png")


def row_health(page: Any, service: str) -> str:
    return str(page.get_attribute(f"#svc-{service}", "data-health"))


def add_leaky(f: Followed) -> str:
    """A service that prints its secret to its log: the page must never show it."""
    subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(f.repo),
                    "canary/leak", "--value", CANARY], env=f.env, check=True,
                   capture_output=True)
    port = free_port()
    with (f.repo / "lab.yaml").open("a") as out:
        out.write(f"""
  leaky:
    native: box
    description: prints its secret (a canary the dashboard must redact)
    command: [sh, -c, 'echo "token is $LEAK"; exec python3 -m http.server {port} --bind 127.0.0.1']
    ports: {{http: {port}}}
    health: {{http: /}}
    secrets: {{LEAK: "vault:canary/leak"}}
""")
    return f.commit("add leaky, a service that logs its secret")


def test_dashboard_end_to_end(followed: Followed, browser: Any, tmp_path: Path) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start(0.5)
    wait_for(lambda: followed.synced(first), 60, "first sync")
    wait_for(lambda: followed.status()["health"] == "Healthy", 30, "a healthy lab")
    base = followed.api
    page = browser.new_page(viewport={"width": 1100, "height": 800})

    # Lab: every service Healthy, each URL answers through Caddy in the browser.
    page.goto(base + "/")
    services = [s["service"] for s in followed.status()["services"]]
    assert sorted(services) == ["api", "echo", "notes", "web"]
    for name in services:
        assert row_health(page, name) == "Healthy", name
    page.wait_for_selector("body[data-live='on']", state="attached")  # no eval: CSP
    shot(page, tmp_path, "lab")
    phone = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme="dark")
    phone.goto(base + "/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    shot(phone, tmp_path, "lab-phone-dark")
    phone.close()
    urls = page.eval_on_selector_all("a.url", "els => els.map(e => e.href)")
    assert len(urls) == 3, urls  # web, api, notes have routes; echo is TCP only
    other = browser.new_page()
    for url in urls:
        resp = other.goto(url)
        assert resp is not None and resp.status == 200, url
    other.close()

    # Live: a hung process turns its row Degraded and back, without a reload.
    page.evaluate("window.__noReload = 42")
    pid = int(next(s for s in followed.status()["services"] if s["service"] == "web")["pid"])
    os.kill(pid, signal.SIGSTOP)
    try:
        page.wait_for_selector("#svc-web[data-health='Degraded']", timeout=20_000)
        shot(page, tmp_path, "lab-degraded")
    finally:
        os.kill(pid, signal.SIGCONT)
    page.wait_for_selector("#svc-web[data-health='Healthy']", timeout=20_000)
    assert page.evaluate("window.__noReload") == 42

    # Topology: drawn from the catalog; a service box leads to its page.
    page.goto(base + "/topology")
    svg = page.inner_html(".svgwrap")
    for word in ("box", "web", "notes", "www.ops.localhost", "api.ops.localhost"):
        assert word in svg, word
    shot(page, tmp_path, "topology")
    page.click("svg a[href='/service/notes']")
    page.wait_for_url(base + "/service/notes")
    assert page.locator(".facts").count() == 1, page.inner_text("main")
    assert "api" in page.inner_text(".facts")  # notes needs api
    shot(page, tmp_path, "service")

    # A pushed commit appears in History with its diff; its log is redacted on the page.
    page.goto(base + "/history")
    page.evaluate("window.__noReload = 43")
    second = add_leaky(followed)
    followed.webhook(second)
    wait_for(lambda: followed.synced(second), 60, "the sync of leaky")
    page.wait_for_selector(f"article[data-commit='{second}']", timeout=10_000)
    assert page.evaluate("window.__noReload") == 43
    article = page.locator(f"article[data-commit='{second}']")
    article.locator("summary").first.click()
    text = article.inner_text()
    assert "add leaky" in text and "+  leaky:" in text, text
    shot(page, tmp_path, "history")
    wait_for(lambda: "token is" in (followed.state / "logs" / "leaky.log").read_text()
             if (followed.state / "logs" / "leaky.log").exists() else False, 20, "leaky's log")
    page.goto(base + "/service/leaky")
    assert "token is [redacted]" in page.inner_text("#log")
    for path in ("/", "/service/leaky", "/history", "/topology"):
        html = httpx.get(base + path, timeout=10).text
        assert CANARY not in html, path

    # A broken commit: History shows its file:line error, the lab keeps running.
    followed.edit("  echo:\n", "  echo:\n    bogus_key: 1\n")
    broken = followed.commit("a typo")
    line = 1 + next(i for i, t in enumerate((followed.repo / "lab.yaml").read_text()
                                             .splitlines()) if "bogus_key" in t)
    followed.webhook(broken)
    page.goto(base + "/history")
    page.wait_for_selector(f"article[data-commit='{broken}'] ul.errors", timeout=30_000)
    errors = page.inner_text(f"article[data-commit='{broken}'] ul.errors")
    assert f"lab.yaml:{line}" in errors, errors
    assert followed.status()["applied"] == second
    shot(page, tmp_path, "history-rejected")

    # Without logging in: no buttons, and the actions are refused.
    assert page.locator("#sync-now").count() == 0
    origin = {"Origin": base}
    for path, form in (("/actions/sync", {}), ("/actions/rollback", {"revision": first})):
        resp = page.request.post(base + path, form=form, headers=origin, max_redirects=0)
        assert resp.status == 401, (path, resp.status)
    assert followed.status()["paused"] is False

    # Log in (a wrong token first), then roll back and sync from the pages.
    page.goto(base + "/login")
    page.fill("input[name=token]", "wrong")
    page.click("#login")
    assert "wrong token" in page.inner_text("#login-error")
    page.fill("input[name=token]", TOKEN)
    page.click("#login")
    page.wait_for_url(base + "/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "blumeops_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"] and TOKEN not in page.content()
    page.goto(base + "/history")
    shot(page, tmp_path, "history-logged-in")
    page.click(f"article[data-commit='{first}'] button.rollback")
    wait_for(lambda: followed.synced(first), 60, "the rollback")
    assert followed.status()["paused"] is True
    page.goto(base + "/")
    page.click("#resume")
    wait_for(lambda: followed.status()["paused"] is False, 10, "resume")
    followed.edit("    bogus_key: 1\n", "")
    fixed = followed.commit("fix the typo")
    followed.webhook(fixed)
    wait_for(lambda: followed.synced(fixed), 60, "auto-sync to the fixed commit")
    syncs = len(history(followed))
    page.goto(base + "/")
    page.click("#sync-now")
    wait_for(lambda: len(history(followed)) > syncs and followed.synced(fixed), 60,
             "the sync asked for from the page")

    # A cross-site form POST, from a page on another origin in the same browser: refused.
    syncs = len(history(followed))
    evil = _serve_evil_page(base)
    try:
        page.goto(evil.url)
        page.wait_for_url(base + "/actions/rollback")
        assert "cross-site request refused" in page.inner_text("#message")
    finally:
        evil.close()
    assert followed.status()["paused"] is False
    assert len(history(followed)) == syncs and followed.status()["applied"] == fixed


def history(f: Followed) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = httpx.get(f"{f.api}/api/history", timeout=5).json()["syncs"]
    return got


class _Evil:
    def __init__(self, server: http.server.HTTPServer, thread: threading.Thread) -> None:
        self.server, self.thread = server, thread
        self.url = f"http://127.0.0.1:{server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _serve_evil_page(target: str) -> _Evil:
    """Another origin whose page auto-submits a form to the dashboard."""
    body = (f'<form id="f" method="post" action="{target}/actions/rollback">'
            '<input name="revision" value="HEAD~1"><input name="csrf" value="guess"></form>'
            '<script>document.getElementById("f").submit()</script>').encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return _Evil(server, thread)
