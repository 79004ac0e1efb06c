"""The GitOps loop: push-to-live latency, and the controller at 1,000 local services.

- push-to-live: commit a new service + route, post a signed webhook, time until the
  route answers through Caddy (target < 2 s).
- a controller following a lab of 1,000 services on a `local: true` supervisor host
  (bench/common.py local_lab: `sleep` programs, each with a port, a Caddy route and a
  command probe): it validates, renders, plans and applies them all, so supervisord runs
  1,000 programs and Caddy holds 1,000 routes. Then a second commit changes half of them.
  Measured: each sync's duration (the controller's own record), and the resident memory
  of the controller process alone (VmRSS now, VmHWM its peak; not its children: the
  supervisord it started is reported apart).
- one process that loads the 1,000-service synthetic lab, renders every layer and plans
  it (peak RSS: what a full `blumeops render` costs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_cli import demo_copy
from common import (
    BLUMEOPS,
    ROOT,
    Row,
    free_port,
    free_ports,
    local_lab,
    rss_kb,
    user_env,
    write_lab,
)

SECRET = "bench-secret"
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _webhook(api: str, repo: Path, commit: str) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": commit,
                       "repository": {"full_name": "bench/lab", "clone_url": str(repo)},
                       "pusher": {"login": "bench"}}).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    httpx.post(f"{api}/api/webhook", content=body, timeout=10,
               headers={"X-Forgejo-Event": "push", "X-Forgejo-Signature": sig})


def _status(api: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = httpx.get(f"{api}/api/status", timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return None
    return data


def _applied(api: str) -> str | None:
    data = _status(api)
    return data["applied"] if data and data["sync_state"] != "syncing" else None


@contextmanager
def controller(root: Path, repo: Path, env: dict[str, str]
               ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A controller following `repo`, state under root/state; everything it started is
    stopped after (`blumeops down` of its live tree)."""
    listen = f"127.0.0.1:{free_port()}"
    env = {**env, "BLUMEOPS_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen([*BLUMEOPS, "controller", "--source", str(repo), "--listen",
                             listen, "--interval", "300", "--state-dir", str(root / "state")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc, f"http://{listen}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        subprocess.run([*BLUMEOPS, "down", str(root / "state" / "source" / "live"),
                        "--state-dir", str(root / "state")], env=env, capture_output=True,
                       check=False)


def _push_one(repo: Path, api: str, proxy: str, name: str) -> float:
    """Commit a new service with a route, post the webhook; seconds until it answers
    through Caddy. Returns once the controller has recorded the sync as well."""
    port = free_port()
    text = (repo / "lab.yaml").read_text().replace("services:\n", (
        f"services:\n  {name}:\n    native: box\n    command: [python3, -m, "
        f"http.server, '{port}', --bind, 127.0.0.1, --directory, site]\n"
        f"    ports: {{http: {port}}}\n    routes: {{{name}.ops: http}}\n"
        f"    health: {{http: /}}\n"), 1)
    (repo / "lab.yaml").write_text(text)
    commit = _commit(repo, f"add {name}")

    def live() -> bool:
        try:
            r = httpx.get(f"http://{proxy}/", timeout=2, headers={"Host": f"{name}.ops.localhost"})
        except httpx.HTTPError:
            return False
        return "BlumeOps demo" in r.text

    start = time.perf_counter()
    _webhook(api, repo, commit)
    _wait(live, 30, f"{name} to answer through Caddy")
    took = time.perf_counter() - start
    _wait(lambda: _applied(api) == commit, 30, f"sync of {commit[:12]}")
    return took


