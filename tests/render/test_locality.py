"""Changing one service changes only its own artifacts and the shared ones that must
change (routes, policy, scrape config, docs tables). Rendering is deterministic across
processes: tests/test_render_command.py."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blumeops.catalog.model import Lab
from blumeops.catalog.synthetic import synthetic_lab
from blumeops.render import render_lab

# Artifacts every lab shares: a change to any routed service may touch these.
SHARED = ("caddy/", "tailscale/", "prometheus/", "homepage/", "grafana/", "alloy/",
          "borgmatic/", "docs/routing.md", "docs/ports.md", "docs/architecture.md",
          "docs/hosts/", "kubernetes/k3s/_cluster/", "argocd/k3s/synthetic-")


def rendered(data: dict[str, object]) -> dict[str, str]:
    lab = Lab.model_validate(data)
    return {r.path: r.body for r in render_lab(lab)}


def changed_paths(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def owned_by(path: str, service: str) -> bool:
    return (f"/{service}/" in path or path.endswith(f"/{service}.yaml")
            or path.endswith(f"/{service}.md") or f"/{service}.conf" in path
            or f"blumeops-{service}.service" in path or f".{service}.plist" in path)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=29), st.sampled_from(["port", "image", "env"]))
def test_one_service_change_is_local(index: int, change: str) -> None:
    base = synthetic_lab(30, 4)
    edited = copy.deepcopy(base)
    name = f"svc{index:05d}"
    svc = edited["services"][name]  # type: ignore[index]
    if change == "port":
        svc["ports"]["http"] += 20000
    elif change == "image" and "image" in svc:
        svc["image"] += "-patched"
    else:
        svc["environment"] = {"EXTRA": "1"}
    before, after = rendered(base), rendered(edited)
    diff = changed_paths(before, after)
    assert diff, "the change must show somewhere"
    stray = {p for p in diff if not owned_by(p, name) and not p.startswith(SHARED)}
    assert not stray, stray
    other = f"svc{(index + 1) % 30:05d}"
    assert not {p for p in diff if owned_by(p, other)}
