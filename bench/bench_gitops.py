"""The GitOps loop: push-to-live latency, and the controller's memory.

- push-to-live: commit a new service + route, post a signed webhook, time until the
  route answers through Caddy; median of 10 (target < 2 s).
- memory: RSS of a controller that has synced the 1,000-service synthetic lab
  (validated, rendered and planned; its hosts are not this machine, so nothing runs),
  and of one process that loads, renders every layer and plans it (target < 100 MB).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_cli import PORTS, ROOT, free_port
from common import write_synthetic

SECRET = "bench-secret"
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def _wait(pred: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise TimeoutError


def _webhook(api: str, repo: Path, commit: str) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": commit,
                       "repository": {"full_name": "bench/lab", "clone_url": str(repo)},
                       "pusher": {"login": "bench"}}).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    httpx.post(f"{api}/api/webhook", content=body, timeout=10,
               headers={"X-Forgejo-Event": "push", "X-Forgejo-Signature": sig})


def _controller(root: Path, repo: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes],
                                                                      str]:
    api = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "blumeops", "controller", "--source",
                             str(repo), "--listen", api, "--interval", "300", "--state-dir",
                             str(root / "state")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, f"http://{api}"


def _applied(api: str) -> str | None:
    try:
        data = httpx.get(f"{api}/api/status", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    return data["applied"] if data["sync_state"] != "syncing" else None


def push_to_live(runs: int = 10) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="bo-push-", dir="/tmp"))
    repo = root / "repo"
    shutil.copytree(ROOT / "examples" / "demo", repo,
                    ignore=shutil.ignore_patterns("vault.age", "vault.recipients"))
    ports = {p: str(free_port()) for p in PORTS}
    text = (repo / "lab.yaml").read_text()
    for old, new in ports.items():
        text = text.replace(old, new)
    (repo / "lab.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env.update(BLUMEOPS_AGE_KEY=str(root / "age.key"), BLUMEOPS_WEBHOOK_SECRET=SECRET)
    subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(repo),
                    "demo/api-token", "--generate"], env=env, check=True, capture_output=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "demo")
    proc, api = _controller(root, repo, env)
    times = []
    try:
        first = _git(repo, "rev-parse", "HEAD")
        _wait(lambda: _applied(api) == first, 60)
        for i in range(runs):
            port = free_port()
            name = f"new{i}"
            text = (repo / "lab.yaml").read_text().replace("services:\n", (
                f"services:\n  {name}:\n    native: box\n    command: [python3, -m, "
                f"http.server, '{port}', --bind, 127.0.0.1, --directory, site]\n"
                f"    ports: {{http: {port}}}\n    routes: {{{name}.ops: http}}\n"
                f"    health: {{http: /}}\n"), 1)
            (repo / "lab.yaml").write_text(text)
            _git(repo, "add", "-A")
            _git(repo, "commit", "-q", "-m", f"add {name}")
            commit = _git(repo, "rev-parse", "HEAD")
            url = f"http://127.0.0.1:{ports['8080']}/"
            start = time.perf_counter()
            _webhook(api, repo, commit)

            def live(url: str = url, name: str = name) -> bool:
                try:
                    r = httpx.get(url, headers={"Host": f"{name}.ops.localhost"}, timeout=2)
                except httpx.HTTPError:
                    return False
                return "BlumeOps demo" in r.text

            _wait(live, 30)
            times.append(time.perf_counter() - start)
            _wait(lambda c=commit: _applied(api) == c, 30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        subprocess.run([sys.executable, "-m", "blumeops", "down",
                        str(root / "state" / "source" / "live"), "--state-dir",
                        str(root / "state")], env=env, capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
    return {"median_s": round(statistics.median(times), 3), "best_s": round(min(times), 3),
            "worst_s": round(max(times), 3), "runs": runs}


def controller_memory(services: int = 1000) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="bo-mem-", dir="/tmp"))
    repo = root / "repo"
    write_synthetic(repo, services)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "synthetic")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    proc, api = _controller(root, repo, env)
    try:
        first = _git(repo, "rev-parse", "HEAD")
        _wait(lambda: _applied(api) == first, 120)
        rss_kb = 0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    # One process doing every layer: load, validate, render everything, plan.
    code = ("import sys,resource; sys.path.insert(0,'bench');"
            "from common import write_synthetic; import tempfile; from pathlib import Path;"
            "from blumeops.catalog.loader import load_lab; from blumeops.render import "
            "render_lab; from blumeops.engine.plan import make_plan;"
            f"p=write_synthetic(Path(tempfile.mkdtemp()), {services}); lab=load_lab(p).lab;"
            "r=render_lab(lab); make_plan(r, {});"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peak = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout.strip()
    return {"controller_rss_mb": round(rss_kb / 1024, 1),
            "full_render_plan_peak_rss_mb": round(int(peak) / 1024, 1)}


if __name__ == "__main__":
    print("push-to-live:", push_to_live())
    print("memory:", controller_memory())