def push_to_live(runs: int = 10) -> list[Row]:
    root = Path(tempfile.mkdtemp(prefix="bo-push-", dir="/tmp"))
    try:
        repo, env = demo_copy(root)
        proxy = yaml.safe_load((repo / "lab.yaml").read_text())["domains"]["ops"]["listen"]
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        first = _commit(repo, "demo")
        with controller(root, repo, env) as (_, api):
            _wait(lambda: _applied(api) == first, 120, "the first sync")
            times = [_push_one(repo, api, proxy, f"new{i}") for i in range(runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [Row("commit + webhook -> new route answers through Caddy", times,
                target="< 2 s")]


def _half_changed(repo: Path) -> None:
    """Give every other service a new command: the next sync restarts half of them."""
    for part in sorted((repo / "services").glob("*.yaml")):
        data = yaml.safe_load(part.read_text())
        for i, svc in enumerate(data["services"].values()):
            if i % 2 == 0:
                svc["command"] = ["sleep", "1000001"]
        part.write_text(yaml.safe_dump(data, sort_keys=False))


def _last_sync(api: str, commit: str, **expect: int) -> float:
    """The controller's own record of the sync of `commit`: its duration, once its
    counts of changes are checked against `expect`."""
    syncs = httpx.get(f"{api}/api/history", timeout=30).json()["syncs"]
    mine = [s for s in syncs if s["commit"] == commit]
    assert mine and mine[0]["result"] == "ok", mine[:1]
    changes = mine[0]["changes"]
    assert all(changes.get(k) == v for k, v in expect.items()), (expect, changes)
    return float(mine[0]["duration_s"])


def _all_healthy(api: str, services: int) -> None:
    data = _status(api)
    assert data is not None and data["sync_state"] == "idle", data and data["last_errors"]
    states = [(s["health"], s["state"]) for s in data["services"]]
    healthy = states.count(("Healthy", "RUNNING"))
    assert healthy == services, (f"{healthy} of {services} services healthy and RUNNING; "
                                 f"{data['services'][:2]}")


def _more_files() -> None:
    """Raise this process's open-file limit to its hard limit: the controller and its
    supervisord inherit it, and 1,000 programs' pipes and logs pass a soft 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def controller_at_scale(services: int = 1000, timeout: float = 900) -> list[Row]:
    _more_files()
    root = Path(tempfile.mkdtemp(prefix="bo-mem-", dir="/tmp"))
    rows: list[Row] = []
    try:
        repo = root / "repo"
        write_lab(repo, local_lab(services, free_port(), free_ports(services)))
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        first = _commit(repo, "local lab")
        env = user_env(XDG_CACHE_HOME=str(root / "cache"))
        n = f"{services:,}"
        with controller(root, repo, env) as (proc, api):
            _wait(lambda: _applied(api) == first, timeout, "the first sync")
            _all_healthy(api, services)
            supervisord = int((root / "state" / "supervisor" / "supervisord.pid").read_text())
            rss_first = rss_kb(proc.pid) / 1024
            took = _last_sync(api, first, create=services + 1)
            rows.append(Row(f"controller: first sync, {n} local services started", [took],
                            note="validate, render, plan, start, probe, record"))
            _half_changed(repo)
            second = _commit(repo, "half the services changed")
            _webhook(api, repo, second)
            _wait(lambda: _applied(api) == second, timeout, "the second sync")
            _all_healthy(api, services)
            took = _last_sync(api, second, update=services // 2)
            rows.append(Row(f"controller: sync of a commit changing half of {n}", [took],
                            note="half the programs updated and restarted"))
            rows += [
                Row(f"controller RSS after syncing {n} local services", [rss_first],
                    unit="MB", target="< 100 MB", note="the controller process only"),
                Row(f"controller RSS after the second sync ({n})", [rss_kb(proc.pid) / 1024],
                    unit="MB", target="< 100 MB", note="the controller process only"),
                Row("controller peak RSS (VmHWM) over both syncs",
                    [rss_kb(proc.pid, "VmHWM") / 1024], unit="MB"),
                Row(f"its supervisord's RSS, {n} programs", [rss_kb(supervisord) / 1024],
                    unit="MB", note="a child, not counted above"),
            ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


# Peak RSS from VmHWM, which is this process's own: getrusage's ru_maxrss would carry
# over the high-water mark of the (forked) parent across exec.
FULL_RENDER = """
import sys, tempfile
from pathlib import Path
sys.path.insert(0, "bench")
from common import rss_kb, write_synthetic
from blumeops.lab.loader import load_lab
from blumeops.render import render_lab
from blumeops.core.plan import make_plan
with tempfile.TemporaryDirectory() as tmp:
    lab = load_lab(write_synthetic(Path(tmp), int(sys.argv[1]))).lab
make_plan(render_lab(lab), {})
print(rss_kb(0, "VmHWM"))
"""


def full_render_memory(services: int = 1000) -> list[Row]:
    peak = subprocess.run([sys.executable, "-c", FULL_RENDER, str(services)], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    return [Row(f"one process: load, render every layer, plan ({services:,} synthetic)",
                [int(peak) / 1024], unit="MB", note="peak RSS (VmHWM)")]


if __name__ == "__main__":
    for row in push_to_live() + controller_at_scale() + full_render_memory():
        print(row.as_dict())
