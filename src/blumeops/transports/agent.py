"""The remote half of every transport: one short-lived python3 process per round trip.

Nothing is installed on a host. Each call sends this file (compressed) and then the request
on the SSH channel's stdin; the host runs it with its own `python3` (3.9 or newer: what a
Mac ships, and what many Linux servers have), standard library only, and prints one JSON
answer. `local.py` imports the same code and calls `handle` in-process.

Wire format (stdin, after the bootstrap in `wire.py` has read the program):

    REQUEST_JSON "\\n"        one line of JSON, the request below
    BLOB BLOB ...             raw bytes, in the order the request's sizes name them

stdout: ``MARKER`` then one line of JSON, ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": CODE, "message": TEXT}``. The marker lets a chatty login
script print to stdout without breaking the answer.

Requests (``"v": 1`` in each top-level request):

``{"op": "observe", "paths": [P...], "ports": [[ADDR, PORT]...], "pidfiles": [P...],
"supervisor_socket": P | null, "timeout": SECONDS}``
    -> ``{"facts": FACTS, "files": {P: STATE}, "ports": [[ADDR, PORT, OPEN]...],
    "pidfiles": {P: PID | null}}``. FACTS: system, machine, release, hostname, python,
    user, home, synology, managers ``{systemd|launchd|supervisor: {"path", "running"}}``.
    STATE: ``{"exists", "kind" (file/dir/link/other/missing), "sha256" (files only),
    "mode", "size", "owner"}``. Contents are never sent back, only hashes.

``{"op": "put", "files": [{"path", "size", "mode", "owner"?}], "removes": [P...],
"root": P | null, "prune": BOOL?}`` + one blob per file
    -> ``{"written": [P...], "removed": [P...], "swept": [P...], "pruned": [P...]}``.
    With ``prune``, directories a removal leaves empty go too, up to (never) ``root``;
    a directory holding anything else stays. Every path is
    checked before anything changes. Each file is written to a temp file in its own
    directory (named ``.NAME.PID.RAND.blumeops-tmp``), fsynced, and renamed over the
    destination only once every file of the batch has arrived, so a dropped connection
    leaves old contents, never half of a new one. Temp files of a dead agent (its PID
    gone) are swept from the directories a batch touches. Removals must resolve (all
    symlinks followed) under ``root``; an escaping path refuses the whole batch.

``{"op": "run", "argv": [...], "env": {K: V}, "cwd": P | null, "timeout": S,
"stdin": SIZE | null}`` (+ a blob when stdin is a size)
    -> ``{"returncode", "stdout", "stderr"}``. No shell: argv is executed as given.

``{"op": "batch", "ops": [REQUEST...]}`` -> ``{"results": [RESULT...]}``: several
requests in one round trip; blobs are consumed in op order. A read-only sub-request
(observe, list, read, xmlrpc, probe, spawn, tail, index) that fails answers ``{"error":
CODE, "message": TEXT}`` in its place; the others still run.

``{"op": "list", "dir": P, "suffix": S}`` -> ``{"files": {NAME: SHA256}}``: the regular
files in P whose names end with S (NAME without S), hashed; ``{}`` when P is missing.

``{"op": "read", "paths": [P...]}`` -> ``{"contents": {P: TEXT | null}}``: for readable
diffs of files whose hash differs (never used for secret files).

``{"op": "xmlrpc", "socket": P, "calls": [[METHOD, [ARG...]]...]}`` -> ``{"results":
[{"value": V} | {"fault": TEXT}...]}`` or ``{"down": TEXT}`` when nothing answers on the
unix socket: XML-RPC (supervisord's API) over a unix socket on the host, each call
independent. Read-only getters with string arguments (observe's) skip xmlrpc.client.

``{"op": "http", "socket": P, "method": M, "path": PATH, "body": SIZE | null,
"timeout": S}`` (+ a blob when body is a size) -> ``{"status", "body"}`` or ``{"down":
TEXT}``: one HTTP request over a unix socket on the host (Caddy's admin API), so the API
is never opened on the network.

``{"op": "probe", "kind": "http" | "tcp", "host": ADDR, "port": N, "path": PATH,
"timeout": S}`` -> ``{"ok", "detail"}``: a health probe run on the host, where the
service lives. ``{"op": "probe", "kind": "command", "argv": [...], "cwd": P | null,
"timeout": S}`` runs a health command there (no shell; argv travels in the request,
never on a command line): ok when it exits 0; a timeout kills it and is not ok.

``{"op": "index", "path": P, "stat": BOOL}`` -> ``{"entries": {KEY: PATH},
"files": {PATH: STATE}}``: an index of files blumeops wrote on the host (a JSON object
it keeps beside them; ``{}`` when missing or unreadable) and, with ``stat``, the state
of each listed file: what was written earlier and is still there, in one op.

``{"op": "tail", "paths": [P...], "bytes": N, "lines": L, "redact_env": [P...],
"redact_files": [P...], "redact_index": [INDEX, PREFIX] | null}`` -> ``{"tails": {P:
TEXT | null}}``: the last L lines (read from the last N bytes) of each log. The values
in the JSON env files ``redact_env``, the files ``redact_files`` and the files an index
(see ``index``) lists under keys starting with PREFIX (a service's secrets) are masked
on the host before the text is sent back: secret values never leave the host this way.

``{"op": "jobs", "path": P}`` -> ``{"jobs": {NAME: RECORD}}``: the run records of
blumeops-scheduler on the host (its STATE/jobs/state.json: start, end, exit code, the
output's last lines with the job's secrets already masked by the scheduler); ``{}``
when there is none yet.

``{"op": "spawn", "argv": [...], "env": {K: V}, "cwd": P | null, "log": P}`` ->
``{"pid": N}``: start a long-running process in its own session, output appended to
``log``, without waiting for it.

Paths may start with ``~/``: they are expanded on the host, for the SSH user.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pwd
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

# Every round trip starts a fresh interpreter, so heavier modules (hashlib, socket,
# subprocess, threading) are imported only by the ops that need them.

MARKER = b"\n##blumeops-agent-response##\n"
TEMP_SUFFIX = ".blumeops-tmp"
CHUNK = 1 << 20


class AgentError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Blobs:
    """Reads the raw blobs that follow the request, one size at a time."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def chunks(self, size: int) -> Iterator[bytes]:
        left = size
        while left > 0:
            chunk = self.stream.read(min(CHUNK, left))
            if not chunk:
                raise AgentError("truncated", "the request ended early (connection dropped?)")
            left -= len(chunk)
            yield chunk

    def read(self, size: int) -> bytes:
        return b"".join(self.chunks(size))


