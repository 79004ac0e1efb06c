"""A git repository holding a private copy of the demo lab, and a controller following it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from demolab import DEMO_PORTS, EXAMPLES, free_port, reap

from polling import wait_for

SECRET = "webhook-secret-for-tests"
TOKEN = "api-token-for-tests"
GIT = ["git", "-c", "user.name=Erich", "-c", "user.email=erich@example.com"]


@dataclass
class Followed:
    root: Path
    repo: Path
    env: dict[str, str]
    ports: dict[str, int]
    api: str
    proc: subprocess.Popen[str] | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def git(self, *args: str) -> str:
        return subprocess.run([*GIT, *args], cwd=self.repo, check=True, capture_output=True,
                              text=True).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def edit(self, old: str, new: str) -> None:
        path = self.repo / "lab.yaml"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))

    @property
    def log(self) -> Path:
        """The controller's stdout and stderr (appended across restarts)."""
        return self.root / "controller.log"

    def start(self, interval: float = 30.0, *flags: str) -> None:
        cmd = [sys.executable, "-m", "blumeops", "controller", "--source", str(self.repo),
               "--listen", self.api.removeprefix("http://"), "--interval", str(interval),
               "--state-dir", str(self.state), *flags]
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, text=True, cwd=self.root)
        wait_for(lambda: self.status_or_none() is not None, 30, "controller API")

    def metric(self, name: str) -> float:
        """One sample of the controller's /metrics (0 when absent)."""
        for line in httpx.get(f"{self.api}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        got = httpx.get(f"{self.api}/api/events?limit=1000", timeout=5).json()["events"]
        return [e for e in got if kind is None or e["kind"] == kind]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def status_or_none(self) -> dict[str, Any] | None:
        try:
            return httpx.get(f"{self.api}/api/status", timeout=5).json()  # type: ignore[no-any-return]
        except httpx.HTTPError:
            return None

    def status(self) -> dict[str, Any]:
        data = self.status_or_none()
        assert data is not None
        return data

    def webhook(self, commit: str, branch: str = "main", sign: bool = True,
                secret: str = SECRET) -> httpx.Response:
        body = json.dumps({
            "ref": f"refs/heads/{branch}", "after": commit, "before": "0" * 40,
            "repository": {"full_name": "erich/lab", "clone_url": str(self.repo),
                           "html_url": str(self.repo), "ssh_url": str(self.repo)},
            "pusher": {"login": "erich"},
        }).encode()
        headers = {"X-Forgejo-Event": "push", "Content-Type": "application/json"}
        if sign:
            headers["X-Forgejo-Signature"] = hmac.new(secret.encode(), body,
                                                      hashlib.sha256).hexdigest()
        return httpx.post(f"{self.api}/api/webhook", content=body, headers=headers, timeout=10)

    def post(self, path: str, body: dict[str, Any] | None = None,
             token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.api}{path}", json=body or {}, headers=headers, timeout=10)

    def get(self, name: str, path: str = "/") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.ports['8080']}{path}",
                         headers={"Host": f"{name}.ops.localhost"}, timeout=5)

    def answers(self, name: str, text: str) -> bool:
        try:
            return text in self.get(name).text
        except httpx.HTTPError:
            return False

    def passes(self, kind: str, n: int, timeout: float = 60) -> None:
        """Wait until `n` more `kind` passes ("fetch" or "heal") are counted than now: at
        least n - 1 of them began after this call (one may have been under way). What a
        test waits on before saying that something did not happen."""
        key = f"{kind}_passes"
        start = int(self.status()[key])
        wait_for(lambda: int(self.status()[key]) >= start + n, timeout,
                 lambda: f"{n} more {kind} passes than {start}: {self.status()[key]}")

    def settled(self, timeout: float = 60) -> dict[str, Any]:
        """Wait until every wake asked so far (webhooks, syncs, rollbacks) was handled by
        a finished pass that began after it; the status then."""
        def done() -> dict[str, Any] | None:
            st = self.status()
            return st if st["wakes_handled"] >= st["wakes"] else None

        return wait_for(done, timeout, lambda: f"the wakes to be handled: {self.status()}")

    def synced(self, commit: str) -> bool:
        data = self.status_or_none()
        return bool(data and data["applied"] == commit and data["sync_state"] != "syncing")



@pytest.fixture(name="followed")
def followed_fixture() -> Iterator[Followed]:
    root = Path(tempfile.mkdtemp(prefix="bo-c-", dir="/tmp"))
    repo = root / "repo"
    shutil.copytree(EXAMPLES / "demo", repo,
                    ignore=shutil.ignore_patterns("vault.age", "vault.recipients"))
    ports = {p: free_port() for p in DEMO_PORTS}
    text = (repo / "lab.yaml").read_text()
    for old, new in ports.items():
        text = text.replace(old, str(new))
    (repo / "lab.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env.update(XDG_CACHE_HOME=str(root / "cache"), BLUMEOPS_AGE_KEY=str(root / "age.key"),
               BLUMEOPS_API_TOKEN=TOKEN,
               BLUMEOPS_WEBHOOK_SECRET=SECRET)
    subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(repo),
                    "demo/api-token", "--value", "t0ken"], env=env, check=True,
                   capture_output=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    f = Followed(root, repo, env, ports, f"http://127.0.0.1:{free_port()}")
    f.commit("the demo lab")
    try:
        yield f
    finally:
        f.stop()
        lab = f.state / "source" / "live"
        subprocess.run([sys.executable, "-m", "blumeops", "down", str(lab), "--state-dir",
                        str(f.state)], env=env, capture_output=True, check=False)
        left = reap(root)
        assert not left, f"processes left behind: {left}"
