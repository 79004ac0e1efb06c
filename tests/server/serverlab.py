"""A real controller (git repository, state database) behind the real API server.

The followed repository holds an invalid catalog on purpose: a controller that syncs it
records an `invalid` sync and starts nothing, so these tests exercise HTTP alone and
leave no lab running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from blumeops.engine.controller import Controller, ControllerConfig
from blumeops.server.limits import DEFAULT_LIMITS, Limits
from blumeops.server.serve import ApiServer

TOKEN = "api-token-for-server-tests"
SECRET = "webhook-secret-for-server-tests"
GIT = ["git", "-c", "user.name=Erich", "-c", "user.email=erich@example.com"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(path: Path) -> Path:
    """A repository whose one commit has a catalog the controller rejects (so it runs
    nothing)."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    (path / "lab.yaml").write_text("not_a_lab_key: 1\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "an invalid lab")
    return path


def make_controller(root: Path) -> Controller:
    repo = make_repo(root / "repo")
    return Controller(ControllerConfig(source_url=str(repo), state_dir=root / "state",
                                       interval=3600))


@contextmanager
def serving(controller: Controller, token: str = TOKEN, secret: str = SECRET,
            allowed_hosts: tuple[str, ...] = (), limits: Limits = DEFAULT_LIMITS,
            host: str = "127.0.0.1") -> Iterator[ApiServer]:
    server = ApiServer((host, 0), controller, token, secret, allowed_hosts=allowed_hosts,
                       limits=limits)
    with server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` as is on a new connection; everything the server answers until it
    closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes `sock` (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def _get_all(url: str, n: int, headers: dict[str, str]) -> list[tuple[int, float]]:
    """`n` concurrent GETs, each on its own connection: (status or 0, seconds)."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = asyncio.Event()

        async def one() -> tuple[int, float]:
            await start.wait()
            t = time.perf_counter()
            try:
                resp = await client.get(url, headers=headers)
                return resp.status_code, time.perf_counter() - t
            except httpx.HTTPError:
                return 0, time.perf_counter() - t

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)


def concurrent_gets(url: str, n: int,
                    headers: dict[str, str] | None = None) -> list[tuple[int, float]]:
    return asyncio.run(_get_all(url, n, headers or {}))


@dataclass
class ControllerProcess:
    """`blumeops controller` as a person runs it, in its own process."""

    proc: subprocess.Popen[str]
    api: str
    port: int

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return err


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env.update(XDG_CACHE_HOME=str(root / "cache"), BLUMEOPS_API_TOKEN=TOKEN,
               BLUMEOPS_WEBHOOK_SECRET=SECRET, **extra)
    return env


def controller_cli(root: Path, *args: str,
                   env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    repo = root / "repo" if (root / "repo").exists() else make_repo(root / "repo")
    cmd = [sys.executable, "-m", "blumeops", "controller", "--source", str(repo),
           "--interval", "3600", "--state-dir", str(root / "state"), *args]
    return subprocess.Popen(cmd, env=env or cli_env(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=root)


def start_controller(root: Path, *args: str,
                     env: dict[str, str] | None = None) -> ControllerProcess:
    port = free_port()
    proc = controller_cli(root, "--listen", f"127.0.0.1:{port}", *args, env=env)
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"controller exited: {proc.communicate()[1]}")
        try:
            if httpx.get(f"{api}/api/status", timeout=2).status_code == 200:
                return ControllerProcess(proc, api, port)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("controller API did not come up")

