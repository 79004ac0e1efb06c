"""Labs with a Kubernetes cluster delivered by ArgoCD, bare git origins on disk, and a
stand-in git forge over HTTP (git's own `git http-backend` behind basic auth)."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from blumeops.catalog.model import Lab
from blumeops.core.resources import Resource
from blumeops.lab.loader import load_lab
from blumeops.render import render_lab

GIT = ["git", "-c", "user.name=Other", "-c", "user.email=other@example.com",
       "-c", "init.defaultBranch=main"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def bare_origin(path: Path) -> Path:
    subprocess.run([*GIT, "init", "-q", "--bare", str(path)], check=True)
    return path


def lab_data(repo_url: str, services: tuple[str, ...] = ("api", "web"),
             branch: str | None = "deploy") -> dict[str, Any]:
    cluster: dict[str, Any] = {"host": "box", "context": "kind-test", "delivery": "argocd",
                               "repo_url": repo_url, "path": "rendered"}
    if branch:
        cluster["deploy_branch"] = branch
    return {
        "lab": "t",
        "hosts": {"box": {"role": "compute", "os": "linux", "address": "127.0.0.1"}},
        "clusters": {"kind": cluster},
        "services": {
            name: {"kubernetes": "kind", "image": f"example/{name}:1.0",
                   "ports": {"http": 8080}, "health": {"http": "/healthz"}}
            for name in services
        },
    }


def load(directory: Path, data: dict[str, Any]) -> Lab:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "lab.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = load_lab(directory / "lab.yaml")
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    return result.lab


def rendered(lab: Lab) -> list[Resource]:
    return render_lab(lab, only=("kubernetes", "argocd"))


def branch_files(origin: Path, branch: str) -> set[str]:
    out = git(origin, "ls-tree", "-r", "--name-only", f"refs/heads/{branch}")
    return set(out.splitlines())


def branch_log(origin: Path, branch: str) -> list[str]:
    """Full messages, newest first."""
    out = git(origin, "log", "--format=%B%x1e", f"refs/heads/{branch}")
    return [m.strip() for m in out.split("\x1e") if m.strip()]


class _Forge(BaseHTTPRequestHandler):
    root: Path
    auth: str
    seen: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        header = self.headers.get("Authorization") or ""
        self.seen.append(header)
        if header != self.auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="stand-in forge"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {"GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": "bob",
               "REMOTE_ADDR": "127.0.0.1", "PATH": os.environ["PATH"],
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
               "GIT_CONFIG_NOSYSTEM": "1"}
        proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                              capture_output=True, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            key, _, value = line.decode().partition(": ")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def stand_in_forge(root: Path, user: str, password: str) -> Iterator[tuple[int, list[str]]]:
    """A stand-in git forge on 127.0.0.1: smart HTTP over `git http-backend`, basic auth.
    Yields (port, the Authorization headers it received)."""
    seen: list[str] = []
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    handler = type("Forge", (_Forge,), {"root": root, "auth": f"Basic {token}", "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()
