"""Run every benchmark and print one table: each number's median, spread and run count.

    make bench          # the project's own (needs no network)
    make bench-peers    # adds Ansible and pyinfra, in their own venv (bench/.venv-peers)

    bench/run.py [--peers] [--quick] [--json FILE]

--quick runs each measure fewer times and the controller at 100 services: for checking
the harness, not for quoting. The load average before and after is printed: numbers
taken on a busy machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure as users run it: bytecode cached

import bench_cli
import bench_gitops
import bench_peers
import bench_pipeline
from common import Row


def other_rows(quick: bool) -> list[Row]:
    """Benchmarks of other parts. Each module gives `rows(quick: bool) -> list[Row]`."""
    rows: list[Row] = []
    # --- other benchmarks: one line per module below
    rows += __import__("bench_api").rows(quick)
    rows += __import__("bench_dashboard").rows(quick)
    rows += __import__("bench_hydrate").rows(quick)
    rows += __import__("bench_transport").rows(quick)
    rows += __import__("bench_roundtrip").rows(quick)
    rows += __import__("bench_reallab").rows(quick)
    rows += __import__("bench_multihost").rows(quick) if "--peers" in sys.argv else []
    # --- end of other benchmarks
    return rows


def _value(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:.4f} s" if value < 0.01 else f"{value:.3f} s"


def table(rows: list[Row]) -> str:
    lines = ["| what | median | spread (best-worst) | runs | target | note |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        spread = (f"{_value(min(r.samples), r.unit)} - {_value(max(r.samples), r.unit)}"
                  if len(r.samples) > 1 else "-")
        lines.append(f"| {r.what} | {_value(r.median, r.unit)} | {spread} | "
                     f"{len(r.samples)} | {r.target} | {r.note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", action="store_true", help="also Ansible and pyinfra")
    parser.add_argument("--quick", action="store_true", help="few runs: check the harness")
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args()
    if args.peers and not bench_peers.available():
        sys.exit(f"peers missing in {bench_peers.PEERS}: run `make bench-peers`")
    quick = args.quick
    load_before = os.getloadavg()
    started = time.time()
    rows: list[Row] = []
    rows += bench_pipeline.run((100, 1000) if quick else (100, 1000, 5000),
                               runs=2 if quick else 5)
    rows += bench_cli.validate_wall(3 if quick else 10)
    rows += bench_cli.noop_apply_wall(3 if quick else 10)
    if args.peers:
        rows += bench_peers.peers_noop(1 if quick else 5)
    rows += bench_gitops.push_to_live(3 if quick else 10)
    rows += bench_gitops.controller_at_scale(100 if quick else 1000)
    rows += bench_gitops.full_render_memory(1000)
    rows += other_rows(quick)
    load_after = os.getloadavg()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{time.time() - started:.0f} s; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after{' (--quick: not for quoting)' if quick else ''}\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() | {"samples": r.samples} for r in rows],
                                        indent=2))


if __name__ == "__main__":
    main()
