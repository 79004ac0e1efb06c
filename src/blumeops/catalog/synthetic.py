"""Synthetic labs of any size, for benchmarks and property tests.

`synthetic_lab(n, m)` returns catalog data (plain dicts, as YAML would load) with n
services spread over m hosts and one cluster: a mix of native and Kubernetes services,
routes, metrics, secrets, backups and dependencies, all valid.
"""

from __future__ import annotations

from typing import Any


def synthetic_lab(services: int, hosts: int = 3, seed: int = 0) -> dict[str, Any]:
    host_names = [f"host{i}" for i in range(hosts)]
    data: dict[str, Any] = {
        "lab": "synthetic",
        "tailnet": {
            "name": "tail0000.ts.net",
            "groups": {"admin": ["admin@example.com"]},
            "tests": [{"src": "admin@example.com", "accept": ["host0:443"]}],
        },
        "domains": {
            "ops": {"suffix": "ops.example.com", "proxy": "caddy", "host": "host0",
                    "tls": {"mode": "internal"}},
            "ts": {"suffix": "tail0000.ts.net", "proxy": "magicdns"},
        },
        "hosts": {
            name: {"role": "compute", "os": "linux", "tags": ["lab"]} for name in host_names
        },
        "clusters": {"k3s": {"host": "host0", "context": "k3s", "delivery": "argocd"}},
        "backups": {"to": host_names[-1], "path": "/backups"},
        "services": {},
    }
    data["hosts"][host_names[-1]]["role"] = "storage"
    services_out: dict[str, Any] = data["services"]
    for i in range(services):
        name = f"svc{(i + seed) % services:05d}" if seed else f"svc{i:05d}"
        port = 10000 + i
        svc: dict[str, Any] = {
            "ports": {"http": port},
            "routes": {f"{name}.ops": "http"},
            "health": {"http": "/healthz"},
            "metrics": {"port": "http"},
            "audience": ["group:admin"],
            "homepage": {"group": f"group{i % 7}", "description": f"service {i}"},
        }
        if i % 3 == 0:
            svc.update(kubernetes="k3s", image=f"example/{name}:1.{i % 10}",
                       storage={"data": {"size": "1Gi", "mount": "/data"}})
        else:
            svc.update(native=host_names[i % hosts], command=["/usr/bin/app", "--port", str(port)],
                       backup=[f"/var/lib/{name}"])
        if i % 5 == 0:
            svc["secrets"] = {"TOKEN": f"vault:{name}/token"}
        if i > 0 and i % 4 == 0:
            svc["depends_on"] = [f"svc{i - 1:05d}"]
        services_out[name] = svc
    return data
