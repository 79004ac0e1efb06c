"""The dashboard and the API under 200 concurrent readers while a sync runs (issue 10's
load target: no errors, p99 of /api/status under 200 ms).

The server is `blumeops controller` in its own process, following a git repository with a
private copy of the demo lab. 100 readers fetch the Lab page (`/`) and 100 fetch
/api/status, each on its own kept-alive connection, a GET every PERIOD_S (a polling page;
400 requests/s in all), for WINDOW_S. At the window's start a commit that restarts two
services is pushed and a sync requested, so the readers race a real apply.

    .venv/bin/python bench/bench_dashboard.py [--api-only] [--no-sync]

The readers run on one asyncio loop in this process, on the same machine: on a busy
machine the numbers include waiting for a core (the load average is printed).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_api import _git, _summary, follow_demo, stop_demo
from bench_cli import BLUMEOPS, demo_copy
from common import Row

TOKEN = "bench-dashboard-token"
TIMEOUT = 60.0
WINDOW_S = 8.0
PERIOD_S = 0.5  # each reader: two requests a second (400 req/s for 200 readers)


async def _reader(port: int, path: str, start: asyncio.Event,
                  until: float) -> list[float | None]:
    """GETs of `path` on one connection, one every PERIOD_S (as a page that polls; the
    first at a random offset), until `until`: seconds each, None per error."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").encode()
    await start.wait()
    await asyncio.sleep(random.uniform(0, PERIOD_S))
    times: list[float | None] = []
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return [None]
    try:
        while time.perf_counter() < until:
            began = time.perf_counter()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await asyncio.wait_for(reader.readexactly(length), TIMEOUT)
            ok = head.startswith(b"HTTP/1.1 200 ")
            times.append(time.perf_counter() - began if ok else None)
            if b"connection: close" in head.lower():
                break
            await asyncio.sleep(max(0.0, PERIOD_S - (time.perf_counter() - began)))
    except (OSError, asyncio.IncompleteReadError, TimeoutError, StopIteration):
        times.append(None)
    finally:
        writer.close()
    return times


async def _load(port: int, readers: int, kick: object) -> dict[str, tuple[list[float | None],
                                                                            float]]:
    start = asyncio.Event()
    until = time.perf_counter() + 0.3 + WINDOW_S
    half = 0 if "--api-only" in sys.argv else readers // 2
    pages = [asyncio.create_task(_reader(port, "/", start, until)) for _ in range(half)]
    api = [asyncio.create_task(_reader(port, "/api/status", start, until))
           for _ in range(readers - half)]
    await asyncio.sleep(0.2)
    t = time.perf_counter()
    start.set()
    if "--no-sync" not in sys.argv:
        await asyncio.to_thread(kick)  # type: ignore[arg-type]
    page_times = [x for r in await asyncio.gather(*pages) for x in r]
    api_times = [x for r in await asyncio.gather(*api) for x in r]
    wall = time.perf_counter() - t
    return {"/ (Lab page)": (page_times, wall), "/api/status": (api_times, wall)}


def run(readers: int = 200) -> dict[str, dict[str, float]]:
    root = Path(tempfile.mkdtemp(prefix="bo-dash-", dir="/tmp"))
    lab, env = demo_copy(root)
    env.pop("BLUMEOPS_STATE_DIR")
    env["BLUMEOPS_API_TOKEN"] = TOKEN
    subprocess.run([*BLUMEOPS, "secret", "set", str(lab), "demo/api-token", "--value",
                    "bench"], env=env, check=True, capture_output=True)
    proc, port, log = follow_demo(root, lab, env)
    api = f"http://127.0.0.1:{port}"

    def status() -> dict[str, object]:
        try:
            data: dict[str, object] = httpx.get(f"{api}/api/status", timeout=5).json()
            return data
        except (httpx.HTTPError, ValueError):
            return {}

    def kick() -> None:
        """A commit that changes two services' environment (both restart), then sync."""
        text = (lab / "lab.yaml").read_text()
        text = text.replace("API_NAME: demo", "API_NAME: demo2").replace(
            "ECHO_PORT:", "ECHO_MODE: x, ECHO_PORT:")
        (lab / "lab.yaml").write_text(text)
        _git(lab, "commit", "-q", "-am", "restart two")
        httpx.post(f"{api}/api/sync", headers={"Authorization": f"Bearer {TOKEN}"},
                   json={}, timeout=10).raise_for_status()

    try:
        first = status()["applied"]
        raw = asyncio.run(_load(port, readers, kick))
        synced = status()
        results = {name: _summary(*v) for name, v in raw.items()}
        if "--no-sync" not in sys.argv and synced.get("applied") == first:
            print("note: the sync did not finish within the window")
    finally:
        stop_demo(root, proc, log, env)
    return results


def rows(quick: bool) -> list[Row]:
    """For bench/run.py: p99 of the Lab page and of /api/status, readers racing a sync."""
    readers = 50 if quick else 200
    out = []
    for name, r in run(readers).items():
        assert "p99_ms" in r, f"every request failed: {r}"
        out.append(Row(f"dashboard, {readers} readers polling while a sync runs, {name}: p99",
                       [r["p99_ms"] / 1000], target="p99 < 0.2 s, 0 errors",
                       note=f"{int(r['failures'])} errors of {int(r['requests'])}; "
                            f"p50 {r['p50_ms']:.0f} ms"))
    return out


def print_table(results: dict[str, dict[str, float]], readers: int) -> None:
    sync = "no sync" if "--no-sync" in sys.argv else "while a sync runs"
    print(f"dashboard + API, {readers} concurrent readers, each a GET every {PERIOD_S:g} s "
          f"for {WINDOW_S:g} s, {sync} ({os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f})")
    cols = ("requests", "failures", "p50_ms", "p99_ms", "max_ms", "req_per_s")
    print(f"{'path':<26}" + "".join(f"{c:>11}" for c in cols))
    for name, row in results.items():
        print(f"{name:<26}" + "".join(f"{row.get(c, '-')!s:>11}" for c in cols))


if __name__ == "__main__":
    print_table(run(), 200)
