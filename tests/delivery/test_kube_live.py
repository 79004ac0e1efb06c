"""Direct delivery against a real cluster: runs only when KUBECONFIG is set (kind or
minikube; the context is BLUMEOPS_TEST_CONTEXT or the kubeconfig's current one). It
creates namespaces named bo-live-*, and deletes them at the end."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from deliverylab import load

from blumeops.core.health import Health
from blumeops.kubernetes.apply import KubeDelivery
from blumeops.kubernetes.manifests import Manifest, manifests
from blumeops.render import render_lab

pytestmark = pytest.mark.skipif(
    "KUBECONFIG" not in os.environ,
    reason="live Kubernetes suite: set KUBECONFIG (e.g. a kind or minikube cluster)")


def _context() -> str:
    if os.environ.get("BLUMEOPS_TEST_CONTEXT"):
        return os.environ["BLUMEOPS_TEST_CONTEXT"]
    from lightkube.config.kubeconfig import KubeConfig

    config = KubeConfig.from_env()
    return str(config.current_context)


def _lab(tmp: Path, lab: str, services: tuple[str, ...]) -> list[Manifest]:
    data = {
        "lab": lab,
        "hosts": {"box": {"role": "compute", "os": "linux", "address": "127.0.0.1"}},
        "clusters": {"live": {"host": "box", "context": _context(), "delivery": "apply"}},
        "services": {s: {"kubernetes": "live", "image": "nginx:1.27-alpine",
                         "namespace": f"bo-live-{lab}-{s}", "ports": {"http": 80},
                         "health": {"http": "/"}} for s in services},
    }
    return list(manifests(render_lab(load(tmp, data), only=("kubernetes",)), "live"))


def test_live_apply_health_plan_and_prune(tmp_path: Path) -> None:
    lab = f"t{uuid.uuid4().hex[:6]}"
    kube = KubeDelivery(lab, _context())
    both = _lab(tmp_path / "a", lab, ("one", "two"))
    try:
        results = kube.apply(both, wait=120)
        assert all(r.ok for r in results), results
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            health = kube.health(both)
            if all(h is Health.healthy for h, _ in health.values()):
                break
            time.sleep(2)
        assert all(h is Health.healthy for h, _ in health.values()), health
        assert {c.action for c in kube.plan(both)} == {"unchanged"}
        one = _lab(tmp_path / "b", lab, ("one",))
        plan = kube.plan(one)
        assert {c.name for c in plan if c.action == "delete"} >= {"two", f"bo-live-{lab}-two"}
        kube.apply(one)
        assert not [o for o in kube.observe(one) if "two" in o.name]
    finally:
        kube.apply([], prune=True)
