"""The token rules (issue 12): each test fails if the rule it names is mutated away.

"Off loopback" is decided from the listen address (a proxy on the same machine makes
every peer loopback, so the peer proves nothing). These tests never leave loopback: the
decision is tested as a function, on the real application configured for a non-loopback
address (driven in process, no socket), and by the startup refusal, which happens
before anything binds (the address used, 192.0.2.1, is a documentation range that no
interface here has, so even a broken refusal could not listen on it).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from blumeops.engine.controller import Controller
from blumeops.server.app import create_app
from blumeops.server.auth import bearer_matches, exposure_problem, reads_need_token
from blumeops.server.context import ApiSettings
from blumeops.server.hosts import host_rules
from blumeops.server.limits import Limits
from blumeops.server.serve import ApiServer, ListenError

from .serverlab import (
    TOKEN,
    cli_env,
    controller_cli,
    make_repo,
    raw_request,
    serving,
    status_of,
)

READS = ("/api/status", "/api/history", "/api/events", "/metrics")


def _post_raw(port: int, path: str, authorization: bytes) -> int:
    """A POST with an Authorization header sent byte for byte (httpx refuses a header
    value that ends in a space)."""
    return status_of(raw_request(port, b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                       b"Authorization: %s\r\nContent-Length: 0\r\n\r\n"
                                 % (path.encode(), port, authorization)))


@pytest.mark.parametrize("token", [TOKEN, ""])
def test_empty_bearer_token_is_refused(controller: Controller, token: str) -> None:
    """`Bearer ` with nothing after it, whether or not a token is configured (an empty
    configured token must not equal an empty given one)."""
    controller.set_paused(True)
    with serving(controller, token=token) as server:
        port = server.address[1]
        for auth in (b"Bearer ", b"Bearer", b"Bearer  ", b"bearer "):
            assert _post_raw(port, "/api/resume", auth) == 401, auth
    assert controller.state.paused is True  # nothing resumed
    assert not bearer_matches("Bearer ", "")
    assert not bearer_matches("Bearer", "")


def test_resume_needs_the_token(controller: Controller) -> None:
    controller.set_paused(True)
    with serving(controller) as server:
        url = f"{server.url}/api/resume"
        assert httpx.post(url).status_code == 401
        assert httpx.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(url, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert controller.state.paused is True
        resp = httpx.post(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200 and resp.json() == {"auto_sync": "resumed"}
        assert controller.state.paused is False


def test_wrong_token_closes_the_connection(controller: Controller) -> None:
    with serving(controller) as server:
        resp = httpx.post(f"{server.url}/api/sync", headers={"Authorization": "Bearer x"})
        assert resp.status_code == 401 and resp.headers["connection"] == "close"


def test_reads_need_the_token_off_loopback_decision() -> None:
    for host in ("127.0.0.1", "127.5.6.7", "::1", "localhost"):
        assert not reads_need_token(host), host
    for host in ("0.0.0.0", "::", "192.0.2.1", "100.64.0.1", "10.0.0.1", "::ffff:127.0.0.1",
                 "fd00::1", "example.com"):
        assert reads_need_token(host), host
        assert exposure_problem(host, "") is not None
        assert exposure_problem(host, TOKEN) is None


def test_app_configured_off_loopback_refuses_reads_without_token(
        controller: Controller) -> None:
    """The real application, configured as the server configures it for a listen
    address of 192.0.2.1:7300, driven in process (no socket)."""
    settings = ApiSettings(token=TOKEN, webhook_secret="", hosts=host_rules(
        ("192.0.2.1", 7300)), reads_need_token=reads_need_token("192.0.2.1"))
    app = create_app(controller, settings)

    async def codes(path: str) -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://192.0.2.1:7300") as client:
            return [(await client.get(path, headers=h)).status_code
                    for h in ({}, {"Authorization": "Bearer nope"},
                              {"Authorization": f"Bearer {TOKEN}"})]

    for path in READS:
        assert asyncio.run(codes(path)) == [401, 401, 200], path
    # And on loopback the same reads are open.
    with serving(controller) as server:
        for path in READS:
            assert httpx.get(f"{server.url}{path}").status_code == 200, path


def test_listening_off_loopback_without_token_is_refused(
        controller: Controller, tmp_path: Path) -> None:
    for address in ("192.0.2.1", "0.0.0.0", "::"):
        with pytest.raises(ListenError, match="needs BLUMEOPS_API_TOKEN"):
            ApiServer((address, 7300), controller, "", "secret")
    # With a token it would listen; 192.0.2.1 is not ours, so binding fails, cleanly.
    with pytest.raises(ListenError, match=r"cannot listen on 192\.0\.2\.1:7300"):
        ApiServer(("192.0.2.1", 7300), controller, TOKEN, "secret")

    root = tmp_path / "cli"
    root.mkdir()
    env = cli_env(root)
    env.pop("BLUMEOPS_API_TOKEN")
    cli = controller_cli(root, "--listen", "192.0.2.1:7300", env=env)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 1, err
    assert "needs BLUMEOPS_API_TOKEN" in err and "Traceback" not in err
    assert not (root / "state").exists()  # refused before anything started


@pytest.mark.parametrize("listen", ["not an address", "127.0.0.1:99999", "127.0.0.1:0",
                                    "example.com:7300", "[::1"])
def test_bad_listen_is_a_clear_error(tmp_path: Path, listen: str) -> None:
    repo = make_repo(tmp_path / "repo")
    result = subprocess.run([sys.executable, "-m", "blumeops", "controller", "--source",
                             str(repo), "--state-dir", str(tmp_path / "state"), "--listen",
                             listen], env=cli_env(tmp_path), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert "--listen" in result.stderr and "HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


def _post_from(source: str, url: str, token: str) -> httpx.Response:
    """A POST on a new connection from loopback address `source`."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport) as client:
        return client.post(url, headers={"Authorization": f"Bearer {token}"})


