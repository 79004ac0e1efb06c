"""Wall time of whole commands, as a person meets them.

- `blumeops validate examples/blumeops` (target <= 0.5 s)
- a no-op `blumeops apply` of the demo lab, running for real (target <= 0.3 s)
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLUMEOPS = [sys.executable, "-m", "blumeops"]
PORTS = ("18101", "18102", "18103", "18104", "8080")


def wall(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Best and median wall time; one warm-up run first, with bytecode caching on as a
    user has it (some shells here set PYTHONDONTWRITEBYTECODE)."""
    env = {k: v for k, v in (env or os.environ).items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, capture_output=True, env=env, check=False)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {proc.stderr.decode()[-500:]}")
    return min(times), statistics.median(times)


def validate_wall(runs: int = 10) -> dict[str, float]:
    cmd = [sys.executable, "-m", "blumeops", "validate", str(ROOT / "examples" / "blumeops")]
    best, median = wall(cmd, runs)
    return {"best_s": round(best, 3), "median_s": round(median, 3)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_copy(root: Path) -> tuple[Path, dict[str, str]]:
    """The demo lab on free ports, with its own key and state, as the tests run it."""
    lab = root / "lab"
    shutil.copytree(ROOT / "examples" / "demo", lab,
                    ignore=shutil.ignore_patterns("vault.age", "vault.recipients"))
    text = (lab / "lab.yaml").read_text()
    for port in PORTS:
        text = text.replace(port, str(free_port()))
    (lab / "lab.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env.update(BLUMEOPS_AGE_KEY=str(root / "age.key"), BLUMEOPS_STATE_DIR=str(root / "state"))
    subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(lab),
                    "demo/api-token", "--generate"], env=env, check=True, capture_output=True)
    return lab, env


@contextmanager
def running_demo(prefix: str) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """A private copy of the demo, applied and running; stopped and removed after.
    Yields (root, lab, env)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    lab, env = demo_copy(root)
    try:
        subprocess.run([*BLUMEOPS, "apply", str(lab), "--yes"], env=env, check=True,
                       capture_output=True)
        yield root, lab, env
    finally:
        subprocess.run([*BLUMEOPS, "down", str(lab)], env=env, capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def noop_apply_wall(runs: int = 10) -> dict[str, float]:
    with running_demo("bo-bench-") as (_, lab, env):
        best, median = wall([*BLUMEOPS, "apply", str(lab), "--yes"], runs, env)
    return {"best_s": round(best, 3), "median_s": round(median, 3)}


if __name__ == "__main__":
    print("validate examples/blumeops:", validate_wall())
    print("no-op apply of the demo:", noop_apply_wall())
