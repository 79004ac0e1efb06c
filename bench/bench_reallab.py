"""`validate` + `render` of a lab the size of the real one, wall time (target < 0.3 s).

Issue 13's lab: 60 services, 4 hosts, 2 clusters. The synthetic lab (catalog/synthetic.py)
at that size, with its Kubernetes services split over a second cluster on another host
and a public proxy publishing every fifth route, so the public ingress, the second
cluster and every cross-layer rule are in what is timed.

- `blumeops render LAB --out DIR` is one command that loads, validates (every rule) and
  renders every layer, writing the files: the wall time of that process, bytecode
  cached as after install. Cold: a fresh, empty XDG_CACHE_HOME per run (nothing from the
  catalog cache); warm: the cache its warm-up filled.
- The same work in process (load + validate + render, memos cleared), without the
  interpreter's start and imports, to show where the wall time goes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from blumeops.catalog.synthetic import synthetic_lab
from blumeops.lab.loader import load_lab
from common import BLUMEOPS, Row, Timer, clear_memos, run_ok, user_env, write_lab

SERVICES, HOSTS = 60, 4


def real_sized_lab() -> dict[str, Any]:
    """60 services over 4 hosts and 2 clusters, a public proxy, all valid."""
    data = synthetic_lab(SERVICES, HOSTS)
    data["clusters"]["k3s-two"] = {"host": "host1", "context": "k3s-two",
                                   "delivery": "argocd"}
    data["hosts"]["edge"] = data["hosts"].pop(f"host{HOSTS - 1}")  # keep 4 hosts
    data["backups"]["to"] = "edge"
    data["public"] = {"host": "edge", "domain": "example.com", "address": "203.0.113.7",
                      "listen": 8080}
    k8s = 0
    for i, (name, svc) in enumerate(data["services"].items()):
        if svc.get("native") == f"host{HOSTS - 1}":
            svc["native"] = "edge"
        if "kubernetes" in svc:
            k8s += 1
            if k8s % 2 == 0:
                svc["kubernetes"] = "k3s-two"
                svc.pop("depends_on", None)  # stay within what the tailnet derives
        if i % 5 == 0:
            svc["public"] = True
            svc["environment"] = {"BASE_URL": f"https://{name}.example.com"}
    return data


def _check(out: Path) -> None:
    assert (out / "public" / "nginx.conf").is_file(), "render wrote no public ingress"
    assert any((out / "kubernetes" / "k3s-two").rglob("*.yaml")), "second cluster not rendered"


def render_wall(runs: int = 10) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bo-bench-real-") as tmp:
        root = Path(tmp)
        lab = write_lab(root / "lab", real_sized_lab(), per_file=20)
        result = load_lab(lab)
        assert result.ok and result.lab is not None, [str(d) for d in result.errors[:3]]
        assert len(result.lab.services) == SERVICES and len(result.lab.hosts) == HOSTS
        assert len(result.lab.clusters) == 2
        fresh = iter(range(runs + 2))
        env: dict[str, str] = {}
        out = root / "out"
        cmd = [*BLUMEOPS, "render", str(lab.parent), "--out", str(out)]

        def new_cache() -> None:
            env.clear()
            env.update(user_env(XDG_CACHE_HOME=f"{tmp}/cold{next(fresh)}"))

        cold = Timer(lambda: run_ok(cmd, env), setup=new_cache).run(runs)
        _check(out)
        env.clear()
        env.update(user_env(XDG_CACHE_HOME=f"{tmp}/warm"))
        warm = Timer(lambda: run_ok(cmd, env)).run(runs)

        from blumeops.render import render_lab

        def in_process() -> None:
            loaded = load_lab(lab)
            assert loaded.lab is not None
            render_lab(loaded.lab)

        inside = Timer(in_process, setup=clear_memos).run(runs)
    what = f"{SERVICES} services, {HOSTS} hosts, 2 clusters"
    return [
        Row(f"`blumeops render` (validate + render) of {what}, cold cache, wall", cold,
            target="< 0.3 s"),
        Row("the same, warm cache, wall", warm, target="< 0.3 s"),
        Row("the same work in process (load + validate + render, memos cleared)", inside),
    ]


def rows(quick: bool) -> list[Row]:
    return render_wall(3 if quick else 10)


if __name__ == "__main__":
    for row in render_wall():
        print(row.as_dict())
