"""Derived grants follow the traffic the rendered configs make: Prometheus scraping a
native service on another host, and each host's Alloy sending to Prometheus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from blumeops.catalog.reach import scrapes
from blumeops.lab.loader import load_lab
from blumeops.render import RenderContext
from blumeops.render.prometheus import render
from blumeops.tailnet.evaluate import check as acl_check
from blumeops.tailnet.policy import derive_policy
from conftest import EXAMPLES


def lab(derive: bool) -> dict[str, Any]:
    return {
        "lab": "t",
        "tailnet": {"name": "tail1.ts.net", "groups": {"admin": ["a@example.com"]},
                    "derive_grants": derive},
        "domains": {"ops": {"suffix": "ops.example.com", "proxy": "caddy", "host": "alpha",
                            "tls": "internal"}},
        "hosts": {"alpha": {"role": "compute", "os": "linux", "service_manager": "supervisor"},
                  "beta": {"role": "compute", "os": "linux", "service_manager": "supervisor"}},
        "services": {
            "prometheus": {"native": "alpha", "command": ["prometheus"], "ports": {"http": 9090},
                           "routes": {"prometheus.ops": "http"}, "health": {"http": "/"},
                           "metrics": {"port": "http"}},
            "api": {"native": "beta", "command": ["api"], "ports": {"http": 9000},
                    "health": {"http": "/"}, "metrics": {"port": "http"}},
        },
    }


def test_derived_grants_cover_scrapes_and_collectors(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(lab(True)))
    result = load_lab(path)
    assert result.ok and result.lab is not None, [str(d) for d in result.errors]
    policy = derive_policy(result.lab)
    assert {"src": ["tag:alpha"], "dst": ["tag:beta"], "ip": ["tcp:9000"]} in policy.grants
    assert {"src": ["tag:beta"], "dst": ["tag:alpha"], "ip": ["tcp:443"]} in policy.grants
    assert acl_check(policy, "alpha", "beta:9000").allowed  # Prometheus scrapes api
    assert acl_check(policy, "beta", "alpha:443").allowed  # beta's Alloy -> Caddy
    assert not acl_check(policy, "beta", "alpha:9090").allowed  # and no more


def test_without_derived_grants_both_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(lab(False)))
    result = load_lab(path)
    found = sorted(d.message.split(",")[0] for d in result.errors
                   if d.rule == "unreachable-scrape")
    assert found == ["Alloy on 'beta' sends to prometheus at https://prometheus.ops.example.com",
                     "Prometheus ('prometheus'"], found


def test_another_clusters_metrics_are_scraped_through_its_tailnet_ingress() -> None:
    """minikube's Prometheus cannot resolve k3s's in-cluster names: a routed k3s service
    is scraped at its ingress device over https, and the policy lets Prometheus's host
    reach that device."""
    result = load_lab(EXAMPLES / "blumeops" / "lab.yaml")
    assert result.ok and result.lab is not None
    example = result.lab
    immich = next(s for s in scrapes(example) if s.service == "immich")
    assert (immich.address, immich.host, immich.cluster) == (
        "immich.tail8d86e.ts.net:443", "immich", None)
    body = render(example, RenderContext(example))[0].body or ""
    job = body.split('job_name: "immich"')[1].split("job_name")[0]
    assert "scheme: https" in job and '"immich.tail8d86e.ts.net:443"' in job
    assert "svc.cluster.local" not in job and ".svc:" not in job
    assert acl_check(derive_policy(example), "indri", "immich:443").allowed
