"""The agent ops the engine's remote drivers use: list, read, xmlrpc (a real
supervisord), http over a unix socket, probe and spawn; in-process and on python3.9."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshhost import python39

from blumeops.transports import agent
from blumeops.transports.local import LocalTransport


@pytest.fixture(params=["in-process", "python3.9"])
def local(request: pytest.FixtureRequest) -> Iterator[LocalTransport]:
    if request.param == "in-process":
        yield LocalTransport("here")
    else:
        yield LocalTransport("here", python=python39())


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


IDENTIFIER = "hé & <bo> \"ok\""


@pytest.fixture
def supervisord(short_dir: Path) -> Iterator[Path]:
    with _supervisord(short_dir) as sock:
        yield sock


@contextlib.contextmanager
def _supervisord(short_dir: Path) -> Iterator[Path]:
    """A real supervisord on a unix socket, running one program; yields the socket."""
    sock = short_dir / "s.sock"
    conf = short_dir / "supervisord.conf"
    conf.write_text(
        f"[unix_http_server]\nfile={sock}\n[supervisord]\nlogfile={short_dir}/sd.log\n"
        f"pidfile={short_dir}/sd.pid\nidentifier={IDENTIFIER}\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        "[program:sleeper]\ncommand=sleep 300\nstartsecs=0\n", encoding="utf-8")
    supervisord = str(Path(sys.executable).parent / "supervisord")
    proc = subprocess.Popen([supervisord, "-n", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    here = LocalTransport("here")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            got = here.call({"op": "xmlrpc", "socket": str(sock),
                             "calls": [["supervisor.getProcessInfo", ["sleeper"]]]})
            if got.get("results", [{}])[0].get("value", {}).get("statename") == "RUNNING":
                break
            time.sleep(0.1)
        yield sock
    finally:
        here.call({"op": "xmlrpc", "socket": str(sock), "calls": [["supervisor.shutdown", []]]})
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_xmlrpc_speaks_to_a_real_supervisord(local: LocalTransport, short_dir: Path) -> None:
    assert local.call({"op": "xmlrpc", "socket": str(short_dir / "s.sock"),
                       "calls": [["supervisor.getState", []]]})["down"]
    # Lean calls (getState, getProcessInfo) and a full one (readLog) in one request.
    with _supervisord(short_dir) as sock:
        got = local.call({"op": "xmlrpc", "socket": str(sock), "calls": [
            ["supervisor.getState", []], ["supervisor.getProcessInfo", ["nope"]],
            ["supervisor.getAllProcessInfo", []]]})
        results = got["results"]
        assert isinstance(results, list)
        assert results[0] == {"value": {"statecode": 1, "statename": "RUNNING"}}
        assert "BAD_NAME" in results[1]["fault"]  # one call's fault, not the batch's
        assert [p["name"] for p in results[2]["value"]] == ["sleeper"]
        mixed = local.call({"op": "xmlrpc", "socket": str(sock), "calls": [
            ["supervisor.getState", []], ["supervisor.readLog", [0, 10]]]})
        assert mixed["results"][0] == results[0]
        assert isinstance(mixed["results"][1]["value"], str)


def _direct(sock: Path, method: str, args: list[str]) -> dict[str, object]:
    """The same call made by xmlrpc.client itself, in the test process."""
    proxy = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixXMLRPC(sock))
    try:
        return {"value": _steady(getattr(proxy, method)(*args))}
    except xmlrpc.client.Fault as exc:
        return {"fault": str(exc.faultString)}


class _UnixXMLRPC(xmlrpc.client.Transport):
    def __init__(self, sock: Path) -> None:
        super().__init__()
        self.sock = sock

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        sock_path = str(self.sock)

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(sock_path)

        return Conn("localhost")


def _steady(value: object) -> object:
    """Drops what the clock changes in process info ("now", and "description" with its
    uptime), so two calls a second apart compare."""
    if isinstance(value, list):
        return [_steady(v) for v in value]
    if isinstance(value, dict):
        return {k: _steady(v) for k, v in value.items() if k not in ("now", "description")}
    return value


LEAN_CALLS: list[tuple[str, list[str]]] = [
    ("supervisor.getState", []), ("supervisor.getIdentification", []),
    ("supervisor.getAllProcessInfo", []), ("supervisor.getProcessInfo", ["sleeper"]),
    ("supervisor.getProcessInfo", ["nöpe & <x> ]]>"]), ("supervisor.getAPIVersion", []),
    ("system.listMethods", []),
]


def test_lean_xmlrpc_gives_what_xmlrpc_client_gives(local: LocalTransport,
                                                    supervisord: Path) -> None:
    want = [_direct(supervisord, m, a) for m, a in LEAN_CALLS]
    assert want[1] == {"value": IDENTIFIER}
    assert want[4] == {"fault": "BAD_NAME: nöpe & <x> ]]>"}
    assert isinstance(want[2]["value"], list) and want[2]["value"][0]["pid"] > 0
    got = local.call({"op": "xmlrpc", "socket": str(supervisord),
                      "calls": [[m, a] for m, a in LEAN_CALLS]})
    assert [_steady(r) for r in got["results"]] == want
    assert got["results"][2]["value"][0]["description"].startswith("pid ")
    # In-process, the lean path itself (no fallback to xmlrpc.client) gives the same.
    lean = agent._xmlrpc_lean(str(supervisord), 10, [[m, a] for m, a in LEAN_CALLS])
    assert [_steady(r) for r in lean["results"]] == want


def test_lean_parser_decodes_every_type_as_xmlrpc_client_does() -> None:
    value = {"s": "é & <b> ]]> \"q\"", "i": -7, "big": 2**31 - 1, "t": True, "f": False,
             "d": 1.5, "n": None, "a": [1, ["x", {}], []], "empty": "",
             "nested": {"k": [{"v": 0}]}}
    body = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True)
    assert agent.parse_method_response(body.encode()) == {
        "value": xmlrpc.client.loads(body, use_builtin_types=True)[0][0]}
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(2, "BAD & <é>"), methodresponse=True)
    assert agent.parse_method_response(fault.encode()) == {"fault": "BAD & <é>"}
    typed = (b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
             b"<value>bare &amp; untyped</value><value><i4>3</i4></value>"
             b"<value><i8>1099511627776</i8></value><value><double>-2.5e3</double></value>"
             b"<value><string/></value></data></array></value></param></params>"
             b"</methodResponse>")
    assert agent.parse_method_response(typed) == {
        "value": xmlrpc.client.loads(typed.decode())[0][0]}
    assert agent.parse_method_response(typed)["value"] == ["bare & untyped", 3, 2**40, -2500.0, ""]
    other = xmlrpc.client.dumps((xmlrpc.client.DateTime(0),), methodresponse=True)
    with pytest.raises(agent._NotLean):  # unknown to the lean parser: the full path answers
        agent.parse_method_response(other.encode())


def test_observe_path_imports_neither_http_client_nor_xmlrpc_client(
        supervisord: Path) -> None:
    py39 = python39()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    req = {"op": "batch", "ops": [
        {"op": "observe", "paths": [], "ports": [["127.0.0.1", port]], "pidfiles": [],
         "supervisor_socket": str(supervisord)},
        {"op": "xmlrpc", "socket": str(supervisord),
         "calls": [["supervisor.getAllProcessInfo", []]]},
        {"op": "probe", "kind": "http", "host": "127.0.0.1", "port": port, "path": "/h"}]}
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import agent; "
            "r = agent.handle(json.loads(sys.argv[2]), None); "
            "print(json.dumps([r, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('http', 'xmlrpc', 'email') or m == 'encodings.idna')]))")
    try:
        out = subprocess.run([py39, "-I", "-S", "-c", code, str(Path(agent.__file__).parent),
                              json.dumps(req)], check=True, capture_output=True, text=True)
    finally:
        server.shutdown()
        server.server_close()
    result, modules = json.loads(out.stdout)
    observed, rpc, probed = result["results"]
    assert observed["ports"] == [["127.0.0.1", port, True]]
    assert observed["facts"]["managers"]["supervisor"]["running"] is True
    assert [p["name"] for p in rpc["results"][0]["value"]] == ["sleeper"]
    assert probed == {"ok": True, "detail": "GET /h -> 200"}
    assert modules == []


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = self.path.removeprefix("/status/")
        self._answer(int(code) if code.isdigit() else 200, f"GET {self.path}".encode())

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
        for code, healthy in ((302, True), (404, False), (503, False)):
            got = local.call({"op": "probe", "kind": "http", "host": "127.0.0.1",
                              "port": port, "path": f"/status/{code}", "timeout": 2})
            assert got == {"ok": healthy, "detail": f"GET /status/{code} -> {code}"}
        assert local.call({"op": "probe", "kind": "tcp", "host": "127.0.0.1",
                           "port": port})["ok"] is True
    finally:
        server.shutdown()
        server.server_close()
    down = local.call({"op": "probe", "kind": "http", "host": "127.0.0.1", "port": port,
                       "path": "/", "timeout": 1})
    assert down["ok"] is False and "Connection refused" in down["detail"]


def test_probe_of_a_server_that_hangs_up_or_speaks_no_http(local: LocalTransport) -> None:
    for reply in (b"", b"SSH-2.0-OpenSSH\r\n"):
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve(listener: socket.socket = listener, reply: bytes = reply) -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.sendall(reply)
            conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            got = local.call({"op": "probe", "kind": "http", "host": "127.0.0.1",
                              "port": port, "path": "/", "timeout": 2})
        finally:
            thread.join(5)
            listener.close()
        assert got["ok"] is False
        assert got["detail"].startswith(f"GET http://127.0.0.1:{port}/: ")


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
