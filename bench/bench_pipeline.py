"""In-process speed of the core on synthetic labs: load + validate, render, plan.

Targets (DESIGN.md): validate + render + plan of 1,000 services <= 1 s in process.

What each number is:
- load + validate, cold: every in-process memo cleared before each run (clear_memos).
- after one file changed: the controller's case. The other files' parses are memoised;
  before each timed run one service file is rewritten with content it never had, and the
  run checks the edit was read.
- render, cold: every renderer memo cleared before each run (modules already imported);
  also the first render in a fresh process, imports included.
- plan: against empty live state, and against the rendering of a previous commit in
  which half the services differed (updates with diffs) and ten more existed (deletes).
- validate + render + plan: all three under one timer, memos cleared before each run,
  planned against that previous commit.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from blumeops.catalog.model import Lab
from blumeops.core.plan import Live, Plan, make_plan
from blumeops.core.resources import Resource
from blumeops.lab.loader import LoadResult, load_lab
from blumeops.render import render_lab

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, Row, Timer, clear_memos, previous_commit, write_lab, write_synthetic

FRESH_RENDER = """
import sys, time
from blumeops.lab.loader import load_lab
lab = load_lab(sys.argv[1]).lab
start = time.perf_counter()
from blumeops.render import render_lab
render_lab(lab)
print(time.perf_counter() - start)
"""


def _loaded(path: Path) -> Lab:
    result = load_lab(path)
    assert result.ok and result.lab is not None, [str(d) for d in result.errors[:3]]
    return result.lab


def live_state(resources: list[Resource]) -> dict[str, Live]:
    """What drivers would observe had these resources been applied (programs running)."""
    return {r.id: Live(r.body, True if r.kind == "program" else None) for r in resources}


def _one_file_changed(path: Path, runs: int) -> list[float]:
    """Reload times after rewriting one service file with new content before each run."""
    part = path.parent / "services" / "part000.yaml"
    original = part.read_text()
    edits = iter(range(1, runs + 2))
    last: list[LoadResult] = []
    expect: list[str] = []

    def change() -> None:
        word = f"service 1 (edit {next(edits)})"
        part.write_text(original.replace("service 1\n", word + "\n", 1))
        expect.append(word)

    clear_memos()
    load_lab(path)  # every file's parse memoised, as in a controller after a sync
    times = Timer(lambda: last.append(load_lab(path)), setup=change).run(runs)
    part.write_text(original)
    got = last[-1].lab
    assert got is not None and got.services["svc00001"].homepage is not None
    assert got.services["svc00001"].homepage.description == expect[-1], "edit not read"
    return times


def _fresh_render(path: Path, runs: int) -> list[float]:
    return [float(subprocess.run([sys.executable, "-c", FRESH_RENDER, str(path)], cwd=ROOT,
                                 check=True, capture_output=True, text=True).stdout)
            for _ in range(runs)]


def _end_to_end(path: Path, live: dict[str, Live], runs: int) -> tuple[list[float], Plan]:
    plans: list[Plan] = []

    def whole() -> None:
        lab = _loaded(path)
        plans.append(make_plan(render_lab(lab), live))

    return Timer(whole, setup=clear_memos).run(runs), plans[-1]


def _one_size(tmp: Path, n: int, runs: int) -> dict[str, tuple[list[float], str]]:
    """Every in-process measure for one lab size, by key."""
    path = write_synthetic(tmp / f"lab{n}", n)
    prev = write_lab(tmp / f"prev{n}", previous_commit(n))
    lab = _loaded(path)
    resources = render_lab(lab)
    live = live_state(render_lab(_loaded(prev)))
    diffs: list[Plan] = []
    out = {
        "load": (Timer(lambda: _loaded(path), setup=clear_memos).run(runs), ""),
        "reload": (_one_file_changed(path, runs), ""),
        "render": (Timer(lambda: render_lab(lab), setup=clear_memos).run(runs), ""),
        "render-fresh": (_fresh_render(path, runs),
                         "renderer imports included; the lab loaded untimed"),
        "plan-empty": (Timer(lambda: make_plan(resources, {})).run(runs), ""),
        "plan-diff": (Timer(lambda: diffs.append(make_plan(resources, live))).run(runs), ""),
    }
    counts = diffs[-1].counts()
    assert counts["update"] and counts["delete"], counts
    changed = (f"{len(resources)} resources; {counts['update']} updates with diffs, "
               f"{counts['delete']} deletes")
    e2e, plan = _end_to_end(path, live, runs)
    assert plan.counts() == counts
    out["plan-diff"] = (out["plan-diff"][0], changed)
    out["e2e"] = (e2e, changed)
    return out


def run(sizes: tuple[int, ...] = (100, 1000, 5000), runs: int = 5) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bo-bench-pipe-") as tmp:
        measured = {n: _one_size(Path(tmp), n, runs if n <= 1000 else max(3, runs // 2))
                    for n in sizes}
    labels = {
        "load": ("load + validate, cold (memos cleared), {n} services", "1,000 in <= 1 s"),
        "reload": ("load + validate after one file changed (controller), {n} services", ""),
        "render": ("render all layers, cold (memos cleared), {n} services", "1,000 in < 1 s"),
        "render-fresh": ("render all layers, first in a fresh process, {n} services", ""),
        "plan-empty": ("plan vs empty live state, {n} services", "1,000 in < 1 s"),
        "plan-diff": ("plan vs a previous commit (half differ), {n} services", "1,000 in < 1 s"),
        "e2e": ("validate + render + plan, one timer, {n} services", "1,000 in <= 1 s"),
    }
    return [Row(label.format(n=f"{n:,}"), measured[n][key][0], note=measured[n][key][1],
                target=target if n == 1000 else "")
            for key, (label, target) in labels.items() for n in sizes]


if __name__ == "__main__":
    for row in run():
        print(row.as_dict())
