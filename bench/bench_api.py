"""The controller API under 500 concurrent readers of /api/status (target: 0 failures,
p99 < 200 ms).

The server is `blumeops controller` in its own process, following a git repository
that holds a private copy of the demo lab (so /api/status reports real services). The
readers run in this process on one asyncio loop with a minimal HTTP/1.1 client: httpx's
async pool costs the client several milliseconds of CPU per request at 500 connections,
which would measure the client rather than the server.

- burst: 500 readers connect and send one GET at the same instant; latency is from the
  start signal to the last byte of the answer (connection set-up included).
- keep-alive: 500 readers, each sends 10 GETs one after another on its own connection.

    .venv/bin/python bench/bench_api.py                    # this checkout
    .venv/bin/python bench/bench_api.py --src OTHER/src    # another checkout's server
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_cli import BLUMEOPS, demo_copy, free_port
from common import Row

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
TIMEOUT = 60.0


async def _reader(port: int, start: asyncio.Event, requests: int) -> list[float | None]:
    """`requests` GETs on one connection: seconds each, None for a failure."""
    request = (b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
    await start.wait()
    began = time.perf_counter()
    times: list[float | None] = []
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return [None] * requests
    try:
        for _ in range(requests):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
            ok = head.startswith(b"HTTP/1.1 200 ")
            times.append(time.perf_counter() - began if ok else None)
            began = time.perf_counter()
    except (OSError, asyncio.IncompleteReadError, TimeoutError, StopIteration):
        times += [None] * (requests - len(times))
    finally:
        writer.close()
    return times


async def _load(port: int, readers: int, requests: int) -> tuple[list[float | None], float]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(_reader(port, start, requests)) for _ in range(readers)]
    await asyncio.sleep(0.2)  # every reader is waiting on the signal
    t = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    return [x for r in results for x in r], time.perf_counter() - t


def _summary(times: list[float | None], wall: float) -> dict[str, float]:
    ok = sorted(t for t in times if t is not None)
    if not ok:
        return {"requests": len(times), "failures": len(times)}
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
    return {"requests": len(times), "failures": len(times) - len(ok),
            "p50_ms": round(statistics.median(ok) * 1000, 1), "p99_ms": round(p99 * 1000, 1),
            "max_ms": round(ok[-1] * 1000, 1), "req_per_s": round(len(ok) / wall)}


def _git(repo: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True)


def follow_demo(root: Path, lab: Path, env: dict[str, str]
                ) -> tuple[subprocess.Popen[bytes], int, IO[bytes]]:
    """Commit the demo copy, start `blumeops controller` on it (state in ROOT/state) and
    wait for its first sync. Returns the process, its API port and its open log."""
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=lab, check=True)
    _git(lab, "add", "-A")
    _git(lab, "commit", "-q", "-m", "demo")
    port = free_port()
    log = (root / "controller.log").open("wb")
    proc = subprocess.Popen([*BLUMEOPS, "controller", "--source", str(lab), "--listen",
                             f"127.0.0.1:{port}", "--interval", "3600", "--state-dir",
                             str(root / "state")], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    status: dict[str, object] = {}
    while True:
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).json()
            if status["applied"] and status["sync_state"] != "syncing":
                return proc, port, log
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_demo(root, proc, log, env, remove=False)
            raise RuntimeError(f"the controller did not sync the demo lab: {status}, "
                               f"{(root / 'controller.log').read_text()[-2000:]}")
        time.sleep(0.1)


def stop_demo(root: Path, proc: subprocess.Popen[bytes], log: IO[bytes],
              env: dict[str, str], remove: bool = True) -> None:
    """Stop the controller, then the lab it applied; remove ROOT unless told not to."""
    proc.terminate()
    proc.wait(timeout=60)
    log.close()
    state = root / "state"
    subprocess.run([*BLUMEOPS, "down", str(state / "source" / "live"), "--state-dir",
                    str(state)], env=env, capture_output=True, check=False)
    if remove:
        shutil.rmtree(root, ignore_errors=True)


def run(readers: int = 500, src: str | None = None) -> dict[str, dict[str, float]]:
    root = Path(tempfile.mkdtemp(prefix="bo-api-", dir="/tmp"))
    lab, env = demo_copy(root)
    env.pop("BLUMEOPS_STATE_DIR")
    if src:
        env["PYTHONPATH"] = src
    proc, port, log = follow_demo(root, lab, env)
    try:
        results = {}
        for name, requests in (("burst: 1 request each", 1), ("keep-alive: 10 each", 10)):
            results[name] = _summary(*asyncio.run(_load(port, readers, requests)))
    finally:
        stop_demo(root, proc, log, env)
    return results


def rows(quick: bool) -> list[Row]:
    """For bench/run.py: the burst and keep-alive p99, with their failure counts."""
    readers = 100 if quick else 500
    out = []
    for name, r in run(readers=readers).items():
        assert "p99_ms" in r, f"every request failed: {r}"
        out.append(Row(f"API, {readers} concurrent readers of /api/status, {name}: p99",
                       [r["p99_ms"] / 1000], target="p99 < 0.2 s, 0 failures",
                       note=f"{int(r['failures'])} failures of {int(r['requests'])}; "
                            f"p50 {r['p50_ms']:.0f} ms"))
    return out


def print_table(results: dict[str, dict[str, float]], readers: int) -> None:
    print(f"controller API, {readers} concurrent readers of /api/status "
          f"({os.cpu_count()} cores)")
    cols = ("requests", "failures", "p50_ms", "p99_ms", "max_ms", "req_per_s")
    print(f"{'scenario':<24}" + "".join(f"{c:>11}" for c in cols))
    for name, row in results.items():
        print(f"{name:<24}" + "".join(f"{row.get(c, '-')!s:>11}" for c in cols))


if __name__ == "__main__":
    src = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else None
    print_table(run(src=src), 500)
