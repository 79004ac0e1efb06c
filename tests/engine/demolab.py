"""A private copy of the demo lab per test: own ports, own state dir, own age key.

Every test talks to a real supervisord and a real Caddy through the real CLI; teardown
runs `blumeops down` and fails the test if any process of the lab is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO_PORTS = ("18101", "18102", "18103", "18104", "8080")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lab_pids(marker: str) -> list[int]:
    """Processes whose command line or environment mentions `marker` (the lab dir)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if marker.encode() in cmd or marker.encode() in env:
            out.append(int(entry))
    return out


def reap(root: Path) -> list[int]:
    """Wait for the lab's processes under `root` to go; kill and return any that stay."""
    deadline = time.monotonic() + 10
    while lab_pids(str(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = lab_pids(str(root))
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    shutil.rmtree(root, ignore_errors=True)
    return left


@dataclass
class DemoLab:
    root: Path
    ports: dict[str, int]
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    @property
    def lab(self) -> Path:
        return self.root / "lab"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def proxy_port(self) -> int:
        return self.ports["8080"]

    def run(self, *args: str, input: str | None = None, check: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "blumeops", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, input=input,
                              timeout=timeout, check=False, cwd=self.root)
        self.outputs.append(proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout}"
                                 f"\n{proc.stderr}")
        return proc

    def cli(self, command: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """A lab command with this lab and state dir."""
        return self.run(command, str(self.lab), "--state-dir", str(self.state), *args, **kw)

    def get(self, name: str, path: str = "/") -> httpx.Response:
        """A request through Caddy, as a browser sends it."""
        return httpx.get(f"http://127.0.0.1:{self.proxy_port}{path}",
                         headers={"Host": f"{name}.ops.localhost"}, timeout=5)

    def edit(self, old: str, new: str) -> None:
        path = self.lab / "lab.yaml"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))


@pytest.fixture(name="demo")
def demo_fixture() -> Iterator[DemoLab]:
    root = Path(tempfile.mkdtemp(prefix="bo-", dir="/tmp"))  # short: unix socket paths
    shutil.copytree(EXAMPLES / "demo", root / "lab",
                    ignore=shutil.ignore_patterns("vault.age", "vault.recipients"))
    ports = {p: free_port() for p in DEMO_PORTS}
    text = (root / "lab" / "lab.yaml").read_text()
    for old, new in ports.items():
        text = text.replace(old, str(new))
    (root / "lab" / "lab.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env["BLUMEOPS_AGE_KEY"] = str(root / "age.key")
    env["XDG_CACHE_HOME"] = str(root / "cache")  # the catalog cache, searched by the canary
    lab = DemoLab(root, ports, env)
    lab.run("secret", "set", str(lab.lab), "demo/api-token", input="demo-token-value\n", check=True)
    try:
        yield lab
    finally:
        lab.cli("down")
        left = reap(root)
        assert not left, f"processes left behind after down: {left}"
