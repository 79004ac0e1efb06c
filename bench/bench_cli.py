"""Wall time of whole commands, as a person meets them (bytecode cached, as after install).

- `blumeops validate examples/blumeops` (target <= 0.5 s), cold and warm apart:
  cold runs each get a fresh, empty XDG_CACHE_HOME, so nothing is taken from the catalog
  cache (lab/cache.py); warm runs share one that the warm-up filled.
- a no-op `blumeops apply` of the demo lab, running for real (target <= 0.3 s): the
  catalog is unchanged since the apply that started it, so the cache is warm, as it is
  for a person re-running apply.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BLUMEOPS, ROOT, Row, Timer, free_port, run_ok, user_env

PORTS = ("18101", "18102", "18103", "18104", "8080")
VALIDATE = [*BLUMEOPS, "validate", str(ROOT / "examples" / "blumeops")]


def validate_wall(runs: int = 10) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bo-bench-xdg-") as tmp:
        fresh = iter(range(runs + 1))
        env: dict[str, str] = {}

        def new_cache() -> None:
            env.clear()
            env.update(user_env(XDG_CACHE_HOME=f"{tmp}/cold{next(fresh)}"))

        def cached() -> bool:
            return any(Path(env["XDG_CACHE_HOME"]).rglob("*.pickle"))

        cold = Timer(lambda: run_ok(VALIDATE, env), setup=new_cache).run(runs)
        assert cached(), "validate stored nothing in the cache: cold/warm would be the same"
        env.update(user_env(XDG_CACHE_HOME=f"{tmp}/warm"))
        warm = Timer(lambda: run_ok(VALIDATE, env)).run(runs)
    return [Row("`blumeops validate examples/blumeops`, cold (empty cache), wall", cold,
                target="<= 0.5 s"),
            Row("`blumeops validate examples/blumeops`, warm (cache hit), wall", warm,
                target="<= 0.5 s")]


def demo_copy(root: Path) -> tuple[Path, dict[str, str]]:
    """The demo lab on free ports, with its own key, state and cache, as the tests run it."""
    lab = root / "lab"
    shutil.copytree(ROOT / "examples" / "demo", lab,
                    ignore=shutil.ignore_patterns("vault.age", "vault.recipients"))
    text = (lab / "lab.yaml").read_text()
    for port in PORTS:
        text = text.replace(port, str(free_port()))
    (lab / "lab.yaml").write_text(text)
    env = user_env(BLUMEOPS_AGE_KEY=str(root / "age.key"),
                   BLUMEOPS_STATE_DIR=str(root / "state"), XDG_CACHE_HOME=str(root / "cache"))
    run_ok([*BLUMEOPS, "secret", "set", str(lab), "demo/api-token", "--generate"], env)
    return lab, env


@contextmanager
def running_demo(prefix: str) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """A private copy of the demo, applied and running; stopped and removed after.
    Yields (root, lab, env)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        lab, env = demo_copy(root)
        run_ok([*BLUMEOPS, "apply", str(lab), "--yes"], env)
        yield root, lab, env
    finally:
        if (root / "lab").exists():
            subprocess.run([*BLUMEOPS, "down", str(root / "lab")], capture_output=True,
                           check=False, env=user_env(BLUMEOPS_STATE_DIR=str(root / "state")))
        shutil.rmtree(root, ignore_errors=True)


def noop_apply_wall(runs: int = 10) -> list[Row]:
    with running_demo("bo-bench-") as (_, lab, env):
        cmd = [*BLUMEOPS, "apply", str(lab), "--yes"]
        times = Timer(lambda: run_ok(cmd, env)).run(runs)
        plan = run_ok([*BLUMEOPS, "plan", str(lab)], env).stdout.strip()
    assert plan.startswith("No changes"), f"the applies were not no-ops: {plan[:300]}"
    return [Row("no-op `blumeops apply` of the running demo, wall", times, target="<= 0.3 s",
                note=plan.splitlines()[0].removeprefix("No changes: "))]


if __name__ == "__main__":
    for row in validate_wall() + noop_apply_wall():
        print(row.as_dict())
