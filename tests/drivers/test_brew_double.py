"""The brew driver over the REAL SSH transport and a host session, against a `brew`
TEST DOUBLE.

Homebrew cannot run in this machine, so the test host (a real sshd on 127.0.1.x whose
python3 is 3.9) gets `doubles/brew.py` first on its PATH as `brew`. The double records
every call and keeps formula/service state in a file; it is not Homebrew and runs no
process. What is real: sshd, the transport, the agent's batches, the host's one observe
round trip, the driver's exact command sequence, and the HTTP probe run on the host.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from blumeops.core.plan import make_plan
from blumeops.core.resources import Resource
from blumeops.core.spec import HostSpec, ProbeSpec, RuntimeSpec, ServiceSpec
from blumeops.drivers.base import HostContext, driver_class
from blumeops.drivers.brew import BrewDriver
from blumeops.engine.hosts import HostSession
from blumeops.render.brew import brewfile_line
from transports.sshhost import (
    SshHost,
    SshLab,
    free_port,
    needs_sshd,
    ssh_lab_fixture,  # noqa: F401 (fixture "ssh_lab")
)

pytestmark = [needs_sshd, pytest.mark.slow]

DOUBLE = Path(__file__).parent / "doubles" / "brew.py"
INFO = ["services", "info", "--all", "--json"]


def install_double(host: SshHost, available: list[str], failing: tuple[str, ...] = ()
                   ) -> Path:
    """Put the brew double first on the host's PATH; returns its state dir."""
    target = host.root / "bin" / "brew"
    shutil.copy(DOUBLE, target)
    target.chmod(0o755)
    state = host.root / ".brew-double"
    state.mkdir(exist_ok=True)
    (state / "config.json").write_text(json.dumps({"available": available,
                                                   "failing": list(failing)}))
    return state


def calls(state: Path) -> list[list[str]]:
    log = state / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def forget(state: Path) -> None:
    (state / "calls.jsonl").unlink(missing_ok=True)


def set_status(state: Path, formula: str, status: str) -> None:
    data = json.loads((state / "state.json").read_text())
    data["installed"][formula].update(status=status, pid=None)
    (state / "state.json").write_text(json.dumps(data))


def formula(service: str, name: str) -> Resource:
    return Resource("brew@mac", "formula", service, brewfile_line(name),
                    f"native/mac/brew/{service}.Brewfile", service=service,
                    meta={"formula": name})


