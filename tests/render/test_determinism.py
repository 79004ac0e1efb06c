"""The same catalog renders byte-identical files in two separate processes.

Rendering twice in one process cannot catch output that depends on the hash seed
(set or dict order of strings) or on a per-process cache: here two `blumeops render`
runs with different PYTHONHASHSEED values and separate, empty catalog caches must
write the same tree, file for file, byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "examples" / "blumeops"


def render(out: Path, seed: str, cache: Path) -> dict[str, bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env.update(PYTHONHASHSEED=seed, XDG_CACHE_HOME=str(cache))
    proc = subprocess.run([sys.executable, "-m", "blumeops", "render", str(LAB), "--out",
                           str(out)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {str(p.relative_to(out)): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_render_is_identical_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    first = render(tmp_path / "a", "1", tmp_path / "cache-a")
    second = render(tmp_path / "b", "4242", tmp_path / "cache-b")
    # Every layer is there, so the comparison covers them all.
    tops = {name.split("/")[0] for name in first}
    assert tops == {"alloy", "argocd", "borgmatic", "caddy", "controller", "docs", "grafana",
                    "homepage", "kubernetes", "mounts", "native", "nixos", "prometheus",
                    "public", "tailscale"}, tops
    assert sorted(first) == sorted(second)
    differ = [name for name in first if first[name] != second[name]]
    assert not differ, f"differ between processes: {differ[:10]}"
