"""A host blumeops does not manage (an appliance): never applied, its health checked.

The lab: `box` (this machine, real supervisord) runs one service; `nas` is declared
`managed: false` with an `ssh:` that leads nowhere (port 9 on loopback), so any attempt
to reach it over SSH would show. The NAS's web UI is a real HTTP server the test runs on
127.0.0.1 (a stand-in for DSM's own UI, which blumeops only probes).
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from demolab import free_port

pytestmark = pytest.mark.slow


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def nas_ui() -> Iterator[tuple[int, http.server.ThreadingHTTPServer]]:
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, server
    server.shutdown()
    server.server_close()


def write_lab(root: Path, ui_port: int, app_port: int) -> Path:
    lab = root / "lab"
    lab.mkdir()
    (lab / "lab.yaml").write_text(f"""\
lab: appl
hosts:
  box: {{role: compute, os: linux, service_manager: supervisor, local: true,
         address: 127.0.0.1}}
  nas:
    role: storage
    os: dsm
    managed: false
    address: 127.0.0.1
    ssh: admin@127.0.0.1:9
    shares:
      media: {{path: /volume1/media}}
backups: {{to: nas, path: /volume1/backups/borg}}
services:
  app:
    native: box
    command: [{sys.executable}, -m, http.server, "{app_port}", --bind, 127.0.0.1]
    ports: {{http: {app_port}}}
    health: {{http: /}}
    backup: [data/]
  ui:
    native: nas
    description: the NAS's own web UI
    ports: {{http: {ui_port}}}
    health: {{http: /}}
    metrics: {{port: http}}
""")
    return lab


def test_an_appliance_is_checked_never_applied(
        tmp_path: Path, nas_ui: tuple[int, http.server.ThreadingHTTPServer]) -> None:
    ui_port, server = nas_ui
    lab = write_lab(tmp_path, ui_port, free_port())
    state = tmp_path / "state"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "blumeops", args[0], str(lab),
                               "--state-dir", str(state), *args[1:]],
                              capture_output=True, text=True, timeout=120, check=False)

    try:
        valid = subprocess.run([sys.executable, "-m", "blumeops", "validate", str(lab),
                                "--strict"], capture_output=True, text=True, check=False)
        assert valid.returncode == 0, valid.stdout + valid.stderr
        plan = cli("plan", "--output", "json")
        assert plan.returncode == 2, plan.stdout + plan.stderr
        changes = json.loads(plan.stdout)["changes"]
        # Only box's program: nothing at all for the appliance, and no SSH attempt to it.
        assert [c["id"] for c in changes] == ["supervisor@box/program/app"]
        assert "nas" not in plan.stderr

        applied = cli("apply", "--yes")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        again = cli("plan")
        assert again.returncode == 0 and "No changes" in again.stdout, again.stdout

        status = cli("status", "--output", "json")
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        ui = next(s for s in report["services"] if s["service"] == "ui")
        assert ui["health"] == "Healthy" and ui["host"] == "nas"
        assert ui["detail"] == "GET / -> 200 from here" and ui["state"] == "unmanaged"
        assert report["health"] == "Healthy"

        # The appliance's UI goes away: its service is Degraded and so is the lab.
        server.shutdown()
        server.server_close()
        down = cli("status", "--output", "json")
        assert down.returncode == 1
        ui = next(s for s in json.loads(down.stdout)["services"] if s["service"] == "ui")
        assert ui["health"] == "Degraded" and "refused" in ui["detail"]
        check = cli("check")
        assert check.returncode == 1
        assert any(line.startswith("FAIL service ui") for line in check.stdout.splitlines())
        assert any(line.startswith("ok   service app") for line in check.stdout.splitlines())
    finally:
        cli("down")
