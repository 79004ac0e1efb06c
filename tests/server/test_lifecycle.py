"""Starting and stopping the server: clean errors, prompt graceful stops, nothing left."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from blumeops.engine.controller import Controller
from blumeops.server.serve import ApiServer, ListenError

from .serverlab import controller_cli, serving, start_controller


def test_stop_closes_the_port_and_its_threads(controller: Controller) -> None:
    """The autouse fixture fails the test if any thread the server started is left."""
    with serving(controller) as server:
        url = server.url
        for path in ("/api/status", "/api/history", "/api/events", "/metrics"):
            assert httpx.get(f"{url}{path}").status_code == 200
        kept = socket.create_connection(server.address)  # an idle client stays connected
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/status")
    kept.close()


def test_port_in_use_is_a_clear_error(controller: Controller, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: "
                                              "Address already in use"):
            ApiServer(("127.0.0.1", port), controller, "t", "s")
        cli = controller_cli(tmp_path / "cli", "--listen", f"127.0.0.1:{port}")
        _, err = cli.communicate(timeout=60)
    assert cli.returncode == 1
    assert "cannot listen on" in err and "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_controller_promptly_with_clients_attached(
        tmp_path: Path, sig: int) -> None:
    proc = start_controller(tmp_path)
    stalled = socket.create_connection(("127.0.0.1", proc.port))
    stalled.sendall(b"GET /api/status HTTP/1.1\r\n")  # half a request, never finished
    with httpx.Client() as client:  # a kept-alive idle connection
        assert client.get(f"{proc.api}/api/status").status_code == 200
        start = time.monotonic()
        err = proc.stop(sig, timeout=30)
        took = time.monotonic() - start
    stalled.close()
    assert proc.proc.returncode == 0, err
    assert "controller stopped" in err and "Traceback" not in err
    assert took < 8, took
