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


def test_a_signal_delivered_to_another_thread_still_stops_the_controller(
        tmp_path: Path) -> None:
    """The kernel may hand a process-directed SIGTERM to any thread; Python runs the handler
    only in the main thread. Aim it at a worker thread (tgkill) to make that case certain."""
    import ctypes
    import os

    proc = start_controller(tmp_path)
    pid = proc.proc.pid

    def catches_sigterm() -> bool:  # the kernel's view: a handler is installed
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
        return False

    deadline = time.monotonic() + 30
    while not catches_sigterm():
        assert time.monotonic() < deadline, "the controller never installed its handler"
        time.sleep(0.02)
    workers = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    assert workers, "the controller runs its loop and server on threads"
    libc = ctypes.CDLL(None, use_errno=True)
    sys_tgkill = 234  # x86_64; aarch64 is 131
    if os.uname().machine in ("aarch64", "arm64"):
        sys_tgkill = 131
    assert libc.syscall(sys_tgkill, pid, workers[0], signal.SIGTERM) == 0
    start = time.monotonic()
    while proc.proc.poll() is None and time.monotonic() - start < 10:
        time.sleep(0.05)
    took = time.monotonic() - start
    err = proc.stop(signal.SIGKILL, timeout=10) if proc.proc.poll() is None else ""
    assert proc.proc.returncode == 0, (took, err)
    assert took < 8, took