@pytest.fixture
def web_on(ssh_lab: SshLab) -> Iterator[tuple[str, int]]:
    """A real HTTP server on the test host's loopback address: what ollama's probe hits."""
    address = "127.0.1.250"
    port = free_port(address)
    server = http.server.ThreadingHTTPServer((address, port),
                                             http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield address, port
    server.shutdown()
    server.server_close()


def session(ssh_lab: SshLab, host: SshHost, resources: list[Resource], state_dir: Path,
            probe: tuple[str, int] | None = None) -> HostSession:
    """A fresh session, as each CLI run makes one (state_dir survives between runs)."""
    services = {r.name: ServiceSpec(r.name, host.name, False) for r in resources}
    services.setdefault("ollama", ServiceSpec("ollama", host.name, False))
    if probe is not None:
        services["ollama"] = ServiceSpec("ollama", host.name, False, address=probe[0],
                                         probe=ProbeSpec("http", port=probe[1], path="/"))
    spec = RuntimeSpec("lab", (), None, (), services, (), (), tuple(resources))
    # The test host answers Linux (Homebrew runs there too): no facts mismatch.
    hspec = HostSpec(host.name, False, ssh=host.name, address=host.address, os="linux")
    ctx = HostContext(hspec, spec, state_dir, state_dir, ssh_lab.transport(host.name),
                      "~/.local/state/blumeops/lab")
    return HostSession(ctx, resources, ["brew"])


def test_brew_services_through_the_driver_and_the_double(
        ssh_lab: SshLab, tmp_path: Path, web_on: tuple[str, int]) -> None:
    assert driver_class("brew", remote=True) is BrewDriver
    host = ssh_lab.add_host("mac")
    state = install_double(host, available=["ollama", "redis", "postgresql@16"])
    resources = [formula("ollama", "ollama"), formula("cache", "redis")]

    # Something the user runs with brew themselves: blumeops must never touch it.
    (state / "state.json").write_text(json.dumps(
        {"installed": {"postgresql@16": {"status": "started", "pid": 77}}, "next_pid": 4000}))

    # First run: nothing installed of ours -> install, then start, for each formula.
    first = session(ssh_lab, host, resources, tmp_path, web_on)
    plan = make_plan(resources, first.observe())
    assert first.unreachable is None
    assert [(c.action, c.name) for c in plan.pending] == [("create", "ollama"),
                                                          ("create", "cache")]
    assert first.apply(plan.pending, {}) == {}
    assert calls(state) == [INFO, ["install", "ollama"], ["services", "start", "ollama"],
                            ["install", "redis"], ["services", "start", "redis"]]

    # The next run: one round trip observes the host and fills the health table (the
    # probe ran on the host against the real server).
    forget(state)
    before = host.sessions()
    again = session(ssh_lab, host, resources, tmp_path, web_on)
    assert make_plan(resources, again.observe()).pending == []
    health = again.health(["ollama", "cache"], {})
    assert host.sessions() - before == 1
    assert calls(state) == [INFO]
    assert health["ollama"].health.value == "Healthy", health["ollama"]
    assert health["ollama"].detail.startswith("GET / -> 200") and health["ollama"].pid
    assert health["cache"].health.value == "Unknown"  # started; no probe declared
    assert health["cache"].state == "started"

    # The service errored on the host: Degraded, planned as an update, restarted.
    set_status(state, "redis", "error")
    broken = session(ssh_lab, host, resources, tmp_path)
    plan = make_plan(resources, broken.observe())
    assert broken.health(["cache"], {})["cache"].health.value == "Degraded"
    assert [(c.action, c.name, c.reasons) for c in plan.pending] == [
        ("update", "cache", ("not running (error)",))]
    forget(state)
    assert broken.apply(plan.pending, {}) == {}
    assert calls(state) == [["services", "restart", "redis"]]

    # Dropped from the catalog: its service is stopped (the formula stays installed);
    # postgresql@16, started by the user, is never in the plan.
    kept = resources[:1]
    dropped = session(ssh_lab, host, kept, tmp_path)
    plan = make_plan(kept, dropped.observe())
    assert [(c.action, c.id) for c in plan.pending] == [("delete", "brew@mac/formula/cache")]
    forget(state)
    assert dropped.apply(plan.pending, {}) == {}
    assert calls(state) == [["services", "stop", "redis"]]
    final = json.loads((state / "state.json").read_text())["installed"]
    assert final["postgresql@16"] == {"status": "started", "pid": 77}
    assert final["redis"]["status"] == "none"
    assert make_plan(kept, session(ssh_lab, host, kept, tmp_path).observe()).pending == []


def test_brew_errors_are_brews_own_words(ssh_lab: SshLab, tmp_path: Path) -> None:
    host = ssh_lab.add_host("mac")
    state = install_double(host, available=["ollama"], failing=("ollama",))
    resources = [formula("ollama", "ollama"), formula("typo", "olama")]
    first = session(ssh_lab, host, resources, tmp_path)
    plan = make_plan(resources, first.observe())
    errors = first.apply(plan.pending, {})
    assert errors == {"brew@mac/formula/typo": '`brew install olama` exited 1: Error: No '
                                               'available formula with the name "olama".'}
    # ollama installed and started, but its service errors: Degraded with brew's status.
    health = session(ssh_lab, host, resources, tmp_path).health(["ollama", "typo"], {})
    assert health["ollama"].health.value == "Degraded"
    assert "brew services: error (exit 1)" in health["ollama"].detail
    assert health["typo"].health.value == "Missing"
    # No brew at all on the host: every brew service is Unknown, saying why.
    (host.root / "bin" / "brew").unlink()
    gone = session(ssh_lab, host, resources, tmp_path)
    gone.observe()
    unknown = gone.health(["ollama"], {})["ollama"]
    assert unknown.health.value == "Unknown" and "exited 127" in unknown.detail
    assert calls(state)[-1] == INFO
