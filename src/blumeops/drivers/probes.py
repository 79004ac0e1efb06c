"""Health: probes (HTTP, TCP, command) and the vocabulary ArgoCD users know.

A service is Healthy, Progressing, Degraded, Missing or Unknown; a lab's health is its
worst service's.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


def probe_http(host: str, port: int, path: str, timeout: float, host_header: str | None = None,
               expect_header: tuple[str, str] | None = None) -> ProbeResult:
    """GET the path; 2xx and 3xx are healthy. With `expect_header` (name, value) the
    answer must also carry that header: proof it came from that route, not from a
    proxy that answers every Host."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Host": host_header} if host_header else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        status = resp.status
        marks = (resp.headers.get_all(expect_header[0]) or []) if expect_header else []
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, f"GET http://{host}:{port}{path}: {exc or type(exc).__name__}")
    finally:
        conn.close()
    ok = 200 <= status < 400
    if ok and expect_header is not None and expect_header[1] not in marks:
        return ProbeResult(False, f"GET {path} -> {status} without {expect_header[0]}: "
                                  f"{expect_header[1]} (no such route in the proxy)")
    return ProbeResult(ok, f"GET {path} -> {status}")


def probe_tcp(host: str, port: int, timeout: float) -> ProbeResult:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ProbeResult(True, f"tcp {host}:{port} open")
    except OSError as exc:
        return ProbeResult(False, f"tcp {host}:{port}: {exc.strerror or exc}")


def probe_command(argv: list[str], cwd: Path, timeout: float) -> ProbeResult:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return ProbeResult(False, f"command not found: {argv[0]}")
    except subprocess.TimeoutExpired:
        return ProbeResult(False, f"command timed out after {timeout}s")
    return ProbeResult(proc.returncode == 0, f"exit {proc.returncode}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
