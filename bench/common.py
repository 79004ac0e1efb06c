"""Shared bits for benchmarks: rows of results, timing, memo clearing, labs on disk."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blumeops.catalog.synthetic import synthetic_lab

ROOT = Path(__file__).resolve().parent.parent
BLUMEOPS = [sys.executable, "-m", "blumeops"]


@dataclass
class Row:
    """One line of the results table: every sample kept, so the spread is shown too."""

    what: str
    samples: list[float]
    unit: str = "s"
    target: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "unit": self.unit, "median": round(self.median, 4),
                "best": round(min(self.samples), 4), "worst": round(max(self.samples), 4),
                "runs": len(self.samples), "target": self.target, "note": self.note}


@dataclass
class Timer:
    """Times `fn`, calling `setup` (untimed) before every run, after one untimed warm-up.

    `setup` is where a benchmark makes each run what it claims: caches cleared for a
    cold run, a file really changed for a "one file changed" run.
    """

    fn: Callable[[], object]
    setup: Callable[[], object] = field(default=lambda: None)
    warmup: bool = True

    def run(self, runs: int) -> list[float]:
        if self.warmup:
            self.setup()
            self.fn()
        times = []
        for _ in range(runs):
            self.setup()
            start = time.perf_counter()
            self.fn()
            times.append(time.perf_counter() - start)
        return times


def user_env(**extra: str) -> dict[str, str]:
    """The environment a user runs blumeops in: no BLUMEOPS_* leaking in from this
    shell, bytecode caching on (some shells here set PYTHONDONTWRITEBYTECODE)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BLUMEOPS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def run_ok(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure raises with the end of its output (a benchmark of a
    failing command measures nothing)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout)[-800:]}")
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clear_memos() -> list[str]:
    """Empty every in-process memo of blumeops's core, so the next load or render is cold.

    That is the parsed-file cache of catalog/yamlfile.py and every functools cache
    (anything with `cache_clear`) in a loaded blumeops module, found by looking rather
    than by name, so a memo added later is cleared too. Returns what was cleared.
    """
    from blumeops.catalog import yamlfile

    yamlfile._PARSED.clear()
    cleared = ["catalog.yamlfile._PARSED"]
    for name, module in list(sys.modules.items()):
        if not name.startswith("blumeops.") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and getattr(value, "__module__", None) == name:
                clear()
                cleared.append(f"{name.removeprefix('blumeops.')}.{attr}")
    return cleared


def write_lab(directory: Path, data: dict[str, Any], per_file: int = 100) -> Path:
    """Catalog data as YAML on disk: lab.yaml plus services split over files of
    `per_file` services each, included by a glob."""
    directory.mkdir(parents=True, exist_ok=True)
    data = dict(data)
    svcs = data.pop("services")
    data["include"] = ["services/*.yaml"]
    (directory / "services").mkdir(exist_ok=True)
    names = list(svcs)
    for i in range(0, len(names), per_file):
        chunk = {n: svcs[n] for n in names[i:i + per_file]}
        (directory / "services" / f"part{i // per_file:03d}.yaml").write_text(
            yaml.safe_dump({"services": chunk}, sort_keys=False))
    (directory / "lab.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory / "lab.yaml"


def write_synthetic(directory: Path, services: int, hosts: int = 10) -> Path:
    """The synthetic lab (catalog/synthetic.py) on disk: its hosts are not this machine."""
    return write_lab(directory, synthetic_lab(services, hosts))


def previous_commit(services: int, hosts: int = 10) -> dict[str, Any]:
    """The synthetic lab as it might have been one commit earlier: every other service
    had another image or command, and ten services since removed still existed."""
    data = synthetic_lab(services + 10, hosts)
    for i, svc in enumerate(data["services"].values()):
        if i % 2 == 0:
            if "image" in svc:
                svc["image"] = svc["image"].replace(":1.", ":0.")
            else:
                svc["command"] = [*svc["command"], "--previous"]
    return data


def local_lab(services: int, proxy_port: int, ports: list[int]) -> dict[str, Any]:
    """A lab that runs entirely on this machine: `services` supervised programs on one
    `local: true` host, each with a port, a route through Caddy and a health probe;
    every fourth depends on the one before (two start waves).

    The programs are `sleep`, so a thousand of them fit on a small machine; the probe
    is a command (`true`) for the same reason: a thousand HTTP servers would not fit.
    """
    svcs: dict[str, Any] = {}
    for i in range(services):
        name = f"svc{i:05d}"
        svc: dict[str, Any] = {
            "native": "box",
            "command": ["sleep", "1000000"],
            "environment": {"PORT": str(ports[i]), "NAME": name},
            "ports": {"http": ports[i]},
            "routes": {f"{name}.ops": "http"},
            "health": {"command": ["true"]},
            "homepage": {"group": f"group{i % 7}", "description": f"service {i}"},
        }
        if i > 0 and i % 4 == 0:
            svc["depends_on"] = [f"svc{i - 1:05d}"]
        svcs[name] = svc
    return {
        "lab": "local-bench",
        "domains": {"ops": {"suffix": "ops.localhost", "proxy": "caddy", "host": "box",
                            "listen": f"127.0.0.1:{proxy_port}", "tls": "off"}},
        "hosts": {"box": {"role": "compute", "os": "linux", "service_manager": "supervisor",
                          "local": True, "address": "127.0.0.1"}},
        "services": svcs,
    }


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nothing listens on now (held open together while chosen,
    so the kernel hands out different ones)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    """A process's resident set (or peak, with VmHWM) in KiB, from /proc; pid 0 is this
    process."""
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} for pid {pid}")
