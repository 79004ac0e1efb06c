"""Hydrating ArgoCD's deploy branch for the 1,000-service synthetic lab.

Targets (issue 11): render + write + commit < 2 s; a commit that changes nothing in the
cluster < 0.3 s. The origin is a bare repository on local disk, so the push is real git
but no network.
"""

from __future__ import annotations

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
from common import best_and_median, write_synthetic


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


def run(services: int = 1000, runs: int = 5) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        origin = root / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
        lab = _lab(root / "lab", services, origin)
        state = root / "state"
        start = time.perf_counter()
        changed, files = _hydrate(lab, state, "0" * 40)
        first = time.perf_counter() - start
        assert changed
        # A commit that changes one service's image: one deploy commit each time.
        k8s = [n for n, s in lab.services.items() if s.kubernetes]
        counter = iter(range(1, 1000))

        def one_change() -> None:
            i = next(counter)
            svc = lab.services[k8s[0]].model_copy(update={"image": f"example/x:{i}"})
            lab_i = lab.model_copy(update={"services": {**lab.services, k8s[0]: svc}})
            assert _hydrate(lab_i, state, f"{i:040x}")[0]

        change_best, change_med = best_and_median(one_change, runs)
        # No change in the cluster: render + compare, no commit.
        nochange_best, nochange_med = best_and_median(
            lambda: _hydrate(lab, state, "f" * 40), runs)
        resources = render_lab(lab, only=("kubernetes", "argocd"))
        git_best, git_med = best_and_median(
            lambda: hydrate_lab(lab, resources, "e" * 40, state), runs)
        # Without the remembered digest (a new state dir): fetch, rebuild, compare trees.
        fresh = iter(range(1000))
        _, fresh_med = best_and_median(
            lambda: hydrate_lab(lab, resources, "d" * 40, root / f"fresh{next(fresh)}"), runs)
        commits = subprocess.run(["git", "--git-dir", str(origin), "rev-list", "--count",
                                  "deploy"], capture_output=True, text=True, check=True)
        return {
            "services": services, "files": files,
            "first_hydration_s": round(first, 3),
            "one_service_changed_s": round(change_med, 3),
            "one_service_changed_best_s": round(change_best, 3),
            "no_change_s": round(nochange_med, 3),
            "no_change_best_s": round(nochange_best, 3),
            "no_change_git_only_s": round(git_med, 3),
            "no_change_git_only_best_s": round(git_best, 3),
            "no_change_fresh_state_s": round(fresh_med, 3),
            "deploy_commits": int(commits.stdout),
        }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
