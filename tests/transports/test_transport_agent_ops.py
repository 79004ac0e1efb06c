"""The agent ops the engine's remote drivers use: list, read, xmlrpc (a real
supervisord), http over a unix socket, probe and spawn; in-process and on python3.9."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshhost import PY39

from blumeops.transports.local import LocalTransport


@pytest.fixture(params=["in-process", "python3.9"])
def local(request: pytest.FixtureRequest) -> Iterator[LocalTransport]:
    if request.param == "in-process":
        yield LocalTransport("here")
    elif PY39 is None:
        pytest.skip("needs pyenv python3.9")
    else:
        yield LocalTransport("here", python=PY39)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path: unix sockets must fit sun_path."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="bo-ops-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_list_hashes_matching_files_and_read_returns_text(local: LocalTransport,
                                                          tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("A\n")
    (tmp_path / "b.txt").write_text("B\n")
    (tmp_path / ".hidden.conf").write_text("H\n")
    (tmp_path / "dir.conf").mkdir()
    got = local.call({"op": "list", "dir": str(tmp_path), "suffix": ".conf"})
    assert got == {"files": {"a": hashlib.sha256(b"A\n").hexdigest()}}
    assert local.call({"op": "list", "dir": str(tmp_path / "none"), "suffix": ""}) == {
        "files": {}}
    read = local.call({"op": "read", "paths": [str(tmp_path / "a.conf"),
                                               str(tmp_path / "gone")]})
    assert read["contents"] == {str(tmp_path / "a.conf"): "A\n", str(tmp_path / "gone"): None}


def test_xmlrpc_speaks_to_a_real_supervisord(local: LocalTransport, short_dir: Path) -> None:
    sock = short_dir / "s.sock"
    assert local.call({"op": "xmlrpc", "socket": str(sock),
                       "calls": [["supervisor.getState", []]]})["down"]
    conf = short_dir / "supervisord.conf"
    conf.write_text(
        f"[unix_http_server]\nfile={sock}\n[supervisord]\nlogfile={short_dir}/sd.log\n"
        f"pidfile={short_dir}/sd.pid\nnodaemon=false\n[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n")
    supervisord = str(Path(sys.executable).parent / "supervisord")
    subprocess.run([supervisord, "-c", str(conf)], check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while not (short_dir / "sd.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int((short_dir / "sd.pid").read_text())
    try:
        deadline = time.monotonic() + 10
        got: dict[str, object] = {}
        while time.monotonic() < deadline:
            got = local.call({"op": "xmlrpc", "socket": str(sock), "calls": [
                ["supervisor.getState", []], ["supervisor.getProcessInfo", ["nope"]],
                ["supervisor.getAllProcessInfo", []]]})
            if "results" in got:
                break
            time.sleep(0.1)
        results = got["results"]
        assert isinstance(results, list)
        assert results[0] == {"value": {"statecode": 1, "statename": "RUNNING"}}
        assert "BAD_NAME" in results[1]["fault"]  # one call's fault, not the batch's
        assert results[2] == {"value": []}
    finally:
        local.call({"op": "xmlrpc", "socket": str(sock), "calls": [["supervisor.shutdown", []]]})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer(200, f"GET {self.path}".encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"] or 0))
        self._answer(201, b"POST " + body)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _UnixHTTP(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock, _ = super().get_request()
        return sock, ("local", 0)


def test_http_over_a_unix_socket(local: LocalTransport, short_dir: Path) -> None:
    path = short_dir / "admin.sock"
    assert "down" in local.call({"op": "http", "socket": str(path), "method": "GET",
                                 "path": "/config/", "body": None})
    server = _UnixHTTP(str(path), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = local.call({"op": "http", "socket": str(path), "method": "GET",
                          "path": "/config/", "body": None})
        assert got == {"status": 200, "body": "GET /config/"}
        body = b'{"apps": {}}'
        got = local.call({"op": "http", "socket": str(path), "method": "POST",
                          "path": "/load", "body": len(body)}, [body])
        assert got == {"status": 201, "body": 'POST {"apps": {}}'}
    finally:
        server.shutdown()
        server.server_close()


def test_probe_http_and_tcp_from_the_host(local: LocalTransport) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ok = local.call({"op": "probe", "kind": "http", "host": "127.0.0.1", "port": port,
                         "path": "/healthz", "timeout": 2})
        assert ok == {"ok": True, "detail": "GET /healthz -> 200"}
        assert local.call({"op": "probe", "kind": "tcp", "host": "127.0.0.1",
                           "port": port})["ok"] is True
    finally:
        server.shutdown()
        server.server_close()
    down = local.call({"op": "probe", "kind": "http", "host": "127.0.0.1", "port": port,
                       "path": "/", "timeout": 1})
    assert down["ok"] is False and "Connection refused" in down["detail"]


def test_spawn_starts_a_detached_process_logging_to_a_file(local: LocalTransport,
                                                           tmp_path: Path) -> None:
    log = tmp_path / "logs" / "x.log"
    code = "import os, sys, time; print(os.environ['MARK'], flush=True); time.sleep(30)"
    got = local.call({"op": "spawn", "argv": [sys.executable, "-c", code],
                      "env": {"MARK": "spawned"}, "cwd": str(tmp_path), "log": str(log)})
    pid = int(got["pid"])
    try:
        deadline = time.monotonic() + 10
        while "spawned" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert os.getsid(pid) == pid  # its own session: outlives the SSH channel
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_a_failed_read_only_op_in_a_batch_answers_for_itself(local: LocalTransport,
                                                             tmp_path: Path) -> None:
    got = local.call({"op": "batch", "ops": [
        {"op": "list", "dir": "relative/path"},
        {"op": "list", "dir": str(tmp_path)}]})
    assert got["results"][0]["error"] == "bad-request"
    assert got["results"][1] == {"files": {}}
