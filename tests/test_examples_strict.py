"""Both examples pass `validate --strict` (warnings are errors), and the demo's web
really serves the metrics endpoint the catalog declares for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("example", ["demo", "blumeops"])
def test_example_passes_validate_strict(example: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "blumeops", "validate",
                           str(EXAMPLES / example), "--strict"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stdout + proc.stderr


def test_demo_web_serves_its_pages_and_metrics() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web = subprocess.Popen([sys.executable, str(EXAMPLES / "demo" / "apps" / "web.py")],
                           env={**os.environ, "WEB_PORT": str(port)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                page = httpx.get(base + "/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "web never answered"
                time.sleep(0.1)
        assert page.status_code == 200 and "BlumeOps demo lab" in page.text
        httpx.get(base + "/index.html", timeout=2)
        metrics = httpx.get(base + "/metrics", timeout=2)
        assert metrics.status_code == 200
        assert "demo_web_requests_total 2\n" in metrics.text
    finally:
        web.terminate()
        web.wait(timeout=10)
