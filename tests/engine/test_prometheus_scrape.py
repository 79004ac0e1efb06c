"""A real Prometheus (Debian's) scrapes the controller's /metrics and answers a query."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
from controllerlab import Followed, followed_fixture, wait_for  # noqa: F401 (fixture)
from demolab import free_port

from requires import needs


@needs(shutil.which("prometheus") and shutil.which("promtool"),
       "prometheus and promtool (Debian prometheus)")
def test_prometheus_scrapes_controller(followed: Followed) -> None:
    first = followed.git("rev-parse", "HEAD")
    followed.start()
    wait_for(lambda: followed.synced(first), 60, "first sync")
    target = followed.api.removeprefix("http://")
    config = followed.root / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: blumeops\n    static_configs: [{{targets: ['{target}']}}]\n")
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={config}",
         f"--storage.tsdb.path={followed.root / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/query"

        def synced_series() -> list[dict[str, object]]:
            try:
                data = httpx.get(url, params={"query": 'blumeops_syncs_total{result="ok"}'},
                                 timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return []
            return data.get("data", {}).get("result", [])  # type: ignore[no-any-return]

        deadline = time.monotonic() + 30
        series: list[dict[str, object]] = []
        while time.monotonic() < deadline and not series:
            series = synced_series()
            time.sleep(0.3)
        assert series, "Prometheus never scraped blumeops_syncs_total"
        value = series[0]["value"]
        assert isinstance(value, list) and float(value[1]) >= 1
        health = httpx.get(url, params={"query": 'blumeops_service_health{health="Healthy"}'},
                           timeout=2).json()["data"]["result"]
        assert {r["metric"]["service"] for r in health} >= {"web", "api", "notes", "echo"}
    finally:
        prom.terminate()
        prom.wait(timeout=10)
