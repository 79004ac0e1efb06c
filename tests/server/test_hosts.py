"""Host header checking: DNS rebinding cannot read even the open endpoints."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from blumeops.engine.controller import Controller
from blumeops.server.hosts import (
    AddressError,
    HostRule,
    host_allowed,
    host_rules,
    parse_allowed_host,
    parse_listen,
)

from .serverlab import (
    SECRET,
    cli_env,
    raw_request,
    serving,
    start_controller,
    status_of,
)


@pytest.mark.parametrize("path", ["/api/status", "/api/history", "/api/events", "/metrics"])
def test_foreign_host_is_refused_on_open_reads(controller: Controller, path: str) -> None:
    with serving(controller) as server:
        resp = httpx.get(f"{server.url}{path}", headers={"Host": "evil.example"}, timeout=5)
        assert resp.status_code == 421, resp.text
        assert "evil.example" in resp.json()["error"] and "--allowed-host" in resp.json()["error"]
        port = server.address[1]
        # The same browser trick with the right port but the attacker's name.
        resp = httpx.get(f"{server.url}{path}", headers={"Host": f"evil.example:{port}"})
        assert resp.status_code == 421


def test_refused_before_any_handler_runs(controller: Controller) -> None:
    """A signed webhook under a foreign Host is not even counted: no handler ran."""
    import hashlib
    import hmac

    body = b'{"zen": "hi", "hook_id": 1}'
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with serving(controller) as server:
        resp = httpx.post(f"{server.url}/api/webhook", content=body, timeout=5,
                          headers={"Host": "evil.example", "X-Forgejo-Event": "ping",
                                   "X-Forgejo-Signature": sig})
        assert resp.status_code == 421
        assert "blumeops_webhook_requests_total{" not in httpx.get(f"{server.url}/metrics").text
        ok = httpx.post(f"{server.url}/api/webhook", content=body, timeout=5,
                        headers={"X-Forgejo-Event": "ping", "X-Forgejo-Signature": sig})
        assert ok.status_code == 202
        assert 'result="ignored"} 1.0' in httpx.get(f"{server.url}/metrics").text


def test_its_own_addresses_are_answered(controller: Controller) -> None:
    with serving(controller) as server:
        port = server.address[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                     f"[::1]:{port}"):
            resp = httpx.get(f"{server.url}/api/status", headers={"Host": host}, timeout=5)
            assert resp.status_code == 200, host
        for host in ("127.0.0.1", f"127.0.0.1:{port + 1}", "localhost", f"localhost.:{port}",
                     f"127.0.0.1.evil.example:{port}", f"{port}"):
            resp = httpx.get(f"{server.url}/api/status", headers={"Host": host}, timeout=5)
            assert resp.status_code == 421, host


def test_missing_or_doubled_host_is_refused(controller: Controller) -> None:
    with serving(controller) as server:
        port = server.address[1]
        none = raw_request(port, b"GET /api/status HTTP/1.0\r\n\r\n")
        assert status_of(none) == 421, none
        two = raw_request(port, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                b"Host: evil.example\r\n\r\n" % port)
        assert status_of(two) in (400, 421), two


def test_configured_names_are_answered(controller: Controller) -> None:
    with serving(controller, allowed_hosts=("ctl.example", "proxy.example:8443")) as server:
        def code(host: str) -> int:
            return httpx.get(f"{server.url}/api/status", headers={"Host": host}).status_code

        assert code("ctl.example") == 200
        assert code("CTL.example:7300") == 200  # a name without a port: any port
        assert code("proxy.example:8443") == 200
        assert code("proxy.example") == 421  # a name with a port: that port only
        assert code("proxy.example:8444") == 421
        assert code("other.example") == 421


def test_cli_takes_allowed_hosts_from_flag_and_env(tmp_path: Path) -> None:
    root = tmp_path
    env = cli_env(root, BLUMEOPS_ALLOWED_HOSTS="env-one.example, env-two.example:80")
    proc = start_controller(root, "--allowed-host", "flag.example", env=env)
    try:
        def code(host: str) -> int:
            return httpx.get(f"{proc.api}/api/status", headers={"Host": host}).status_code

        assert code("flag.example") == 200
        assert code("env-one.example:9999") == 200
        assert code("env-two.example") == 200  # no port in the header means 80
        assert code("nope.example") == 421
    finally:
        proc.stop()


def test_host_rules() -> None:
    rules = host_rules(("127.0.0.1", 7300), ["a.example", "[fd00::1]:80"])
    assert host_allowed("127.0.0.1:7300", rules)
    assert host_allowed("[::1]:7300", rules) and host_allowed("[0:0::1]:7300", rules)
    assert host_allowed("a.example:1234", rules)
    assert host_allowed("[fd00::1]", rules)
    for bad in ("", " ", "[::1", "a.example:", "a.example:0", "a.example:99999",
                "a.example:80:80", "a_b.example", "user@a.example", "a.example/x"):
        assert not host_allowed(bad, rules), bad
    # A specific non-loopback address answers to itself only; a wildcard to loopback.
    assert host_rules(("192.0.2.5", 80)) == (HostRule("192.0.2.5", 80),)
    assert {r.name for r in host_rules(("0.0.0.0", 80))} == {"127.0.0.1", "localhost", "::1"}


@pytest.mark.parametrize("bad", ["*", "", "a b", "http://x", "x/y", "[nope]:1", "x:0"])
def test_bad_allowed_host_is_an_error(bad: str) -> None:
    with pytest.raises(AddressError, match="allowed host"):
        parse_allowed_host(bad)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:7300") == ("127.0.0.1", 7300)
    assert parse_listen(":7300") == ("127.0.0.1", 7300)
    assert parse_listen("localhost:80") == ("127.0.0.1", 80)
    assert parse_listen("[::1]:7300") == ("::1", 7300)
    for bad in ("not an address", "127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1",
                "example.com:7300", "127.0.0.1:x", "[::1:7300"):
        with pytest.raises(AddressError, match="HOST:PORT"):
            parse_listen(bad)
