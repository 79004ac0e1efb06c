"""Shared bits for benchmarks: timing and synthetic labs written to disk."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from blumeops.catalog.synthetic import synthetic_lab


def best_and_median(fn: Callable[[], object], runs: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def write_synthetic(directory: Path, services: int, hosts: int = 10) -> Path:
    """A synthetic lab as YAML on disk: lab.yaml plus services split over files."""
    directory.mkdir(parents=True, exist_ok=True)
    data = synthetic_lab(services, hosts)
    svcs = data.pop("services")
    data["include"] = ["services/*.yaml"]
    (directory / "services").mkdir(exist_ok=True)
    names = list(svcs)
    for i in range(0, len(names), 100):
        chunk = {n: svcs[n] for n in names[i:i + 100]}
        (directory / "services" / f"part{i // 100:03d}.yaml").write_text(
            yaml.safe_dump({"services": chunk}, sort_keys=False))
    (directory / "lab.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory / "lab.yaml"
