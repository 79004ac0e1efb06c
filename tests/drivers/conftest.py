"""Fixtures for driver tests: short temp dirs (unix sockets), free ports, real processes."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from polling import wait_for


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path: unix socket paths are limited to ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bo-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str = "/", host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def answers(port: int, host: str | None = None) -> bool:
    try:
        return http_get(port, host=host)[0] == 200
    except OSError:
        return False


@pytest.fixture
def http_server() -> Iterator[int]:
    """A tiny upstream HTTP server on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: answers(port), 30, "answers(port)")
        yield port
    finally:
        proc.kill()
        proc.wait()
