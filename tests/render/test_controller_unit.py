"""The lab's controller renders as a service of its control host, never applied locally."""

from __future__ import annotations

import plistlib
from pathlib import Path

from systemd_check import verify_clean

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext
from blumeops.render.controller import render
from conftest import load_data

LAB = """lab: t
hosts:
  ctl: {role: compute, os: linux}
controller:
  host: ctl
  source: https://forge.example.com/me/lab.git
  webhook_secret: "vault:controller/webhook"
"""


def test_launchd_agent_for_the_blumeops_example(blumeops_lab: Lab) -> None:
    (res,) = render(blumeops_lab, RenderContext())
    assert res.target == "controller@indri" and res.kind == "plist"
    data = plistlib.loads(res.body.encode())
    args = data["ProgramArguments"]
    assert args[args.index("--") + 1:][:2] == ["blumeops", "controller"]
    assert "--source" in args and data["RunAtLoad"] is True
    assert dict(res.secret_refs) == {
        "BLUMEOPS_API_TOKEN": "op://blumeops/blumeops-controller/api-token",
        "BLUMEOPS_WEBHOOK_SECRET": "op://blumeops/blumeops-controller/webhook-secret"}


def test_systemd_unit(tmp_path: Path) -> None:
    result = load_data(tmp_path, LAB)
    assert result.lab is not None, [str(d) for d in result.diagnostics]
    (res,) = render(result.lab, RenderContext())
    assert res.kind == "unit" and res.path == "controller/ctl/systemd/" \
        "blumeops-blumeops-controller.service"
    assert "controller --source https://forge.example.com/me/lab.git" in res.body
    assert "webhook" not in res.body.split("[Service]")[1].split("ExecStart")[0]
    unit = tmp_path / "blumeops-blumeops-controller.service"
    unit.write_text(res.body)
    # No warning (an unknown key only warns); blumeops is installed on the controller's
    # host, not in this machine's systemd search path.
    verify_clean([unit], elsewhere=("blumeops",))
    assert "EnvironmentFile=%S/blumeops/secrets/blumeops-controller.env" in res.body


def test_unknown_controller_host(tmp_path: Path) -> None:
    result = load_data(tmp_path, LAB.replace("host: ctl", "host: clt"))
    (err,) = result.errors
    assert err.rule == "unknown-reference" and "did you mean 'ctl'" in err.message
    assert err.line == 5


def test_controller_secret_must_be_a_reference(tmp_path: Path) -> None:
    result = load_data(tmp_path, LAB.replace('"vault:controller/webhook"', "hunter2"))
    (err,) = result.errors
    assert err.rule == "secret-ref"
