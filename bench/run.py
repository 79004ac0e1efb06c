"""Run every benchmark and print the numbers the README quotes.

    make bench          # the project's own (needs no network)
    make bench-peers    # adds Ansible, in its own venv (bench/.venv-peers)
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure as users run it: bytecode cached

import bench_cli
import bench_gitops
import bench_peers
import bench_pipeline


def main() -> None:
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "pipeline_in_process": bench_pipeline.run(),
        "validate_blumeops_wall": bench_cli.validate_wall(),
        "noop_apply_demo_wall": bench_cli.noop_apply_wall(),
        "push_to_live": bench_gitops.push_to_live(),
        "memory": bench_gitops.controller_memory(),
    }
    if "--peers" in sys.argv:
        results["ansible_noop_same_job"] = bench_peers.ansible_noop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