def _path(raw: Any) -> str:
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise AgentError("bad-request", "a path must be a non-empty string")
    path = os.path.expanduser(raw)
    if not os.path.isabs(path):
        raise AgentError("bad-request", f"path {raw!r} is not absolute")
    return os.path.normpath(path)


# --- observe ---------------------------------------------------------------------------


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def file_state(path: str) -> dict[str, Any]:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {"exists": False, "kind": "missing"}
    kind = "other"
    digest = None
    if stat.S_ISLNK(st.st_mode):
        kind = "link"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISREG(st.st_mode):
        import hashlib

        kind = "file"
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                sha.update(chunk)
        digest = sha.hexdigest()
    return {
        "exists": True,
        "kind": kind,
        "sha256": digest,
        "mode": stat.S_IMODE(st.st_mode),
        "size": st.st_size,
        "owner": _owner(st.st_uid),
    }


def which(command: str) -> str | None:
    """shutil.which, without importing shutil."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", command)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _unix_socket_answers(path: str | None) -> bool:
    if not path:
        return False
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(os.path.expanduser(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def facts(supervisor_socket: str | None) -> dict[str, Any]:
    uname = os.uname()
    launchctl = which("launchctl")
    return {
        "system": uname.sysname,
        "machine": uname.machine,
        "release": uname.release,
        "hostname": uname.nodename,
        "python": ".".join(str(n) for n in sys.version_info[:3]),
        "user": _owner(os.getuid()),
        "uid": os.getuid(),
        "home": os.path.expanduser("~"),
        "synology": os.path.exists("/etc/synoinfo.conf"),
        "managers": {
            "systemd": {
                "path": which("systemctl"),
                "running": os.path.isdir("/run/systemd/system"),
            },
            "launchd": {"path": launchctl, "running": bool(launchctl)},
            "supervisor": {
                "path": which("supervisord"),
                "running": _unix_socket_answers(supervisor_socket),
            },
        },
    }


def _port_open(addr: str, port: int, timeout: float) -> bool:
    import socket

    try:
        with socket.create_connection(_address(addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def _address(host: str, port: int) -> Any:
    """(host, port) for socket.create_connection, an ASCII host as bytes: given a str,
    getaddrinfo imports the idna codec, a few ms of every round trip's CPU. (Any: the
    stubs want str, the socket module takes bytes too.)"""
    return (host.encode("ascii") if host.isascii() else host, port)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[:1] != ["Z"]
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we have


def _pidfile(path: str) -> int | None:
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if _pid_alive(pid) else None


def _in_parallel(checks: list[Callable[[], bool]]) -> list[bool]:
    """Run slow checks (each may wait for a timeout) side by side, in order."""
    if len(checks) < 2:
        return [check() for check in checks]
    import threading

    results = [False] * len(checks)

    def work(i: int) -> None:
        results[i] = checks[i]()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(checks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def observe(req: dict[str, Any]) -> dict[str, Any]:
    timeout = float(req.get("timeout", 1.0))
    ports = [(str(a), int(p)) for a, p in req.get("ports", [])]
    opened = _in_parallel([functools.partial(_port_open, a, p, timeout) for a, p in ports])
    return {
        "facts": facts(req.get("supervisor_socket")),
        "files": {raw: file_state(_path(raw)) for raw in req.get("paths", [])},
        "ports": [[a, p, opened[i]] for i, (a, p) in enumerate(ports)],
        "pidfiles": {raw: _pidfile(_path(raw)) for raw in req.get("pidfiles", [])},
    }


# --- put -------------------------------------------------------------------------------


def _within(path: str, root: str) -> bool:
    return path == root or os.path.commonpath([path, root]) == root


def _check_removal(raw: str, root: str | None) -> str:
    if root is None:
        raise AgentError("bad-request", "removals need a root directory to stay inside")
    path = _path(raw)
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.dirname(path))
    target = os.path.realpath(path)
    leaf = os.path.join(parent, os.path.basename(path))
    for candidate in (leaf, target):
        if not _within(candidate, real_root) or candidate == real_root:
            raise AgentError("outside-root", f"refusing to remove {raw}: it is outside {root}")
    if os.path.isdir(path) and not os.path.islink(path):
        raise AgentError("bad-request", f"refusing to remove {raw}: it is a directory")
    return path


def _sweep(directory: str) -> list[str]:
    """Remove temp files whose writer (the PID in the name) is gone."""
    swept: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return swept
    for name in names:
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        parts = name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        if int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1])):
            full = os.path.join(directory, name)
            try:
                os.unlink(full)
                swept.append(full)
            except OSError:
                pass
    return swept


def _write_temp(path: str, mode: int, owner: str | None, data: Iterator[bytes]) -> str:
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in data:
                handle.write(chunk)
            handle.flush()
            os.fchmod(handle.fileno(), mode)  # the umask may have narrowed it
            if owner:
                try:
                    entry = pwd.getpwnam(owner)
                except KeyError:
                    raise AgentError("bad-request", f"no user {owner!r} on this host") from None
                os.fchown(handle.fileno(), entry.pw_uid, entry.pw_gid)
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_write(path: str, root: str | None) -> str:
    """A write named under `root` must land under it once symlinks are resolved: a
    symlinked directory inside the lab dir must not carry a file out of it (as the
    local driver refuses). Writes named elsewhere (the state dir's own files) pass."""
    if root is None or not _within(path, root):
        return path
    real_root = os.path.realpath(root)
    if not _within(os.path.realpath(os.path.dirname(path)), real_root):
        raise AgentError("outside-root", f"refusing to write {path}: it leads outside "
                                         f"{root} through a symlink")
    return path


def put(req: dict[str, Any], blobs: Blobs) -> dict[str, Any]:
    root = _path(req["root"]) if req.get("root") else None  # "~/..." as the SSH user's
    files = [(_check_write(_path(f["path"]), root), int(f["size"]), int(f["mode"]) & 0o7777,
              f.get("owner")) for f in req.get("files", [])]
    removes = [_check_removal(raw, root) for raw in req.get("removes", [])]
    dirs = sorted({os.path.dirname(p) for p, _, _, _ in files} | {os.path.dirname(p)
                                                                  for p in removes})
    swept = [s for d in dirs for s in _sweep(d)]
    temps: list[tuple[str, str]] = []
    try:
        for path, size, mode, owner in files:
            temps.append((_write_temp(path, mode, owner, blobs.chunks(size)), path))
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, path in temps:
        os.replace(tmp, path)
    removed = []
    for path in removes:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    pruned = [d for path in removes for d in _prune(path, root)] \
        if req.get("prune") and root is not None else []
    for directory in dirs:
        _fsync_dir(directory)
    return {"written": [p for _, p in temps], "removed": removed, "swept": swept,
            "pruned": pruned}


def _prune(path: str, root: str) -> list[str]:
    """The directories above a removed file that are now empty, below `root`, removed."""
    real_root = os.path.realpath(root)
    pruned = []
    directory = os.path.dirname(path)
    while not os.path.islink(directory):
        real = os.path.realpath(directory)
        if real == real_root or not _within(real, real_root):
            break
        try:
            os.rmdir(directory)  # only an empty one
        except OSError:
            break
        pruned.append(directory)
        directory = os.path.dirname(directory)
    return pruned


# --- run -------------------------------------------------------------------------------


def run(req: dict[str, Any], blobs: Blobs) -> dict[str, Any]:
    import subprocess

    argv = req.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise AgentError("bad-request", "run needs argv: a non-empty list of strings")
    stdin = blobs.read(int(req["stdin"])) if req.get("stdin") is not None else None
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    cwd = req.get("cwd")
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, env=env,
            cwd=os.path.expanduser(cwd) if cwd else None,
            timeout=float(req.get("timeout", 60)),
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return {"returncode": 127, "stdout": "", "stderr": f"{argv[0]}: command not found"}
    except subprocess.TimeoutExpired:
        raise AgentError("timeout", f"{argv[0]} did not finish in time") from None
    return {
        "returncode": proc.returncode,
        "stdout": proc.stdout.decode("utf-8", "replace"),
        "stderr": proc.stderr.decode("utf-8", "replace"),
    }


# --- list, read ------------------------------------------------------------------------


def list_dir(req: dict[str, Any]) -> dict[str, Any]:
    directory, suffix = _path(req["dir"]), str(req.get("suffix", ""))
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return {"files": {}}
    out = {}
    for name in names:
        if name.endswith(suffix) and not name.startswith("."):
            state = file_state(os.path.join(directory, name))
            if state["kind"] == "file":
                out[name[: len(name) - len(suffix)] if suffix else name] = state["sha256"]
    return {"files": out}


def read(req: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in req.get("paths", []):
        try:
            with open(_path(raw), encoding="utf-8", errors="replace") as handle:
                out[raw] = handle.read()
        except OSError:
            out[raw] = None
    return {"contents": out}


# --- unix-socket clients: supervisord's XML-RPC, Caddy's admin API -------------------


def _unix_connection(path: str, timeout: float) -> Any:
    import http.client
    import socket

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return Connection("localhost", timeout=timeout)


def xmlrpc(req: dict[str, Any]) -> dict[str, Any]:
    """Read-only calls with string arguments (what observe sends) go the lean way; the
    rest, and any answer the lean parser does not know, go through xmlrpc.client."""
    path = _path(req["socket"])
    timeout = float(req.get("timeout", 30))
    calls = req.get("calls", [])
    if all(_lean_call(call) for call in calls):
        try:
            return _xmlrpc_lean(path, timeout, calls)
        except _NotLean:
            pass  # read-only calls: asking again the full way is harmless
    return _xmlrpc_full(path, timeout, calls)


def _xmlrpc_full(path: str, timeout: float, calls: list[Any]) -> dict[str, Any]:
    import http.client
    import xmlrpc.client

    class Transport(xmlrpc.client.Transport):
        def make_connection(self, host: Any) -> Any:
            return _unix_connection(path, timeout)

    proxy = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=Transport(),
                                      allow_none=True)
    results: list[dict[str, Any]] = []
    for method, args in calls:
        try:
            results.append({"value": getattr(proxy, str(method))(*args)})
        except xmlrpc.client.Fault as exc:
            results.append({"fault": str(exc.faultString)})
        except (OSError, http.client.HTTPException) as exc:
            if not results:
                return {"down": f"{type(exc).__name__}: {exc}"}
            results.append({"fault": f"{type(exc).__name__}: {exc}"})
    return {"results": results}


# --- lean XML-RPC: http.client and xmlrpc.client import `email` and friends, ~20 ms of
# CPU per round trip on every observe; these calls need only a POST and expat.

LEAN_METHODS = frozenset({
    "supervisor.getAllProcessInfo", "supervisor.getProcessInfo", "supervisor.getState",
    "supervisor.getPID", "supervisor.getAPIVersion", "supervisor.getSupervisorVersion",
    "supervisor.getIdentification", "system.listMethods",
})


class _NotLean(Exception):
    """An answer the lean path does not parse; the caller asks again via xmlrpc.client."""


def _lean_call(call: Any) -> bool:
    return (isinstance(call, (list, tuple)) and len(call) == 2
            and call[0] in LEAN_METHODS and isinstance(call[1], (list, tuple))
            and all(isinstance(arg, str) for arg in call[1]))


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xmlrpc_lean(path: str, timeout: float, calls: list[Any]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for method, args in calls:
        try:
            body = _unix_post(path, timeout, _method_call(str(method), args))
        except OSError as exc:
            if not results:
                return {"down": f"{type(exc).__name__}: {exc}"}
            results.append({"fault": f"{type(exc).__name__}: {exc}"})
            continue
        results.append(parse_method_response(body))
    return {"results": results}


def _method_call(method: str, args: list[str]) -> bytes:
    params = "".join(f"<param>\n<value><string>{_xml_escape(a)}</string></value>\n</param>\n"
                     for a in args)
    return (f"<?xml version='1.0'?>\n<methodCall>\n<methodName>{_xml_escape(method)}"
            f"</methodName>\n<params>\n{params}</params>\n</methodCall>\n").encode()


def _unix_post(path: str, timeout: float, body: bytes) -> bytes:
    """One HTTP/1.0 POST /RPC2 over a unix socket; the response body of a 200."""
    import socket

    head = (f"POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(head + body)
        data = bytearray()
        want = -1
        while want < 0 or len(data) < want:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if want < 0 and b"\r\n\r\n" in data:
                want = _response_size(bytes(data))
    return _response_body(bytes(data))


def _response_size(data: bytes) -> int:
    """Bytes in the whole response once its headers are in; a large number when the
    server gives no Content-Length (then it closes the connection at the end)."""
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(head) + 4 + int(value)
    return 1 << 62


def _response_body(data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(None, 2)
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/") or status[1] != b"200":
        raise _NotLean("not a complete 200 response")
    want = _response_size(data) - len(head) - 4
    if want < (1 << 61) and len(body) != want:
        raise _NotLean("short body")
    return body


def parse_method_response(body: bytes) -> dict[str, Any]:
    """``{"value": V}`` or ``{"fault": TEXT}``: what xmlrpc.client would return or raise."""
    root = _xml_tree(body)
    if root[0] != "methodResponse" or len(root[1]) != 1:
        raise _NotLean("not a methodResponse")
    tag, kids, _ = root[1][0]
    if tag == "fault" and len(kids) == 1 and kids[0][0] == "value":
        fault = _xml_value(kids[0])
        if not isinstance(fault, dict) or "faultString" not in fault or "faultCode" not in fault:
            raise _NotLean("bad fault")
        return {"fault": str(fault["faultString"])}
    if (tag == "params" and len(kids) == 1 and kids[0][0] == "param"
            and len(kids[0][1]) == 1 and kids[0][1][0][0] == "value"):
        return {"value": _xml_value(kids[0][1][0])}
    raise _NotLean("unexpected methodResponse")


# A parsed element: [tag, children, text pieces].
_Node = list[Any]


def _xml_tree(body: bytes) -> _Node:
    from xml.parsers import expat

    top: _Node = ["", [], []]
    stack = [top]

    def start(tag: str, attrs: Any) -> None:
        node: _Node = [tag, [], []]
        stack[-1][1].append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        stack[-1][2].append(data)

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise _NotLean(str(exc)) from None
    if len(top[1]) != 1:
        raise _NotLean("no document element")
    node: _Node = top[1][0]
    return node


def _xml_value(node: _Node) -> Any:
    """A ``<value>`` as xmlrpc.client's Unmarshaller decodes it (the types supervisord uses)."""
    kids = node[1]
    if not kids:
        return "".join(node[2])  # a value with no type is a string
    if len(kids) != 1:
        raise _NotLean("a value with several children")
    tag, sub, pieces = kids[0]
    data = "".join(pieces)
    try:
        if tag in ("int", "i4", "i8"):
            return int(data)
        if tag == "string":
            return data
        if tag == "double":
            return float(data)
    except ValueError:
        raise _NotLean(f"bad {tag}") from None
    if tag == "boolean" and data in ("0", "1"):
        return data == "1"
    if tag == "nil":
        return None
    if tag == "array" and len(sub) == 1 and sub[0][0] == "data":
        return [_xml_value(v) for v in sub[0][1] if _is(v, "value")]
    if tag == "struct":
        out: dict[str, Any] = {}
        for member in sub:
            parts = {p[0]: p for p in member[1]} if member[0] == "member" else {}
            if set(parts) != {"name", "value"} or len(member[1]) != 2:
                raise _NotLean("bad struct member")
            out["".join(parts["name"][2])] = _xml_value(parts["value"])
        return out
    raise _NotLean(f"type {tag!r}")


def _is(node: _Node, tag: str) -> bool:
    if node[0] != tag:
        raise _NotLean(f"unexpected {node[0]!r}")
    return True


def http_unix(req: dict[str, Any], blobs: Blobs) -> dict[str, Any]:
    import http.client

    body = blobs.read(int(req["body"])) if req.get("body") is not None else None
    conn = _unix_connection(_path(req["socket"]), float(req.get("timeout", 30)))
    try:
        headers = {"Host": "localhost"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(str(req.get("method", "GET")), str(req["path"]), body=body,
                     headers=headers)
        resp = conn.getresponse()
        return {"status": resp.status, "body": resp.read().decode("utf-8", "replace")}
    except (OSError, http.client.HTTPException) as exc:
        return {"down": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def probe(req: dict[str, Any]) -> dict[str, Any]:
    timeout = float(req.get("timeout", 2.0))
    if req.get("kind") == "command":
        return _probe_command(req, timeout)
    host, port = str(req["host"]), int(req["port"])
    if req.get("kind") == "tcp":
        ok = _port_open(host, port, timeout)
        return {"ok": ok, "detail": f"tcp {host}:{port} {'open' if ok else 'closed'}"}
    path = str(req.get("path", "/"))
    try:
        status = _http_status(host, port, path, timeout)
    except OSError as exc:
        return {"ok": False, "detail": f"GET http://{host}:{port}{path}: {exc}"}
    return {"ok": 200 <= status < 400, "detail": f"GET {path} -> {status}"}


def _probe_command(req: dict[str, Any], timeout: float) -> dict[str, Any]:
    """A health command, as the local probe runs it: exit 0 is healthy. Its output is
    not sent back (it reaches status and the state DB): only the exit status."""
    import subprocess

    argv = req.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise AgentError("bad-request", "a command probe needs argv: a list of strings")
    cwd = os.path.expanduser(str(req["cwd"])) if req.get("cwd") else None
    if cwd is not None and not os.path.isdir(cwd):
        cwd = None  # not applied yet: run from the SSH user's home
    try:
        proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=timeout, start_new_session=True)
    except FileNotFoundError:
        return {"ok": False, "detail": f"command not found: {argv[0]}"}
    except PermissionError:
        return {"ok": False, "detail": f"command not executable: {argv[0]}"}
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"command timed out after {timeout:g}s"}
    return {"ok": proc.returncode == 0, "detail": f"exit {proc.returncode}"}


def index(req: dict[str, Any]) -> dict[str, Any]:
    """An index's entries; ``damaged`` when it exists but is not an object of paths (the
    driver rewrites it); with ``root``, entries whose path is not under it (symlinks
    resolved) are left out and listed in ``outside``: never obeyed, dropped when the
    index is next written."""
    entries: dict[str, str] = {}
    damaged = False
    try:
        with open(_path(req["path"]), encoding="utf-8") as handle:
            data = json.load(handle)
        damaged = not isinstance(data, dict)
        if isinstance(data, dict):
            entries = {str(k): v for k, v in data.items() if _index_path(v)}
            damaged = len(entries) != len(data)
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        damaged = True
    outside: dict[str, str] = {}
    if req.get("root"):
        real_root = os.path.realpath(_path(req["root"]))
        for key, raw in list(entries.items()):
            path = _path(raw)
            real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
            if not _within(real, real_root) or real == real_root:
                outside[key] = entries.pop(key)
    files = ({p: file_state(_path(p)) for p in sorted(set(entries.values()))}
             if req.get("stat") else {})
    return {"entries": entries, "files": files, "damaged": damaged, "outside": outside}


def _index_path(value: Any) -> bool:
    """An index value blumeops could have written: an absolute, normalised path (or one
    under ``~/``, the SSH user's home)."""
    if not isinstance(value, str) or "\0" in value:
        return False
    path = value[1:] if value.startswith("~/") else value
    return path.startswith("/") and os.path.normpath(path) == path


def jobs(req: dict[str, Any]) -> dict[str, Any]:
    try:
        with open(_path(req["path"]), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {"jobs": {}}
    records = data.get("jobs") if isinstance(data, dict) else None
    return {"jobs": records if isinstance(records, dict) else {}}


MASK = "[redacted]"


def _secret_values(env_files: list[Any], files: list[Any]) -> list[str]:
    values: list[str] = []
    for raw in env_files:
        try:
            with open(_path(raw), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            values += [str(v) for v in data.values()]
    for raw in files:
        try:
            with open(_path(raw), encoding="utf-8", errors="replace") as handle:
                values.append(handle.read())
        except OSError:
            continue
    # Stripped (a secret file's trailing newline is not part of what a log shows), and
    # longest first, so a value holding another is masked whole (as secrets.redact does).
    return sorted({v.strip() for v in values if v.strip()}, key=len, reverse=True)


def tail(req: dict[str, Any]) -> dict[str, Any]:
    size = max(0, min(int(req.get("bytes", 4096)), 1 << 20))
    lines = max(0, int(req.get("lines", 20)))
    files = list(req.get("redact_files", []))
    if req.get("redact_index"):
        where, prefix = req["redact_index"]
        entries = index({"path": where})["entries"]
        files += [p for k, p in entries.items() if k.startswith(str(prefix))]
    secrets = _secret_values(list(req.get("redact_env", [])), files)
    out: dict[str, Any] = {}
    for raw in req.get("paths", []):
        try:
            with open(_path(raw), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                end = handle.tell()
                handle.seek(max(0, end - size))
                data = handle.read(size)
        except OSError:
            out[raw] = None
            continue
        text = data.decode("utf-8", "replace")
        if end > size:
            text = text.partition("\n")[2]  # the first line is cut: drop it
        for value in secrets:
            text = text.replace(value, MASK)
        out[raw] = "\n".join(text.splitlines()[-lines:] if lines else [])
    return {"tails": out}


def _http_status(host: str, port: int, path: str, timeout: float) -> int:
    """The status code of ``GET path``: only the status line is read, so no http.client
    (whose import costs more than the probe)."""
    import socket

    name = f"[{host}]" if ":" in host else host
    request = (f"GET {path} HTTP/1.1\r\nHost: {name}:{port}\r\nAccept-Encoding: identity"
               "\r\nConnection: close\r\n\r\n").encode("latin-1")
    with socket.create_connection(_address(host, port), timeout=timeout) as sock:
        sock.sendall(request)
        line = b""
        while b"\n" not in line and len(line) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            line += chunk
    parts = line.split(b"\n", 1)[0].split(None, 2)
    if not line:
        raise ConnectionError("Remote end closed connection without response")
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"bad status line {parts[:2]!r}")
    return int(parts[1])


def spawn(req: dict[str, Any]) -> dict[str, Any]:
    import subprocess

    argv = [str(a) for a in req["argv"]]
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    log = _path(req["log"])
    os.makedirs(os.path.dirname(log), exist_ok=True)
    cwd = req.get("cwd")
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=env, cwd=os.path.expanduser(cwd) if cwd else None,
                                    start_new_session=True)
        except FileNotFoundError:
            raise AgentError("not-found", f"{argv[0]}: command not found") from None
    return {"pid": proc.pid}


# --- dispatch --------------------------------------------------------------------------


class _Deadline(BaseException):
    """The round trip's deadline passed (SIGALRM): a BaseException, so that no op's
    `except Exception` swallows it; subprocess.run kills its child on the way out."""


_running: list[str] = []  # the op being handled, for the deadline's message


def _arm(req: dict[str, Any]) -> None:
    """Stop this agent at the request's deadline, whatever it is stuck on (a FIFO, a
    dead NFS mount, a socket that never answers): the client has given up by then."""
    seconds = req.get("deadline")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
        return

    def expire(signum: int, frame: Any) -> None:
        # Should unwinding hang too, the default action ends the process 2 s later.
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        raise _Deadline(float(seconds))

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))


def handle(req: dict[str, Any], blobs: Blobs) -> Any:
    op = req.get("op")
    _running[:] = [str(op)]
    if op == "observe":
        return observe(req)
    if op == "put":
        return put(req, blobs)
    if op == "run":
        return run(req, blobs)
    if op == "batch":
        return {"results": [_sub(sub, blobs) for sub in req.get("ops", [])]}
    if op in SIMPLE:
        return SIMPLE[op](req)
    if op == "http":
        return http_unix(req, blobs)
    raise AgentError("bad-request", f"unknown op {op!r}")


SIMPLE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "list": list_dir, "read": read, "xmlrpc": xmlrpc, "probe": probe, "spawn": spawn,
    "tail": tail, "index": index, "jobs": jobs,
}


def _sub(req: dict[str, Any], blobs: Blobs) -> Any:
    """One op of a batch: a failed read-only op answers for itself; an op that reads
    blobs (put, run, http) fails the whole batch, since the blobs after it would shift."""
    if req.get("op") not in SIMPLE and req.get("op") != "observe":
        return handle(req, blobs)
    try:
        return handle(req, blobs)
    except AgentError as exc:
        return {"error": exc.code, "message": exc.message}
    except OSError as exc:
        return {"error": "os-error", "message": exc.strerror or type(exc).__name__}


def answer(req_line: bytes, stream: BinaryIO, arm: bool = False) -> dict[str, Any]:
    """The JSON answer to one request; never raises for a bad request. With `arm` (a
    process of its own), the request's deadline ends the work (`_arm`).

    Messages name paths and fields, never values: a request may carry secrets.
    """
    try:
        req = json.loads(req_line.decode("utf-8"))
    except ValueError:
        return {"ok": False, "error": "bad-request", "message": "the request is not JSON"}
    try:
        if not isinstance(req, dict) or req.get("v") != 1:
            raise AgentError("bad-request", "expected a version 1 request object")
        if arm:
            _arm(req)
        return {"ok": True, "result": handle(req, Blobs(stream))}
    except _Deadline as exc:
        return {"ok": False, "error": "deadline",
                "message": f"the host did not finish within {exc.args[0]:g} s (stuck in "
                           f"{'/'.join(_running) or 'the request'}: a hung file, socket or "
                           "command?); stopped there"}
    except AgentError as exc:
        return {"ok": False, "error": exc.code, "message": exc.message}
    except OSError as exc:
        text = exc.strerror or type(exc).__name__
        if exc.filename:
            text += f" ({exc.filename})"
        return {"ok": False, "error": "os-error", "message": text}
    except Exception as exc:  # a malformed request (or a bug): say where, not what
        where = f" {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else ""
        return {"ok": False, "error": "bad-request",
                "message": f"{type(exc).__name__}{where} while handling the request"}


def _terminate(signum: int, frame: Any) -> None:
    # Unwinds the stack so `finally` blocks remove temp files before the process ends.
    raise SystemExit(128 + signum)


def main() -> None:
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _terminate)
    stdin = sys.stdin.buffer
    reply = answer(stdin.readline(), stdin, arm=True)
    signal.setitimer(signal.ITIMER_REAL, 0)
    sys.stdout.buffer.write(MARKER + json.dumps(reply).encode() + b"\n")
    sys.stdout.buffer.flush()
    if reply.get("error") == "deadline":
        os._exit(1)  # no waiting for the threads of a stuck op


if __name__ == "__main__":
    main()
