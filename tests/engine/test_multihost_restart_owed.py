"""What runs is what was applied, on a host over SSH: a connection dropped between the
round trip that writes a program (and its secrets) and the one that restarts it leaves
a restart owed; plan shows it, status is not converged, the next apply restarts it.

Real sshd hosts and their supervisord (multihostlab.py); the drop is injected in-process
at the exact point: the restart round trip raises the error a dropped connection raises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from multihostlab import MultiLab, multihost_fixture, needs_sshd  # noqa: F401

from blumeops.drivers.remote_supervisor import RemoteSupervisor
from blumeops.transports.exceptions import TransportError

pytestmark = [pytest.mark.slow, needs_sshd]

DESCRIPTION = "    description: A store on the data host, holding a secret in its environment\n"


def store(multihost: MultiLab) -> tuple[int, dict[str, Any]]:
    out = multihost.cli("status", "--output", "json")
    assert "Traceback" not in out.stderr, out.stderr
    services = {s["service"]: s for s in json.loads(out.stdout)["services"]}
    return out.returncode, services["store"]


def environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def test_a_dropped_connection_between_write_and_restart_leaves_a_restart_owed(
        multihost: MultiLab, monkeypatch: pytest.MonkeyPatch) -> None:
    from blumeops.commands.session import Session
    from blumeops.engine.apply import apply, prepare

    for name in [k for k in os.environ if k.startswith("BLUMEOPS_")]:
        monkeypatch.delenv(name)
    for name in ("BLUMEOPS_AGE_KEY", "XDG_CACHE_HOME", "BLUMEOPS_SSH_CONFIG"):
        monkeypatch.setenv(name, multihost.env[name])
    multihost.cli("apply", "--yes", check=True)
    code, before = store(multihost)
    assert code == 0 and before["health"] == "Healthy", before
    old_pid = int(before["pid"])

    # A new environment and a rotated secret for store; the restart never arrives.
    catalog = multihost.lab / "lab.yaml"
    catalog.write_text(catalog.read_text().replace(
        DESCRIPTION, DESCRIPTION + "    environment: {STORE_MODE: two}\n"))
    multihost.run("secret", "set", str(multihost.lab), "multihost/store-token",
                  "--value", "rotated-token-v2", check=True)
    real_rpc = RemoteSupervisor._rpc

    def drop(self: RemoteSupervisor, transport: Any, calls: list[list[Any]]) -> Any:
        if any(method == "supervisor.stopProcessGroup" for method, _ in calls):
            raise TransportError(self.ctx.name, "connection dropped (injected)")
        return real_rpc(self, transport, calls)

    with monkeypatch.context() as m:
        m.setattr(RemoteSupervisor, "_rpc", drop)
        session = Session(multihost.lab, multihost.state)
        try:
            report = apply(session.runtime, prepare(session.runtime, session.store),
                           session.store, wait=5)
        finally:
            session.close()
    assert not report.ok and "injected" in json.dumps(report.failed), report.failed
    program = multihost.remote_state("data") / "supervisor" / "programs" / "store.conf"
    assert "STORE_MODE" in program.read_text()  # written on the host...
    code, mid = store(multihost)
    assert mid["pid"] == old_pid  # ...but the old process runs on
    assert b"STORE_MODE=two" not in environ(old_pid)

    # status is not converged and says why; plan shows the owed restart.
    assert code == 1 and mid["health"] == "Progressing", mid
    assert "restart pending" in mid["detail"]
    plan = multihost.cli("plan")
    assert plan.returncode == 2 and "supervisor@data/program/store" in plan.stdout, plan.stdout

    # The next apply restarts it with what was written: new environment, new secret.
    multihost.cli("apply", "--yes", check=True)
    code, after = store(multihost)
    assert code == 0 and after["health"] == "Healthy", after
    env = environ(int(after["pid"]))
    assert b"STORE_MODE=two" in env and b"STORE_TOKEN=rotated-token-v2" in env
    assert "No changes" in multihost.cli("plan", check=True).stdout


def test_only_an_environment_change_lost_is_still_a_pending_restart(
        multihost: MultiLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret changed: the state database has nothing to compare; the marks do."""
    from blumeops.commands.session import Session
    from blumeops.engine.apply import apply, prepare

    for name in [k for k in os.environ if k.startswith("BLUMEOPS_")]:
        monkeypatch.delenv(name)
    for name in ("BLUMEOPS_AGE_KEY", "XDG_CACHE_HOME", "BLUMEOPS_SSH_CONFIG"):
        monkeypatch.setenv(name, multihost.env[name])
    multihost.cli("apply", "--yes", check=True)
    catalog = multihost.lab / "lab.yaml"
    catalog.write_text(catalog.read_text().replace(
        DESCRIPTION, DESCRIPTION + "    environment: {STORE_MODE: two}\n"))

    def drop(self: RemoteSupervisor, transport: Any, calls: list[list[Any]]) -> Any:
        raise TransportError(self.ctx.name, "connection dropped (injected)")

    with monkeypatch.context() as m:
        m.setattr(RemoteSupervisor, "_rpc", drop)
        session = Session(multihost.lab, multihost.state)
        try:
            apply(session.runtime, prepare(session.runtime, session.store), session.store,
                  wait=5)
        finally:
            session.close()
    plan = multihost.cli("plan")
    assert plan.returncode == 2 and "restart pending" in plan.stdout, plan.stdout
    multihost.cli("apply", "--yes", check=True)
    _, after = store(multihost)
    assert b"STORE_MODE=two" in environ(int(after["pid"]))
    assert "No changes" in multihost.cli("plan", check=True).stdout
