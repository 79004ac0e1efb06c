"""In-process speed of the core: load + validate, render, and plan against empty state.

Targets (DESIGN.md): validate + render + plan of 1,000 services <= 1 s in process.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from blumeops.catalog import yamlfile
from blumeops.catalog.loader import load_lab
from blumeops.engine.plan import make_plan
from blumeops.render import render_lab

sys.path.insert(0, str(Path(__file__).parent))
from common import best_and_median, write_synthetic


def cold_load(path: Path) -> object:
    """A first load: no file parsed before in this process."""
    yamlfile._PARSED.clear()
    return load_lab(path)


def run(sizes: tuple[int, ...] = (100, 1000, 5000)) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = write_synthetic(Path(tmp) / f"lab{n}", n)
            result = load_lab(path)
            assert result.ok, [str(d) for d in result.errors[:3]]
            lab = result.lab
            assert lab is not None
            runs = 5 if n <= 1000 else 3
            load_best, load_med = best_and_median(lambda p=path: cold_load(p), runs)
            # What a controller pays for a commit that changed one of the service files.
            part = path.parent / "services" / "part000.yaml"
            original = part.read_text()
            yamlfile._PARSED.clear()
            load_lab(path)
            part.write_text(original.replace("service 1\n", "service one\n", 1))
            _, warm_med = best_and_median(lambda p=path: load_lab(p), runs)
            part.write_text(original)
            resources = render_lab(lab)
            render_best, render_med = best_and_median(lambda lab_=lab: render_lab(lab_), runs)
            plan_best, plan_med = best_and_median(lambda r=resources: make_plan(r, {}), runs)
            rows.append({
                "services": n, "resources": len(resources),
                "load_validate_s": round(load_med, 3),
                "reload_one_file_changed_s": round(warm_med, 3),
                "render_s": round(render_med, 3),
                "plan_s": round(plan_med, 3),
                "total_s": round(load_med + render_med + plan_med, 3),
                "best_total_s": round(load_best + render_best + plan_best, 3),
            })
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
