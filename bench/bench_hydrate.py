"""Hydrating ArgoCD's deploy branch for the 1,000-service synthetic lab.

Targets (issue 11): render + write + commit < 2 s; a commit that changes nothing in the
cluster < 0.3 s. The origin is a bare repository on local disk, so the push is real git
but no network.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from blumeops.catalog.loader import load_lab
from blumeops.catalog.model import Lab
from blumeops.delivery.hydrate import hydrate_lab
from blumeops.render import render_lab

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, Timer, write_synthetic


def _lab(directory: Path, services: int, origin: Path) -> Lab:
    path = write_synthetic(directory, services)
    data = yaml.safe_load(path.read_text())
    for cluster in data["clusters"].values():
        cluster.update(repo_url=str(origin), deploy_branch="deploy")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = load_lab(path)
    assert result.lab is not None, [str(d) for d in result.errors[:3]]
    return result.lab


def _hydrate(lab: Lab, state: Path, commit: str) -> tuple[bool, int]:
    resources = render_lab(lab, only=("kubernetes", "argocd"))
    [r] = hydrate_lab(lab, resources, commit, state, subject="bench")
    return r.changed, r.files


def run(services: int = 1000, runs: int = 5) -> dict[str, list[float]]:
    """Seconds per run of each case (the first hydration runs once)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        origin = root / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
        lab = _lab(root / "lab", services, origin)
        state = root / "state"
        start = time.perf_counter()
        changed, _files = _hydrate(lab, state, "0" * 40)
        first = time.perf_counter() - start
        assert changed
        # A commit that changes one service's image: one deploy commit each time.
        k8s = [n for n, s in lab.services.items() if s.kubernetes]
        counter = iter(range(1, 1000))
        current = [lab]  # the lab as last hydrated

        def one_change() -> None:
            i = next(counter)
            svc = lab.services[k8s[0]].model_copy(update={"image": f"example/x:{i}"})
            current[0] = lab.model_copy(update={"services": {**lab.services, k8s[0]: svc}})
            assert _hydrate(current[0], state, f"{i:040x}")[0]

        def no_change() -> None:  # render + compare, no commit
            assert not _hydrate(current[0], state, f"{next(counter):040x}")[0]

        changed_runs = Timer(one_change).run(runs)
        lab = current[0]
        resources = render_lab(lab, only=("kubernetes", "argocd"))
        fresh = iter(range(1000))
        return {
            "first_hydration": [first],
            "one_service_changed": changed_runs,
            "no_change": Timer(no_change).run(runs),
            "no_change_git_only": Timer(
                lambda: hydrate_lab(lab, resources, "e" * 40, state)).run(runs),
            # Without the remembered digest (a new state dir): fetch, rebuild, compare trees.
            "no_change_fresh_state": Timer(lambda: hydrate_lab(
                lab, resources, "d" * 40, root / f"fresh{next(fresh)}")).run(runs),
        }


def rows(quick: bool) -> list[Row]:
    """For bench/run.py."""
    n = 100 if quick else 1000
    r = run(services=n, runs=3 if quick else 5)
    what = f"hydrate ArgoCD's deploy branch, {n:,}-service lab"
    return [Row(f"{what}: first (render + write + commit + push)", r["first_hydration"],
                target="< 2 s"),
            Row(f"{what}: a commit changing one service", r["one_service_changed"]),
            Row(f"{what}: a commit changing nothing in the cluster", r["no_change"],
                target="< 0.3 s"),
            Row(f"{what}: the same with an empty state dir", r["no_change_fresh_state"])]


if __name__ == "__main__":
    import json

    print(json.dumps({k: round(statistics.median(v), 3) for k, v in run().items()}, indent=2))