def test_wrong_tokens_are_limited_across_connections(controller: Controller) -> None:
    """Each wrong token on its own connection (401 closes it): past the allowance the
    next check is 429, even with the right token (a guess while throttled is never
    tested), until the allowance refills."""
    controller.set_paused(True)
    with serving(controller, limits=Limits(failed_logins=4, failed_logins_per_s=0.2)) as server:
        url = f"{server.url}/api/resume"
        for i in range(4):
            assert _post_from("127.0.0.1", url, f"guess-{i}").status_code == 401
        refused = _post_from("127.0.0.1", url, "guess-5")
        assert refused.status_code == 429, refused.text
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 5, wait  # one try refills in 5 s
        assert "too many wrong tokens" in refused.json()["error"]
        assert _post_from("127.0.0.1", url, TOKEN).status_code == 429
        assert controller.state.paused is True
        time.sleep(wait + 0.2)  # one more try's worth
        assert _post_from("127.0.0.1", url, TOKEN).status_code == 200
        assert controller.state.paused is False


def test_wrong_tokens_are_limited_for_the_whole_server(controller: Controller) -> None:
    """Other loopback addresses get their own allowance, but not a fresh server-wide
    one: three times the per-client allowance in all."""
    with serving(controller, limits=Limits(failed_logins=2, failed_logins_per_s=0.01)) as server:
        url = f"{server.url}/api/sync"
        for client in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            for _ in range(2):
                assert _post_from(client, url, "guess").status_code == 401
            assert _post_from(client, url, "guess").status_code == 429
        assert _post_from("127.0.0.5", url, "guess").status_code == 429


def test_login_form_guesses_share_the_limit(controller: Controller) -> None:
    """The dashboard's login form and the API's bearer token draw on one allowance."""
    with serving(controller, limits=Limits(failed_logins=3, failed_logins_per_s=0.01)) as server:
        origin = {"Origin": server.url}
        assert _post_from("127.0.0.1", f"{server.url}/api/sync", "guess").status_code == 401
        for _ in range(2):
            bad = httpx.post(f"{server.url}/login", data={"token": "nope"}, headers=origin)
            assert bad.status_code == 401
        late = httpx.post(f"{server.url}/login", data={"token": TOKEN}, headers=origin)
        assert late.status_code == 429 and "set-cookie" not in late.headers
        assert "too many wrong tokens" in late.text and late.headers["retry-after"]


def test_default_limits_refuse_guessing_after_ten_wrong_tokens(controller: Controller) -> None:
    """With the server's defaults: ten wrong tokens on ten connections, then 429 (as
    soon as the allowance, refilling at one try per 2 s, runs out)."""
    codes: list[int] = []
    with serving(controller) as server:
        url = f"{server.url}/api/sync"
        while len(codes) < 20 and 429 not in codes:
            codes.append(_post_from("127.0.0.1", url, f"guess-{len(codes)}").status_code)
    assert codes[:10] == [401] * 10 and codes[-1] == 429, codes
