"""Hydrating ArgoCD's deploy branch for a synthetic lab of N Kubernetes services.

Every one of the N services is a Kubernetes service (the synthetic lab's natives are made
Kubernetes services here), so the branch holds all N. Targets (issue 11): render + write +
commit < 2 s; a commit that changes nothing in the cluster < 0.3 s. The origin is a bare
repository on local disk, so the push is real git but no network. The first hydration
(empty origin, empty state dir) is timed cold (every in-process memo cleared, the lab
loaded afresh) and warm (the same lab just rendered) as separate rows.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from blumeops.catalog.model import Lab
from blumeops.catalog.synthetic import synthetic_lab
from blumeops.kubernetes.hydrate import hydrate_lab
from blumeops.lab.loader import load_lab
from blumeops.render import render_lab

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, Timer, clear_memos, write_lab


def _lab_path(directory: Path, services: int, origin: Path) -> Path:
    """The synthetic lab with every service on the cluster (`services` of them)."""
    data = synthetic_lab(services, 10)
    for cluster in data["clusters"].values():
        cluster.update(repo_url=str(origin), deploy_branch="deploy")
    for name, svc in data["services"].items():
        if svc.get("native"):
            for key in ("native", "command", "backup"):
                svc.pop(key, None)
            svc.update(kubernetes="k3s", image=f"example/{name}:1.0")
    return write_lab(directory, data)


def _load(path: Path) -> Lab:
    result = load_lab(path)
    assert result.lab is not None, [str(d) for d in result.errors[:3]]
    assert all(s.kubernetes for s in result.lab.services.values())
    return result.lab


def _lab(directory: Path, services: int, origin: Path) -> Lab:
    return _load(_lab_path(directory, services, origin))


def first_hydrations(services: int, runs: int) -> dict[str, list[float]]:
    """Seconds of a first hydration (empty origin, empty state dir): cold (memos cleared,
    lab loaded afresh, untimed) and warm (the lab rendered just before)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        origin = root / "origin.git"
        path = _lab_path(root / "lab", services, origin)
        labs: list[Lab] = []
        states = iter(range(10_000))

        def empty_origin() -> None:
            subprocess.run(["rm", "-rf", str(origin)], check=True)
            subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)

        def cold_setup() -> None:
            empty_origin()
            clear_memos()
            labs[:] = [_load(path)]
            clear_memos()  # loading fills memos rendering would use

        def warm_setup() -> None:
            empty_origin()
            if not labs:
                labs.append(_load(path))
            render_lab(labs[0], only=("kubernetes", "argocd"))

        def first() -> None:
            changed, files = _hydrate(labs[0], root / f"state{next(states)}", "0" * 40)
            assert changed and files >= services

        return {"cold": Timer(first, cold_setup, warmup=False).run(runs),
                "warm": Timer(first, warm_setup).run(runs)}


def _hydrate(lab: Lab, state: Path, commit: str) -> tuple[bool, int]:
    resources = render_lab(lab, only=("kubernetes", "argocd"))
    [r] = hydrate_lab(lab, resources, commit, state, subject="bench")
    return r.changed, r.files


def run(services: int = 1000, runs: int = 5) -> dict[str, list[float]]:
    """Seconds per run of each case after a first hydration (timed by first_hydrations)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        origin = root / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
        lab = _lab(root / "lab", services, origin)
        state = root / "state"
        assert _hydrate(lab, state, "0" * 40)[0]
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
    runs = 3 if quick else 5
    r = run(services=n, runs=runs)
    first = first_hydrations(n, runs)
    what = f"hydrate ArgoCD's deploy branch, {n:,} Kubernetes services"
    return [Row(f"{what}: first (render + write + commit + push), cold", first["cold"],
                target="< 2 s", note="memos cleared, lab loaded afresh (untimed)"),
            Row(f"{what}: first, warm", first["warm"], target="< 2 s",
                note="the lab rendered just before"),
            Row(f"{what}: a commit changing one service", r["one_service_changed"]),
            Row(f"{what}: a commit changing nothing in the cluster", r["no_change"],
                target="< 0.3 s"),
            Row(f"{what}: the same with an empty state dir", r["no_change_fresh_state"])]


if __name__ == "__main__":
    import json

    services = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    results = {**run(services, runs), **{f"first_{k}": v for k, v in
                                          first_hydrations(services, runs).items()}}
    print(json.dumps({k: round(statistics.median(v), 3) for k, v in results.items()},
                     indent=2))
