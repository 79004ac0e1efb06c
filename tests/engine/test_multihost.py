"""examples/multihost applied for real over SSH: three sshd hosts, supervisord on each,
Caddy on gate routing to services on app and data."""

from __future__ import annotations

import json
import time

import pytest
from multihostlab import MultiLab, multihost_fixture, needs_sshd  # noqa: F401 (fixture)

pytestmark = [needs_sshd, pytest.mark.slow]


def test_apply_routes_across_hosts_then_plan_is_empty(multihost: MultiLab) -> None:
    t0 = time.monotonic()
    first = multihost.cli("apply", "--yes")
    cold = time.monotonic() - t0
    assert first.returncode == 0, first.stdout + first.stderr
    assert multihost.get("web").status_code == 200
    assert multihost.get("store").status_code == 200
    plan = multihost.cli("plan", "--output", "json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["changes"] == [], plan.stdout
    print(f"cold apply {cold:.2f}s")
